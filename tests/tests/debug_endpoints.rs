//! The telemetry server's debug pages, as an operator reads them:
//! `/debug/config` shows the effective config and never a secret,
//! `/debug/memory` the process's memory and the BPF maps it holds,
//! `/debug/pprof/profile` a CPU profile in pprof's format.

#![allow(clippy::unwrap_used, missing_docs)]

use std::{io::Read as _, time::Duration};

use flowtel_tests::{free_port, http_get, netns::is_root, process::Flowtel, send::send_logs};
use serde_json::Value;

const TOKEN: &str = "tok-3f9a1c77e2";
const API_KEY: &str = "key-b81d0c5e44";

fn page(flowtel: &Flowtel, path: &str) -> (u16, String) {
    http_get(flowtel.metrics_port, path).unwrap()
}

#[test]
fn the_effective_config_is_shown_without_its_secrets() {
    let (grpc, backend) = (free_port(), free_port());
    let config = format!(
        r#"
receivers:
  otlp: {{protocols: {{grpc: {{endpoint: "127.0.0.1:{grpc}"}}}}}}
exporters:
  otlp_grpc:
    endpoint: "127.0.0.1:{backend}"
    tls: {{insecure: true}}
    headers: {{authorization: "Bearer ${{env:FLOWTEL_TEST_TOKEN}}", x-api-key: "{API_KEY}"}}
  otlp_http:
    endpoint: "http://127.0.0.1:{backend}"
    headers: {{x-scope-orgid: "tenant-1", authorization: "Basic ${{env:FLOWTEL_TEST_TOKEN}}"}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:${{METRICS_PORT}}"}}}}
  pipelines:
    logs: {{receivers: [otlp], exporters: [otlp_grpc, otlp_http]}}
"#
    );
    let flowtel = Flowtel::start_with_env(&config, &[("FLOWTEL_TEST_TOKEN", TOKEN)]);
    let (status, body) = page(&flowtel, "/debug/config");
    assert_eq!(status, 200, "{body}");
    for secret in [TOKEN, API_KEY, "tenant-1"] {
        assert!(!body.contains(secret), "/debug/config shows {secret}: {body}");
    }
    let shown: Value = serde_json::from_str(&body).unwrap();
    let exporter = &shown["exporters"]["otlp_grpc"];
    assert_eq!(exporter["endpoint"], format!("127.0.0.1:{backend}"), "the rest is shown as expanded");
    assert_eq!(exporter["headers"]["authorization"], "[REDACTED]");
    assert_eq!(shown["service"]["pipelines"]["logs"]["exporters"], serde_json::json!(["otlp_grpc", "otlp_http"]));

    let (status, index) = page(&flowtel, "/debug");
    assert_eq!(status, 200);
    assert!(index.contains("\"config\"") && index.contains("\"memory\""), "{index}");
    assert_eq!(page(&flowtel, "/debug/nothing").0, 404);
}

#[test]
fn a_cpu_profile_in_pprof_format_names_flowtels_functions() {
    let grpc = free_port();
    let config = format!(
        r#"
receivers:
  otlp: {{protocols: {{grpc: {{endpoint: "127.0.0.1:{grpc}"}}}}}}
exporters:
  debug: {{verbosity: normal}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:${{METRICS_PORT}}"}}}}
  pipelines:
    logs: {{receivers: [otlp], exporters: [debug]}}
"#
    );
    let flowtel = Flowtel::start(&config);
    let port = flowtel.metrics_port;
    let profile = std::thread::spawn(move || {
        flowtel_tests::http_request(port, "GET", "/debug/pprof/profile?seconds=2", &[], b"")
    });
    // Work for the sampler to see.
    let started = std::time::Instant::now();
    let mut first = 0;
    while started.elapsed() < Duration::from_millis(1800) {
        send_logs(grpc, "profile", first, 4, 500);
        first += 2000;
    }
    let response = profile.join().unwrap();
    assert_eq!(response.status, 200, "{}", String::from_utf8_lossy(&response.body));
    let mut decoded = Vec::new();
    flate2::read::GzDecoder::new(response.body.as_slice()).read_to_end(&mut decoded).unwrap();
    let text = String::from_utf8_lossy(&decoded);
    assert!(text.contains("flowtel"), "the profile's functions include flowtel's ({} bytes)", decoded.len());
    let (status, _) = page(&flowtel, "/debug/pprof/profile?seconds=0");
    assert_eq!(status, 400);
}

#[test]
fn memory_shows_the_bpf_maps_flowtel_holds() {
    if !is_root() {
        eprintln!("skipped: needs root to load eBPF programs");
        return;
    }
    let config = r#"
receivers:
  ebpf: {interfaces: [lo]}
exporters:
  debug:
service:
  telemetry: {metrics: {address: "127.0.0.1:${METRICS_PORT}"}}
  pipelines:
    logs: {receivers: [ebpf], exporters: [debug]}
"#;
    let flowtel = Flowtel::start(config);
    let (status, body) = page(&flowtel, "/debug/memory");
    assert_eq!(status, 200, "{body}");
    let memory: Value = serde_json::from_str(&body).unwrap();
    assert!(memory["resident_bytes"].as_u64().unwrap() > 1 << 20, "{memory}");
    let maps = memory["bpf_maps"].as_array().unwrap();
    assert!(maps.len() >= 3, "the flow table, counters and ring buffer at least: {memory}");
    let total: u64 = maps.iter().map(|map| map["memlock_bytes"].as_u64().unwrap()).sum();
    assert_eq!(memory["bpf_map_bytes"].as_u64(), Some(total));
    assert!(total > 0 && maps.iter().all(|map| map["id"].as_u64().unwrap() > 0), "{memory}");
}
