//! The process as an operator sees it: health endpoints, the component
//! list, a graceful shutdown that flushes what batches and queues hold, and
//! flowtel's own metrics pushed over OTLP.

#![allow(clippy::unwrap_used, missing_docs)]

use std::{process::Command, time::Duration};

use flowtel_tests::{
    Flowtel, Recorder, flowtel_bin, free_port, http_get,
    otlp_json::{file_requests, items},
    send::send_logs,
    wait_for,
};

#[test]
fn components_lists_every_type_and_alias() {
    let output = Command::new(flowtel_bin()).arg("components").output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    for expected in ["otlp [", "batch [", "otlp_grpc (alias otlp)", "otlp_http (alias otlphttp)", "debug [", "file ["] {
        assert!(text.contains(expected), "{expected:?} missing from:\n{text}");
    }
}

#[test]
fn shutdown_flushes_held_batches_and_reports_health() {
    let dir = tempfile::tempdir().unwrap();
    let grpc = free_port();
    let file = dir.path().join("out.jsonl");
    // The batch would hold records for a minute: only the shutdown flush can write them.
    let mut flowtel = Flowtel::start(&format!(
        r#"
receivers:
  otlp: {{protocols: {{grpc: {{endpoint: "127.0.0.1:{grpc}"}}}}}}
processors:
  batch: {{send_batch_size: 100000, timeout: 60s}}
exporters:
  file: {{path: "{file}"}}
  debug: {{verbosity: basic}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:${{METRICS_PORT}}"}}}}
  pipelines:
    logs: {{receivers: [otlp], processors: [batch], exporters: [file, debug]}}
"#,
        file = file.display()
    ));
    assert_eq!(http_get(flowtel.metrics_port, "/healthz").map(|(s, _)| s), Some(200));
    assert_eq!(http_get(flowtel.metrics_port, "/readyz").map(|(s, _)| s), Some(200));
    assert!(send_logs(grpc, "shutdown", 0, 3, 7).iter().all(|c| *c == tonic::Code::Ok));
    assert_eq!(flowtel.metric("flowtel_receiver_accepted_items_total", &[]), 21.0);
    assert_eq!(std::fs::read_to_string(&file).unwrap_or_default(), "", "the batch should still hold the records");

    let status = flowtel.child.stop();
    assert!(status.success(), "exit status {status}");
    assert!(file.exists(), "the file exporter wrote at shutdown");
    assert_eq!(items(&file_requests(&file), "logs").len(), 21, "every held record written at shutdown");
    assert!(flowtel.child.output().contains("logs: 3 resources, 21 log records"), "{}", flowtel.child.output());
}

#[test]
fn own_metrics_are_pushed_over_otlp() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::start(dir.path());
    let grpc = free_port();
    let _flowtel = Flowtel::start(&format!(
        r#"
receivers:
  otlp: {{protocols: {{grpc: {{endpoint: "127.0.0.1:{grpc}"}}}}}}
exporters:
  debug:
service:
  telemetry:
    metrics:
      address: "127.0.0.1:${{METRICS_PORT}}"
      otlp: {{endpoint: "http://127.0.0.1:{recorder}", interval: 1s}}
  pipelines:
    logs: {{receivers: [otlp], exporters: [debug]}}
"#,
        recorder = recorder.port
    ));
    assert!(send_logs(grpc, "push", 0, 2, 5).iter().all(|c| *c == tonic::Code::Ok));
    wait_for(Duration::from_secs(30), "a pushed accepted-items point of 10", || {
        let requests = recorder.requests();
        let points = items(requests.iter().filter(|(s, _)| s == "metrics").map(|(_, r)| r), "metrics");
        points
            .iter()
            .any(|p| {
                p.name == "flowtel_receiver_accepted_items"
                    && p.attributes.get("transport").map(String::as_str) == Some("grpc")
                    && p.resource.get("service.name").map(String::as_str) == Some("flowtel")
            })
            .then_some(())
    });
}
