//! The `hubble` exporter's per-flow costs: a record becoming a Hubble flow
//! in the ring, a request's filters deciding on a flow, a field mask.
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use flowtel_core::Payload;
use flowtel_exporters::hubble::{
    HubbleConfig, HubbleExporter,
    field_mask::FieldMask,
    filter::Filters,
    proto::flow::{FlowFilter, Verdict},
};
use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, KeyValue, any_value::Value},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
};

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

fn record(port: i64) -> LogRecord {
    let s = |k: &str, v: &str| kv(k, Value::StringValue(v.into()));
    let i = |k: &str, v: i64| kv(k, Value::IntValue(v));
    LogRecord {
        time_unix_nano: 1_767_225_600_000_000_000,
        event_name: "network.flow".into(),
        attributes: vec![
            s("network.type", "ipv4"),
            s("network.transport", "tcp"),
            s("source.address", "10.0.0.1"),
            i("source.port", port),
            s("destination.address", "10.0.0.2"),
            i("destination.port", 443),
            s("network.interface.name", "eth0"),
            s("network.io.direction", "transmit"),
            i("flow.bytes", 1500),
            i("flow.packets", 3),
            s("network.tcp.flags", "ACK|PSH"),
        ],
        ..Default::default()
    }
}

fn hubble(c: &mut Criterion) {
    let payload = Payload::Logs(vec![ResourceLogs {
        scope_logs: vec![ScopeLogs { log_records: (0..512).map(record).collect(), ..Default::default() }],
        ..Default::default()
    }]);
    let exporter = HubbleExporter::new(&HubbleConfig::default());
    c.bench_function("hubble: 512 flow records into the ring", |b| {
        b.iter(|| exporter.take(std::hint::black_box(&payload)))
    });

    let (flows, _) = exporter.store().history(false);
    let flow = flows.last().unwrap();
    let filters = Filters::new(
        vec![
            FlowFilter {
                source_ip: vec!["10.0.0.0/8".into()],
                destination_port: vec!["443".into()],
                ..FlowFilter::default()
            },
            FlowFilter { verdict: vec![Verdict::Dropped as i32], ..FlowFilter::default() },
        ],
        vec![FlowFilter { source_label: vec!["app=noise".into()], ..FlowFilter::default() }],
    )
    .unwrap();
    c.bench_function("hubble: whitelist + blacklist on one flow", |b| {
        b.iter(|| filters.allow(std::hint::black_box(flow)))
    });
    let mask = FieldMask::new(&["time".into(), "verdict".into(), "IP.source".into(), "l4.TCP".into()]).unwrap();
    c.bench_function("hubble: field mask on one flow", |b| b.iter(|| mask.apply(std::hint::black_box(flow))));
}

criterion_group!(benches, hubble);
criterion_main!(benches);
