//! The hostile-client suite: the probes that once broke flowtel, replayed
//! against the real binary over loopback. Each checks what a user would:
//! flowtel keeps running, the client gets the status the protocol
//! prescribes (with a `google.rpc.Status` body over HTTP), the refusal is
//! counted in flowtel's own metrics, and a well-behaved client sending at
//! the same time loses nothing.

#![allow(clippy::unwrap_used, missing_docs)]

use std::{
    io::Write as _,
    time::{Duration, Instant},
};

use flowtel_tests::{
    Flowtel, free_port, http_get, http_request, hubble_call, hubble_responses, hubble_spawn, peak_rss_mib,
    send::{LOGS_EXPORT, logs_request, send_logs, send_logs_retrying, send_raw_grpc},
    sink::Sink,
    wait_for,
};
use opentelemetry_proto::tonic::{
    collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse},
    common::v1::{AnyValue, KeyValue, any_value::Value},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    resource::v1::Resource,
};
use prost::Message as _;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

/// `google.rpc.Status`, as OTLP/HTTP errors carry it.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

fn gateway(grpc: u16, http: u16, sink: u16) -> Flowtel {
    Flowtel::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{grpc}"}}
      http: {{endpoint: "127.0.0.1:{http}"}}
exporters:
  otlp_grpc: {{endpoint: "127.0.0.1:{sink}", tls: {{insecure: true}}}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:${{METRICS_PORT}}"}}}}
  pipelines:
    logs: {{receivers: [otlp], exporters: [otlp_grpc]}}
"#
    ))
}

fn wrap(field: u32, inner: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(inner.len() + 6);
    prost::encoding::encode_key(field, prost::encoding::WireType::LengthDelimited, &mut out);
    prost::encoding::encode_varint(inner.len() as u64, &mut out);
    out.extend_from_slice(inner);
    out
}

/// A logs request whose one record's body is an array nested `depth` deep.
fn deeply_nested(depth: usize) -> Vec<u8> {
    let mut value = Vec::new();
    for _ in 0..depth {
        // ArrayValue.values = 1 inside AnyValue.array_value = 5.
        value = wrap(5, &wrap(1, &value));
    }
    // LogRecord.body = 5, ScopeLogs.log_records = 2, ResourceLogs.scope_logs = 2, request = 1.
    wrap(1, &wrap(2, &wrap(2, &wrap(5, &value))))
}

fn one_record(record: LogRecord) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs { log_records: vec![record], ..ScopeLogs::default() }],
            ..ResourceLogs::default()
        }],
    }
}

fn http_post(port: u16, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, RpcStatus) {
    let response = http_request(port, "POST", path, headers, body);
    let status = match response.header("content-type") {
        Some("application/json") => {
            let json: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
            RpcStatus {
                code: json["code"].as_i64().unwrap_or_default() as i32,
                message: json["message"].as_str().unwrap_or_default().to_owned(),
            }
        }
        _ => RpcStatus::decode(response.body.as_slice())
            .unwrap_or_else(|err| panic!("not a google.rpc.Status ({err}): {:?}", response)),
    };
    (response.status, status)
}

#[test]
fn hostile_otlp_requests_are_refused_and_counted_while_a_good_client_loses_nothing() {
    let (grpc, http, sink_port) = (free_port(), free_port(), free_port());
    let sink = Sink::start(sink_port);
    let flowtel = gateway(grpc, http, sink_port);
    let run = format!("hostile-{grpc}");
    // Two million empty attributes: 4 MiB on the wire, twice the receiver's
    // memory budget decoded. Alone, so the budget is the request's to fill.
    let bomb = one_record(LogRecord { attributes: vec![KeyValue::default(); 2_000_000], ..LogRecord::default() });
    let status = send_raw_grpc(grpc, LOGS_EXPORT, bomb.encode_to_vec()).unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("memory budget"), "{status:?}");

    // A client that sends as SDKs do (retrying what it is told to retry)
    // all along the probes.
    let good = std::thread::spawn({
        let run = run.clone();
        move || send_logs_retrying(grpc, &run, 0, 200, 50)
    });

    // gRPC: not protobuf, truncated, nested past any decoder's limit.
    for body in [b"\xff\xfe\xfd random".to_vec(), b"\x0a\x7f\x01\x02".to_vec(), deeply_nested(20_000)] {
        let status = send_raw_grpc(grpc, LOGS_EXPORT, body).unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    }
    // Larger than max_recv_msg_size_mib: refused for good, not retried.
    let oversized = logs_request("oversized", 0..150_000).encode_to_vec();
    assert!(oversized.len() > 4 << 20);
    let status = send_raw_grpc(grpc, LOGS_EXPORT, oversized).unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("max_recv_msg_size_mib"), "{status:?}");
    // Ids of the wrong length: those records are refused, the sender told, the rest taken.
    let mut ids = logs_request(&run, 1_000_000..1_000_003);
    let records = &mut ids.resource_logs[0].scope_logs[0].log_records;
    records[1].trace_id = vec![1; 5];
    records[2].span_id = vec![2; 3];
    let answer = send_raw_grpc(grpc, LOGS_EXPORT, ids.encode_to_vec()).unwrap();
    let response = ExportLogsServiceResponse::decode(answer.as_slice()).unwrap();
    let partial = response.partial_success.unwrap();
    assert_eq!(partial.rejected_log_records, 2);
    assert!(partial.error_message.contains("trace_id is 5 bytes"), "{partial:?}");

    // HTTP: every error is a google.rpc.Status in the request's encoding.
    let protobuf = [("Content-Type", "application/x-protobuf")];
    let (status, body) = http_post(http, "/v1/logs", &protobuf, b"\xff\xfe garbage");
    assert_eq!((status, body.code), (400, 3), "{body:?}");
    let (status, body) = http_post(http, "/v1/logs", &[("Content-Type", "application/json")], &[b'['; 100_000]);
    assert_eq!((status, body.code), (400, 3), "{body:?}");
    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..256 {
        bomb.write_all(&zeros).unwrap();
    }
    let bomb = bomb.finish().unwrap();
    let gzip = [("Content-Type", "application/x-protobuf"), ("Content-Encoding", "gzip")];
    let (status, body) = http_post(http, "/v1/logs", &gzip, &bomb);
    assert_eq!((status, body.code), (413, 8), "{body:?}");
    let (status, body) = http_post(http, "/v1/logs", &protobuf, &vec![0; 21 << 20]);
    assert_eq!((status, body.code), (413, 8), "{body:?}");
    let (status, body) = http_post(http, "/v1/logs", &[("Content-Type", "text/plain")], b"hello");
    assert_eq!((status, body.code), (415, 3), "{body:?}");
    let (status, body) = http_post(http, "/v1/nothing", &protobuf, b"");
    assert_eq!((status, body.code), (404, 5), "{body:?}");
    let response = http_request(http, "GET", "/v1/logs", &protobuf, b"");
    assert_eq!((response.status, response.header("allow")), (405, Some("POST")));
    assert_eq!(RpcStatus::decode(response.body.as_slice()).unwrap().code, 12);

    // The good client lost nothing; flowtel counted every refusal.
    assert!(good.join().unwrap().iter().all(|c| *c == tonic::Code::Ok));
    let seqs = wait_for(WAIT, "the good client's 10,000 records at the backend", || {
        let seqs = sink.seqs(&run);
        (seqs.len() >= 10_001).then_some(seqs)
    });
    assert_eq!(seqs.len(), 10_001, "10,000 records and the one good record of the id probe");
    assert!(seqs.values().all(|&n| n == 1), "duplicates");
    let metric = |name: &str, labels: &[(&str, &str)]| flowtel.metric(name, labels);
    assert_eq!(metric("flowtel_receiver_malformed_requests_total", &[("transport", "grpc")]), 3.0);
    assert_eq!(metric("flowtel_receiver_malformed_requests_total", &[("transport", "http")]), 2.0);
    let too_large = |transport| {
        metric("flowtel_receiver_refused_requests_total", &[("transport", transport), ("reason", "too_large")])
    };
    assert_eq!(
        (too_large("grpc"), too_large("http")),
        (2.0, 2.0),
        "the oversized and the bomb; the gzip bomb and the body"
    );
    assert_eq!(metric("flowtel_receiver_malformed_id_items_total", &[]), 2.0);
    assert_eq!(metric("flowtel_receiver_refused_requests_total", &[("reason", "unsupported_media_type")]), 1.0);
    assert_eq!(metric("flowtel_receiver_refused_requests_total", &[("reason", "not_served")]), 2.0);
    let peak = peak_rss_mib(flowtel.child.pid());
    assert!(peak < 400.0, "peak RSS {peak:.0} MiB");
}

/// A flow record from node `node`, as an agent would send it to a gateway.
fn flow_from(node: &str, seq: usize) -> LogRecord {
    let string = |key: &str, value: &str| KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(Value::StringValue(value.into())) }),
        ..KeyValue::default()
    };
    let port = |key: &str, value: i64| KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(Value::IntValue(value)) }),
        ..KeyValue::default()
    };
    LogRecord {
        event_name: "network.flow".into(),
        time_unix_nano: 1_700_000_000_000_000_000 + seq as u64,
        attributes: vec![
            string("network.type", "ipv4"),
            string("network.transport", "tcp"),
            string("source.address", "10.0.0.1"),
            port("source.port", 40_000 + (seq % 20_000) as i64),
            string("destination.address", "10.0.0.2"),
            port("destination.port", 80),
            string("k8s.node.name", node),
        ],
        ..LogRecord::default()
    }
}

#[test]
fn hostile_hubble_filters_do_not_slow_otlp_intake_or_metrics() {
    let (grpc, hubble) = (free_port(), free_port());
    let flowtel = Flowtel::start(&format!(
        r#"
receivers:
  otlp: {{protocols: {{grpc: {{endpoint: "127.0.0.1:{grpc}"}}}}}}
exporters:
  hubble: {{endpoint: "127.0.0.1:{hubble}", node_name: gateway}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:${{METRICS_PORT}}"}}}}
  pipelines:
    logs: {{receivers: [otlp], exporters: [hubble]}}
"#
    ));
    // 4,000 flows from nodes with long names: what a backtracking glob matcher chokes on.
    let node = "a".repeat(3_000);
    let requests = (0..5).map(|r| ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource::default()),
            scope_logs: vec![ScopeLogs {
                log_records: (0..800).map(|i| flow_from(&node, r * 800 + i)).collect(),
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    });
    assert!(flowtel_tests::send::send_requests(grpc, requests).iter().all(|c| *c == tonic::Code::Ok));
    let address = format!("127.0.0.1:{hubble}");
    wait_for(WAIT, "the 4,000 flows in the Hubble ring", || {
        let status = &hubble_call(&address, &json!({"method": "ServerStatus"}))[0];
        (status["num_flows"].as_str() == Some("4000")).then_some(())
    });

    // Two clients ask again and again for a node-name glob that makes a
    // backtracking matcher take exponential time.
    let hostile = json!({"method": "GetFlows", "repeat_for": 8, "request": {
        "number": 4000, "whitelist": [{"node_name": ["*a*a*a*a*a*a*b", "**a**a**a**a**a**a**b"]}]}});
    let clients: Vec<_> = (0..2).map(|_| hubble_spawn(None, &address, &hostile)).collect();
    std::thread::sleep(Duration::from_secs(2));
    let mut slowest_export = Duration::ZERO;
    let mut slowest_metrics = Duration::ZERO;
    for i in 0..10 {
        let started = Instant::now();
        let codes = send_logs(grpc, "during-hostile-hubble", i * 10, 1, 10);
        assert_eq!(codes, [tonic::Code::Ok]);
        slowest_export = slowest_export.max(started.elapsed());
        let started = Instant::now();
        assert!(http_get(flowtel.metrics_port, "/metrics").is_some_and(|(status, _)| status == 200));
        slowest_metrics = slowest_metrics.max(started.elapsed());
        std::thread::sleep(Duration::from_millis(300));
    }
    for client in clients {
        let end = hubble_responses(client);
        assert_eq!(end[0]["end"], "repeated", "{end:?}");
        assert!(end[0]["calls"].as_u64().unwrap() >= 2, "the hostile calls are answered: {end:?}");
        assert_eq!(end[0]["responses"], 0, "the glob matches no node: {end:?}");
    }
    assert!(slowest_export < Duration::from_secs(1), "an OTLP export took {slowest_export:?}");
    assert!(slowest_metrics < Duration::from_secs(1), "/metrics took {slowest_metrics:?}");
    // The real filter still works.
    let matching = hubble_call(
        &address,
        &json!({"method": "GetFlows", "request": {"number": 5, "whitelist": [{"node_name": ["a*"]}]}}),
    );
    assert_eq!(matching.len(), 6, "5 flows and the end: {:?}", &matching[5]);
}

#[test]
fn what_shutdown_drops_at_its_deadline_is_counted_and_said() {
    let grpc = free_port();
    let mut flowtel = Flowtel::start(&format!(
        r#"
receivers:
  otlp: {{protocols: {{grpc: {{endpoint: "127.0.0.1:{grpc}"}}}}}}
exporters:
  otlp_grpc: {{endpoint: "127.0.0.1:{dead}", tls: {{insecure: true}}, timeout: 1s}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:${{METRICS_PORT}}"}}}}
  pipelines:
    logs: {{receivers: [otlp], exporters: [otlp_grpc]}}
"#,
        dead = free_port()
    ));
    assert!(send_logs(grpc, "shutdown", 0, 10, 10).iter().all(|c| *c == tonic::Code::Ok));
    wait_for(WAIT, "the queue to hold the 100 records", || {
        (flowtel.metric("flowtel_exporter_queue_size", &[("unit", "bytes")]) > 0.0).then_some(())
    });
    let status = flowtel.child.stop();
    assert!(status.success(), "{status:?}");
    let log = flowtel.child.output();
    assert!(
        log.contains("Shutdown dropped items") && log.contains("items=100"),
        "the log says what was dropped:\n{log}"
    );
}

#[test]
fn a_batch_the_backend_refuses_for_its_size_is_sent_again_in_halves() {
    let (front, back, sink_port) = (free_port(), free_port(), free_port());
    let sink = Sink::start(sink_port);
    // The backend: a flowtel that takes at most 1 MiB per request.
    let backend = Flowtel::start(&format!(
        r#"
receivers:
  otlp: {{protocols: {{grpc: {{endpoint: "127.0.0.1:{back}", max_recv_msg_size_mib: 1}}}}}}
exporters:
  otlp_grpc: {{endpoint: "127.0.0.1:{sink_port}", tls: {{insecure: true}}}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:${{METRICS_PORT}}"}}}}
  pipelines:
    logs: {{receivers: [otlp], exporters: [otlp_grpc]}}
"#
    ));
    // The sender batches far more than that into one request.
    let sender = Flowtel::start(&format!(
        r#"
receivers:
  otlp: {{protocols: {{grpc: {{endpoint: "127.0.0.1:{front}"}}}}}}
processors:
  batch: {{send_batch_size: 60000, timeout: 500ms}}
exporters:
  otlp_grpc: {{endpoint: "127.0.0.1:{back}", tls: {{insecure: true}}, compression: none}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:${{METRICS_PORT}}"}}}}
  pipelines:
    logs: {{receivers: [otlp], processors: [batch], exporters: [otlp_grpc]}}
"#
    ));
    let run = format!("halves-{front}");
    assert!(send_logs(front, &run, 0, 10, 4_000).iter().all(|c| *c == tonic::Code::Ok));
    let seqs = wait_for(WAIT, "all 40,000 records through the 1 MiB backend", || {
        let seqs = sink.seqs(&run);
        (seqs.len() >= 40_000).then_some(seqs)
    });
    assert!(seqs.values().all(|&n| n == 1), "duplicates");
    assert!(backend.metric("flowtel_receiver_refused_requests_total", &[("reason", "too_large")]) >= 1.0);
    assert_eq!(sender.metric("flowtel_exporter_dropped_items_total", &[]), 0.0);
    assert_eq!(sender.metric("flowtel_exporter_sent_items_total", &[]), 40_000.0);
}
