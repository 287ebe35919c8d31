//! A plain OTLP/gRPC client for tests that need exact control over requests.

use flowtel_core::schema::attr;
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
                attributes: vec![string_attr(attr::SERVICE_NAME, "flowtel-e2e"), string_attr("test.run", run)],
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

/// [`send_logs`] as an OTLP SDK sends: a request answered `UNAVAILABLE`
/// (retryable) is sent again after a pause, up to 100 times.
pub fn send_logs_retrying(port: u16, run: &str, first: u64, requests: u64, per_request: u64) -> Vec<tonic::Code> {
    (0..requests)
        .map(|i| {
            let start = first + i * per_request;
            let mut code = tonic::Code::Unavailable;
            for _ in 0..100 {
                code = send_requests(port, [logs_request(run, start..start + per_request)])[0];
                if code != tonic::Code::Unavailable {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            code
        })
        .collect()
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

/// Sends `body` as the message of one gRPC call to `path` on 127.0.0.1:port
/// (bytes that need not be a valid message); the answer's status, or the
/// response message's bytes.
pub fn send_raw_grpc(port: u16, path: &'static str, body: Vec<u8>) -> Result<Vec<u8>, tonic::Status> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = tonic::client::Grpc::new(channel).max_decoding_message_size(64 << 20);
        client.ready().await.unwrap();
        let response =
            client.unary(tonic::Request::new(body), http::uri::PathAndQuery::from_static(path), RawCodec).await?;
        Ok(response.into_inner())
    })
}

/// The gRPC path of the logs `Export` method.
pub const LOGS_EXPORT: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// Hands bytes over both ways.
struct RawCodec;

struct RawBytes;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawBytes;
    type Decoder = RawBytes;

    fn encoder(&mut self) -> RawBytes {
        RawBytes
    }

    fn decoder(&mut self) -> RawBytes {
        RawBytes
    }
}

impl tonic::codec::Encoder for RawBytes {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawBytes {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let bytes = bytes::Buf::copy_to_bytes(src, bytes::Buf::remaining(src));
        Ok(Some(bytes.to_vec()))
    }
}

/// A gateway's config: `otlp` (gRPC on `grpc`) in, `otlp_grpc` out to
/// `backend` retrying every 100–300 ms for ever, its `sending_queue` as
/// `queue` says, kept by a `file_storage` in `storage` (with `settings`,
/// one YAML line) when given; flowtel's own metrics on `${METRICS_PORT}`.
pub fn gateway_config(grpc: u16, backend: u16, queue: &str, storage: Option<(&std::path::Path, &str)>) -> String {
    let (extensions, service_extensions) = match storage {
        Some((dir, settings)) => (
            format!("extensions:\n  file_storage:\n    directory: {}\n    {settings}\n", dir.display()),
            "  extensions: [file_storage]\n",
        ),
        None => (String::new(), ""),
    };
    format!(
        r#"
{extensions}receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{grpc}"}}
exporters:
  otlp_grpc:
    endpoint: 127.0.0.1:{backend}
    tls: {{insecure: true}}
    timeout: 1s
    retry_on_failure: {{initial_interval: 100ms, max_interval: 300ms, max_elapsed_time: 0s}}
    sending_queue: {queue}
service:
{service_extensions}  telemetry: {{metrics: {{address: "127.0.0.1:${{METRICS_PORT}}"}}}}
  pipelines:
    logs: {{receivers: [otlp], exporters: [otlp_grpc]}}
"#
    )
}
