//! A Hubble `GetFlowsRequest` as a client sends it: its filters and field
//! mask checked and applied to flows made from OTLP log records, whose
//! attributes come from the input too (a gateway serves what agents send).
//!
//! The first two bytes give the request's length; the request comes next,
//! then an OTLP logs request whose records become flows.
#![no_main]

use flowtel_exporters::hubble::{
    convert::{self, NodeNames},
    field_mask::FieldMask,
    filter::Filters,
    proto::observer::GetFlowsRequest,
};
use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use prost::Message as _;

fuzz_target!(|data: &[u8]| {
    let Some((length, rest)) = data.split_first_chunk::<2>() else { return };
    let split = usize::from(u16::from_le_bytes(*length)).min(rest.len());
    let (request, records) = rest.split_at(split);
    let Ok(request) = GetFlowsRequest::decode(request) else { return };
    let Ok(filters) = Filters::new(request.whitelist, request.blacklist) else { return };
    let paths = request.field_mask.map(|mask| mask.paths).unwrap_or_default();
    let Ok(mask) = FieldMask::new(&paths) else { return };
    let Ok(logs) = ExportLogsServiceRequest::decode(records) else { return };
    let names = NodeNames { local_host: "host".into(), local_node: "node".into() };
    for resource in &logs.resource_logs {
        for record in resource.scope_logs.iter().flat_map(|scope| &scope.log_records) {
            if let Some(flow) = convert::flow(resource.resource.as_ref(), record, &names)
                && filters.allow(&flow)
            {
                let _ = mask.apply(&flow);
            }
        }
    }
});
