//! End to end, against programs nobody here wrote: the official
//! OpenTelemetry Python SDK sends to flowtel's `otlp` receiver, flowtel
//! batches and forwards to a real rotel collector (which forwards to a
//! recording backend) and to the `file` exporter.

#![allow(clippy::unwrap_used, missing_docs)]

use std::{collections::BTreeMap, process::Command, time::Duration};

use flowtel_tests::{
    Flowtel, Recorder, Rotel, free_port,
    otlp_json::{Item, file_requests, items},
    python, script,
    send::{gateway_config, send_logs, send_requests},
    wait_for,
};

const WAIT: Duration = Duration::from_secs(60);

fn sdk_send(transport: &str, endpoint: &str, run: &str, logs: u32, spans: u32, points: u32) {
    let output = Command::new(python())
        .arg(script("sdk_send.py"))
        .args(["--transport", transport, "--endpoint", endpoint, "--run", run])
        .args(["--logs", &logs.to_string(), "--spans", &spans.to_string(), "--metric-points", &points.to_string()])
        .output()
        .unwrap();
    assert!(output.status.success(), "sdk_send.py: {}", String::from_utf8_lossy(&output.stderr));
}

/// Items of `run`, counted by (transport, test.seq).
fn by_seq(items: &[Item], run: &str) -> BTreeMap<(String, String), usize> {
    let mut seen = BTreeMap::new();
    for item in items.iter().filter(|i| i.resource.get("test.run").map(String::as_str) == Some(run)) {
        let key = (item.resource["test.transport"].clone(), item.attributes["test.seq"].clone());
        *seen.entry(key).or_default() += 1;
    }
    seen
}

fn check_items(items: &[Item], run: &str, expected_per_transport: usize, scope: &str, where_: &str) {
    let seen = by_seq(items, run);
    assert_eq!(seen.len(), 2 * expected_per_transport, "{where_}: distinct {scope} items");
    assert!(seen.values().all(|&n| n == 1), "{where_}: some {scope} item arrived more than once: {seen:?}");
    for item in items.iter().filter(|i| i.resource.get("test.run").map(String::as_str) == Some(run)) {
        assert_eq!(item.resource.get("service.name").map(String::as_str), Some("flowtel-e2e"), "{where_}: resource");
        assert_eq!(
            item.resource.get("telemetry.sdk.language").map(String::as_str),
            Some("python"),
            "{where_}: resource"
        );
        assert_eq!((item.scope_name.as_str(), item.scope_version.as_str()), (scope, "1.2.3"), "{where_}: scope");
    }
}

fn check_all(logs: &[Item], spans: &[Item], points: &[Item], run: &str, where_: &str) {
    check_items(logs, run, 40, "flowtel.e2e.logs", where_);
    check_items(spans, run, 15, "flowtel.e2e.traces", where_);
    check_items(points, run, 5, "flowtel.e2e.metrics", where_);
    for log in logs.iter().filter(|i| i.resource.get("test.run").map(String::as_str) == Some(run)) {
        assert_eq!(log.severity, "WARN", "{where_}: severity");
        assert_eq!(log.attributes.get("network.transport").map(String::as_str), Some("tcp"), "{where_}: attributes");
        assert_eq!(log.name, format!("record {}", log.attributes["test.seq"]), "{where_}: body");
    }
    for span in spans.iter().filter(|i| i.resource.get("test.run").map(String::as_str) == Some(run)) {
        assert_eq!(span.name, format!("span {}", span.attributes["test.seq"]), "{where_}: span name");
    }
}

/// A gateway for the SDK tests: `otlp` (gRPC and HTTP) → `processors` →
/// rotel, and into the `file` exporter at `file` when given.
fn sdk_gateway(grpc: u16, http: u16, rotel: u16, processors: &str, file: Option<&std::path::Path>) -> Flowtel {
    let (file_exporter, exporters) = match file {
        Some(file) => (format!("  file: {{path: \"{}\"}}\n", file.display()), "otlp_grpc/rotel, file"),
        None => (String::new(), "otlp_grpc/rotel"),
    };
    Flowtel::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{grpc}"}}
      http: {{endpoint: "127.0.0.1:{http}"}}
processors:
  batch: {{send_batch_size: 64, timeout: 200ms}}
  memory_limiter: {{limit_mib: 512}}
exporters:
  otlp_grpc/rotel:
    endpoint: 127.0.0.1:{rotel}
    tls: {{insecure: true}}
{file_exporter}service:
  telemetry: {{metrics: {{address: "127.0.0.1:${{METRICS_PORT}}"}}}}
  pipelines:
    logs: {{receivers: [otlp], processors: [{processors}], exporters: [{exporters}]}}
    traces: {{receivers: [otlp], processors: [{processors}], exporters: [{exporters}]}}
    metrics: {{receivers: [otlp], processors: [batch], exporters: [{exporters}]}}
"#
    ))
}

/// Sends the SDK's logs, spans and points as `run` over gRPC and HTTP, and
/// waits until rotel's backend has them all.
fn send_to_rotel(recorder: &Recorder, grpc: u16, http: u16, run: &str) -> (Vec<Item>, Vec<Item>, Vec<Item>) {
    sdk_send("grpc", &format!("127.0.0.1:{grpc}"), run, 40, 15, 5);
    sdk_send("http", &format!("http://127.0.0.1:{http}"), run, 40, 15, 5);
    wait_for(WAIT, "everything to reach rotel's backend", || {
        let requests = recorder.requests();
        let of = |signal: &str| items(requests.iter().filter(|(s, _)| s == signal).map(|(_, r)| r), signal);
        let (logs, spans, points) = (of("logs"), of("traces"), of("metrics"));
        (by_seq(&logs, run).len() >= 80 && by_seq(&spans, run).len() >= 30 && by_seq(&points, run).len() >= 10)
            .then_some((logs, spans, points))
    })
}

#[test]
fn sdk_data_reaches_rotel_and_the_file_once_with_everything_intact() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::start(dir.path());
    let rotel = Rotel::start(dir.path(), free_port(), recorder.port);
    let (grpc, http) = (free_port(), free_port());
    let file = dir.path().join("flowtel-out.jsonl");
    let flowtel = sdk_gateway(grpc, http, rotel.grpc_port, "batch", Some(&file));
    let run = format!("run-{}", free_port());
    let (logs, spans, points) = send_to_rotel(&recorder, grpc, http, &run);
    check_all(&logs, &spans, &points, &run, "through rotel");

    let from_file = |signal: &str| {
        file_requests(&file).into_iter().filter(|r| r.get(signal_key(signal)).is_some()).collect::<Vec<_>>()
    };
    let (logs, spans, points) = wait_for(WAIT, "everything in the file", || {
        let (l, s, p) = (
            items(&from_file("logs"), "logs"),
            items(&from_file("traces"), "traces"),
            items(&from_file("metrics"), "metrics"),
        );
        (by_seq(&l, &run).len() >= 80 && by_seq(&s, &run).len() >= 30 && by_seq(&p, &run).len() >= 10)
            .then_some((l, s, p))
    });
    check_all(&logs, &spans, &points, &run, "file exporter");

    for (signal, count) in [("logs", 80.0), ("traces", 30.0), ("metrics", 10.0)] {
        assert_eq!(
            flowtel.metric("flowtel_receiver_accepted_items_total", &[("signal", signal)]),
            count,
            "accepted {signal}"
        );
        assert_eq!(
            flowtel.metric("flowtel_exporter_sent_items_total", &[("exporter", "otlp_grpc/rotel"), ("signal", signal)]),
            count,
            "sent {signal}"
        );
    }
}

/// Where logs and spans only pass `batch` on their way to OTLP exporters,
/// the receiver keeps them encoded (checked, never decoded): what rotel
/// gets is still exactly what the SDK sent, over gRPC and HTTP alike.
#[test]
fn sdk_data_passed_through_encoded_reaches_rotel_intact() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::start(dir.path());
    let rotel = Rotel::start(dir.path(), free_port(), recorder.port);
    let (grpc, http) = (free_port(), free_port());
    let flowtel = sdk_gateway(grpc, http, rotel.grpc_port, "memory_limiter, batch", None);
    let run = format!("encoded-{}", free_port());
    let (logs, spans, points) = send_to_rotel(&recorder, grpc, http, &run);
    check_all(&logs, &spans, &points, &run, "passed through encoded");
    for (signal, count) in [("logs", 80.0), ("traces", 30.0)] {
        assert_eq!(flowtel.metric("flowtel_exporter_sent_items_total", &[("signal", signal)]), count, "sent {signal}");
    }
}

fn signal_key(signal: &str) -> &'static str {
    match signal {
        "logs" => "resourceLogs",
        "traces" => "resourceSpans",
        _ => "resourceMetrics",
    }
}

/// `test.seq` of every log record of `run` the recorder got, with counts.
fn recorded_seqs(recorder: &Recorder, run: &str) -> BTreeMap<u64, usize> {
    let requests = recorder.requests();
    let logs = items(requests.iter().filter(|(s, _)| s == "logs").map(|(_, r)| r), "logs");
    let mut seen = BTreeMap::new();
    for item in logs.iter().filter(|i| i.resource.get("test.run").map(String::as_str) == Some(run)) {
        *seen.entry(item.attributes["test.seq"].parse::<u64>().unwrap()).or_default() += 1;
    }
    seen
}

#[test]
fn a_backend_outage_loses_nothing_the_queue_holds() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::start(dir.path());
    let backend_port = free_port();
    let mut rotel = Rotel::start(dir.path(), backend_port, recorder.port);
    let grpc = free_port();
    let flowtel = Flowtel::start(&gateway_config(grpc, backend_port, "{queue_size: 1000}", None));
    let run = format!("outage-{grpc}");

    assert!(send_logs(grpc, &run, 0, 10, 10).iter().all(|c| *c == tonic::Code::Ok));
    wait_for(WAIT, "the first 100 records at the backend", || {
        (recorded_seqs(&recorder, &run).len() == 100).then_some(())
    });

    rotel.child.stop();
    assert!(send_logs(grpc, &run, 100, 10, 10).iter().all(|c| *c == tonic::Code::Ok));
    wait_for(WAIT, "failed attempts while the backend is down", || {
        (flowtel.metric("flowtel_exporter_send_failed_items_total", &[]) > 0.0).then_some(())
    });
    let _rotel = Rotel::start(dir.path(), backend_port, recorder.port);
    let seen = wait_for(WAIT, "all 200 records after the backend came back", || {
        let seen = recorded_seqs(&recorder, &run);
        (seen.len() == 200).then_some(seen)
    });
    assert!(seen.values().all(|&n| n == 1), "duplicates: {seen:?}");
    assert_eq!(flowtel.metric("flowtel_exporter_dropped_items_total", &[]), 0.0);
    assert_eq!(flowtel.metric("flowtel_exporter_sent_items_total", &[]), 200.0);
}

#[test]
fn a_full_queue_drops_and_counts_exactly_what_it_cannot_hold() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::start(dir.path());
    let backend_port = free_port();
    let grpc = free_port();
    // The backend is down from the start; the queue holds 2 batches, the one
    // its consumer retries among them, and drops what does not fit.
    let flowtel = Flowtel::start(&gateway_config(
        grpc,
        backend_port,
        "{queue_size: 2, num_consumers: 1, block_on_overflow: false}",
        None,
    ));
    let run = format!("overflow-{grpc}");
    assert!(send_logs(grpc, &run, 0, 10, 10).iter().all(|c| *c == tonic::Code::Ok));
    wait_for(WAIT, "all 100 records accepted", || {
        (flowtel.metric("flowtel_receiver_accepted_items_total", &[]) == 100.0).then_some(())
    });
    let dropped = wait_for(WAIT, "drops to be counted", || {
        let dropped = flowtel.metric("flowtel_exporter_dropped_items_total", &[("reason", "queue_full")]);
        (dropped > 0.0).then_some(dropped)
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(flowtel.metric("flowtel_exporter_dropped_items_total", &[("reason", "queue_full")]), dropped);

    let _rotel = Rotel::start(dir.path(), backend_port, recorder.port);
    let kept = 100 - dropped as usize;
    let seen = wait_for(WAIT, "the queued records at the backend", || {
        let seen = recorded_seqs(&recorder, &run);
        (seen.len() >= kept && flowtel.metric("flowtel_exporter_sent_items_total", &[]) as usize == kept)
            .then_some(seen)
    });
    assert_eq!(seen.len(), kept, "what arrived + what was counted as dropped = what was sent");
    assert!(seen.values().all(|&n| n == 1), "duplicates: {seen:?}");
    assert_eq!(flowtel.metric("flowtel_exporter_dropped_items_total", &[]), dropped, "no other drop");
    // One batch at the consumer and one waiting were kept.
    assert_eq!(kept, 20);
}

fn http_post(port: u16, path: &str, content_type: &str, body: &[u8]) -> (u16, String) {
    let response = flowtel_tests::http_request(port, "POST", path, &[("Content-Type", content_type)], body);
    (response.status, String::from_utf8_lossy(&response.body).into_owned())
}

#[test]
fn malformed_payloads_are_refused_while_other_clients_keep_flowing() {
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http) = (free_port(), free_port());
    let file = dir.path().join("out.jsonl");
    let flowtel = Flowtel::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{grpc}"}}
      http: {{endpoint: "127.0.0.1:{http}"}}
exporters:
  file: {{path: "{file}"}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:${{METRICS_PORT}}"}}}}
  pipelines:
    logs: {{receivers: [otlp], exporters: [file]}}
"#,
        file = file.display()
    ));
    let run = format!("malformed-{grpc}");
    let good = std::thread::spawn({
        let run = run.clone();
        move || send_logs(grpc, &run, 0, 50, 4)
    });

    let malformed = Command::new(python())
        .arg(script("malformed.py"))
        .args(["--endpoint", &format!("127.0.0.1:{grpc}")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&malformed.stdout).trim(), "INVALID_ARGUMENT");
    let (status, body) = http_post(http, "/v1/logs", "application/x-protobuf", b"\x0a\x7f\x01");
    assert_eq!(status, 400, "{body}");
    let (status, body) = http_post(http, "/v1/logs", "application/json", b"{\"resourceLogs\": 7}");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("malformed OTLP logs request"), "{body}");
    let (status, _) = http_post(http, "/v1/logs", "text/plain", b"hello");
    assert_eq!(status, 415);

    assert!(good.join().unwrap().iter().all(|c| *c == tonic::Code::Ok));
    let seqs = wait_for(WAIT, "the good client's 200 records in the file", || {
        let logs = items(&file_requests(&file), "logs");
        let seqs: Vec<String> = logs.iter().map(|i| i.attributes["test.seq"].clone()).collect();
        (seqs.len() >= 200).then_some(seqs)
    });
    assert_eq!(seqs.len(), 200);
    assert_eq!(flowtel.metric("flowtel_receiver_malformed_requests_total", &[("transport", "grpc")]), 1.0);
    assert_eq!(flowtel.metric("flowtel_receiver_malformed_requests_total", &[("transport", "http")]), 2.0);
}

#[test]
fn a_stalled_pipeline_makes_the_receiver_answer_unavailable_and_counts_it() {
    let grpc = free_port();
    // No backend (port 9, where nothing listens: a free port could be taken
    // by a backend of a test running alongside), and an exporter that blocks
    // rather than drop: the pipeline stalls, its input fills, and the
    // receiver must push back.
    let flowtel =
        Flowtel::start(&gateway_config(grpc, 9, "{queue_size: 1, num_consumers: 1, block_on_overflow: true}", None));
    let codes = send_logs(grpc, "backpressure", 0, 120, 1);
    let refused = codes.iter().filter(|c| **c == tonic::Code::Unavailable).count();
    assert!(refused > 0, "no UNAVAILABLE among {codes:?}");
    assert!(codes.iter().all(|c| matches!(c, tonic::Code::Ok | tonic::Code::Unavailable)));
    assert_eq!(flowtel.metric("flowtel_receiver_refused_items_total", &[]), refused as f64);
    assert_eq!(flowtel.metric("flowtel_receiver_accepted_items_total", &[]), (120 - refused) as f64);
}

#[test]
fn otlp_http_exporter_delivers_protobuf_and_json_to_rotel() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::start(dir.path());
    let rotel = Rotel::start(dir.path(), free_port(), recorder.port);
    let grpc = free_port();
    let _flowtel = Flowtel::start(&format!(
        r#"
receivers:
  otlp: {{protocols: {{grpc: {{endpoint: "127.0.0.1:{grpc}"}}}}}}
processors:
  batch: {{timeout: 100ms}}
exporters:
  otlp_http/proto:
    endpoint: http://127.0.0.1:{http}
    compression: gzip
    headers: {{x-flowtel-test: "1"}}
  otlphttp/json:
    logs_endpoint: http://127.0.0.1:{http}/v1/logs
    encoding: json
    compression: none
service:
  telemetry: {{metrics: {{address: "127.0.0.1:${{METRICS_PORT}}"}}}}
  pipelines:
    logs/proto: {{receivers: [otlp], processors: [batch], exporters: [otlp_http/proto]}}
    logs/json: {{receivers: [otlp], processors: [batch], exporters: [otlphttp/json]}}
"#,
        http = rotel.http_port
    ));
    let run = format!("http-{grpc}");
    assert!(send_logs(grpc, &run, 0, 5, 10).iter().all(|c| *c == tonic::Code::Ok));
    // Both pipelines take every record: each reaches rotel twice, once per encoding.
    let seen = wait_for(WAIT, "both encodings' records at the backend", || {
        let seen = recorded_seqs(&recorder, &run);
        (seen.len() == 50 && seen.values().all(|&n| n >= 2)).then_some(seen)
    });
    assert!(seen.values().all(|&n| n == 2), "{seen:?}");
}

#[test]
fn otlp_grpc_exporter_speaks_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = flowtel_tests::tls::TestPki::new(dir.path());
    let path = |p: &std::path::Path| p.display().to_string();
    let recorder = Recorder::start_with(
        dir.path(),
        &["--tls-cert", &path(&pki.server_cert), "--tls-key", &path(&pki.server_key), "--client-ca", &path(&pki.ca)],
    );
    let grpc = free_port();
    let _flowtel = Flowtel::start(&format!(
        r#"
receivers:
  otlp: {{protocols: {{grpc: {{endpoint: "127.0.0.1:{grpc}"}}}}}}
exporters:
  otlp_grpc:
    endpoint: localhost:{port}
    tls: {{ca_file: "{ca}", cert_file: "{cert}", key_file: "{key}"}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:${{METRICS_PORT}}"}}}}
  pipelines:
    logs: {{receivers: [otlp], exporters: [otlp_grpc]}}
"#,
        port = recorder.port,
        ca = pki.ca.display(),
        cert = pki.client_cert.display(),
        key = pki.client_key.display(),
    ));
    let run = format!("tls-{grpc}");
    assert!(send_logs(grpc, &run, 0, 3, 10).iter().all(|c| *c == tonic::Code::Ok));
    let seen = wait_for(WAIT, "the records over mutual TLS", || {
        let seen = recorded_seqs(&recorder, &run);
        (seen.len() == 30).then_some(seen)
    });
    assert!(seen.values().all(|&n| n == 1));
}

/// A request of `records` records with 1 KiB bodies, numbered from `first`.
fn heavy_request(
    run: &str,
    first: u64,
    records: u64,
) -> opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value::Value};
    let mut request = flowtel_tests::send::logs_request(run, first..first + records);
    for record in &mut request.resource_logs[0].scope_logs[0].log_records {
        record.body = Some(AnyValue { value: Some(Value::StringValue("x".repeat(1024))) });
    }
    request
}

#[test]
fn the_memory_limiter_pushes_back_and_flow_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let backend_port = free_port();
    let grpc = free_port();
    // The backend is down: what arrives piles up in the exporter's queue.
    let config = gateway_config(grpc, backend_port, "{queue_size: 100000}", None)
        .replace("exporters:\n  otlp_grpc:", "processors:\n  memory_limiter: {limit_mib: 64, spike_limit_mib: 16, check_interval: 50ms}\nexporters:\n  otlp_grpc:")
        .replace("exporters: [otlp_grpc]}", "processors: [memory_limiter], exporters: [otlp_grpc]}");
    let flowtel = Flowtel::start(&config);
    let run = format!("memory-{grpc}");
    // 1 MiB requests until flowtel refuses one (it holds 48 MiB at most before it does).
    let mut accepted = 0;
    let mut refused = None;
    for i in 0..200u64 {
        match send_requests(grpc, [heavy_request(&run, i * 1000, 1000)])[0] {
            tonic::Code::Ok => accepted += 1,
            code => {
                refused = Some(code);
                break;
            }
        }
    }
    assert_eq!(refused, Some(tonic::Code::Unavailable), "refused with a retryable status after {accepted} MiB");
    assert!((20..=64).contains(&accepted), "{accepted} MiB taken before the limit");
    let heap = flowtel.metric("flowtel_process_heap_bytes", &[]);
    assert!(heap > 40.0 * 1024.0 * 1024.0, "near the 48 MiB soft limit: {heap}");

    // The backend comes back, the queue drains, memory falls: data is taken again.
    let recorder = Recorder::start_on(dir.path(), backend_port, &[]);
    wait_for(Duration::from_secs(60), "flowtel to take data again", || {
        (send_requests(grpc, [heavy_request(&run, 1_000_000, 10)])[0] == tonic::Code::Ok).then_some(())
    });
    let expected = accepted * 1000 + 10;
    wait_for(Duration::from_secs(60), "everything accepted at the backend", || {
        (recorded_seqs(&recorder, &run).len() == expected as usize).then_some(())
    });
    assert_eq!(flowtel.metric("flowtel_exporter_dropped_items_total", &[]), 0.0, "pushing back lost nothing");
}
