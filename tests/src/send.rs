//! A plain OTLP/gRPC client for tests that need exact control over requests.

use opentelemetry_proto::tonic::{
    collector::logs::v1::{ExportLogsServiceRequest, logs_service_client::LogsServiceClient},
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    resource::v1::Resource,
};

fn string_attr(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }),
        ..Default::default()
    }
}

/// A request with log records numbered `seqs` (attribute `test.seq`), under a
/// resource with `test.run = run`.
pub fn logs_request(run: &str, seqs: std::ops::Range<u64>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![string_attr("service.name", "flowtel-e2e"), string_attr("test.run", run)],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope { name: "flowtel.e2e.raw".into(), ..Default::default() }),
                log_records: seqs
                    .map(|seq| LogRecord {
                        time_unix_nano: 1_700_000_000_000_000_000 + seq,
                        attributes: vec![KeyValue {
                            key: "test.seq".into(),
                            value: Some(AnyValue { value: Some(any_value::Value::IntValue(seq as i64)) }),
                            ..Default::default()
                        }],
                        ..Default::default()
                    })
                    .collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// Sends `requests` requests of `per_request` records each, numbered from
/// `first`, one after another; returns the gRPC code of each answer.
pub fn send_logs(port: u16, run: &str, first: u64, requests: u64, per_request: u64) -> Vec<tonic::Code> {
    send_requests(
        port,
        (0..requests).map(|i| {
            let start = first + i * per_request;
            logs_request(run, start..start + per_request)
        }),
    )
}

/// Sends each request in turn to the OTLP/gRPC port; the gRPC code of each answer.
pub fn send_requests(port: u16, requests: impl IntoIterator<Item = ExportLogsServiceRequest>) -> Vec<tonic::Code> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut client = LogsServiceClient::connect(format!("http://127.0.0.1:{port}")).await.unwrap();
        let mut codes = Vec::new();
        for request in requests {
            let code = match client.export(request).await {
                Ok(_) => tonic::Code::Ok,
                Err(status) => status.code(),
            };
            codes.push(code);
        }
        codes
    })
}
