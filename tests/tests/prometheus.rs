//! The `prometheus` exporter and the connectors that feed it, checked the
//! way a user would: a real Prometheus server (Debian's) scrapes flowtel,
//! and its query API answers; the scrape of the Python SDK's metrics is
//! compared with a reviewed golden file; `max_cardinality` folds series
//! into the overflow series and counts it; `metric_expiration` removes
//! idle series.

#![allow(clippy::unwrap_used, missing_docs)]

use std::{
    fs,
    process::Command,
    time::{Duration, Instant},
};

use flowtel_tests::tls::TestPki;
use flowtel_tests::{
    free_port, http_request, metric_value, process::Flowtel, prometheus::Prometheus, python, root, script, wait_for,
};
use serde_json::{Value, json};

/// The scrape a Prometheus server asks for (OpenMetrics first).
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

fn config(otlp: u16, scrape: u16, expiration: &str) -> String {
    format!(
        r#"
receivers:
  otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:{otlp}"}}}}}}
connectors:
  signal_to_metrics:
    logs:
      - name: network.flow.bytes
        description: Bytes between workloads.
        unit: By
        conditions: ['event_name == "network.flow"']
        attributes:
          - key: k8s.src.owner.name
          - key: k8s.dst.owner.name
            default_value: unknown
        max_cardinality: 3
        sum: {{value: flow.bytes}}
  count:
    logs:
      flow.records:
        description: Flow records.
exporters:
  prometheus:
    endpoint: "127.0.0.1:{scrape}"
    enable_open_metrics: true
    metric_expiration: {expiration}
    const_labels: {{cluster: test}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:${{METRICS_PORT}}"}}}}
  pipelines:
    metrics: {{receivers: [otlp], exporters: [prometheus]}}
    logs: {{receivers: [otlp], exporters: [signal_to_metrics, count]}}
    metrics/derived: {{receivers: [signal_to_metrics, count], exporters: [prometheus]}}
"#
    )
}

/// Sends the Python SDK's fixed metrics; returns the trace id its exemplars carry.
fn send_sdk_metrics(otlp: u16) -> String {
    let output = Command::new(python())
        .arg(script("sdk_metrics.py"))
        .args(["--endpoint", &format!("http://127.0.0.1:{otlp}")])
        .output()
        .unwrap();
    assert!(output.status.success(), "sdk_metrics.py: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Flow records as the kernel receiver and k8s_attributes write them, over OTLP/JSON.
fn send_flows(otlp: u16, flows: &[(&str, &str, i64)]) {
    let records: Vec<Value> = flows
        .iter()
        .map(|(src, dst, bytes)| {
            json!({
                "eventName": "network.flow",
                "attributes": [
                    {"key": "k8s.src.owner.name", "value": {"stringValue": src}},
                    {"key": "k8s.dst.owner.name", "value": {"stringValue": dst}},
                    {"key": "flow.bytes", "value": {"intValue": bytes.to_string()}},
                ],
            })
        })
        .collect();
    let body = json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "host.name", "value": {"stringValue": "node-1"}}]},
        "scopeLogs": [{"logRecords": records}],
    }]});
    let response =
        http_request(otlp, "POST", "/v1/logs", &[("Content-Type", "application/json")], body.to_string().as_bytes());
    assert_eq!(response.status, 200, "{}", String::from_utf8_lossy(&response.body));
}

fn scrape(port: u16, accept: &str) -> String {
    let response = http_request(port, "GET", "/metrics", &[("Accept", accept)], b"");
    assert_eq!(response.status, 200);
    String::from_utf8(response.body).unwrap()
}

#[test]
fn prometheus_scrapes_what_flowtel_exposes_with_the_collectors_names_and_exemplars() {
    let (otlp, scrape_port) = (free_port(), free_port());
    let flowtel = Flowtel::start(&config(otlp, scrape_port, "1h"));
    let trace_id = send_sdk_metrics(otlp);

    // The collector's translation of the SDK's metrics, reviewed by hand.
    let golden_path = root().join("tests/testdata/prometheus/python_sdk.txt");
    // The push was answered once queued: the points reach the exporter just after.
    let scraped = wait_for(Duration::from_secs(10), "the SDK's metrics in the scrape", || {
        let text = scrape(scrape_port, "text/plain");
        text.contains("shop_orders_total").then_some(text)
    });
    if std::env::var_os("FLOWTEL_UPDATE_GOLDEN").is_some() {
        fs::write(&golden_path, &scraped).unwrap();
    }
    let golden = fs::read_to_string(&golden_path).unwrap();
    assert_eq!(scraped, golden, "the scrape differs from {}", golden_path.display());

    let prometheus = Prometheus::start(scrape_port);
    let requests = r#"http_server_requests_total{job="shop/checkout",http_request_method="GET"}"#;
    let value = wait_for(Duration::from_secs(30), "Prometheus to scrape flowtel", || prometheus.query(requests));
    assert_eq!(value, 3.0);
    let median = prometheus
        .query(r#"histogram_quantile(0.5, sum by (le) (http_server_request_duration_seconds_bucket{job="shop/checkout"}))"#)
        .unwrap();
    assert!((0.01..=0.025).contains(&median), "median {median}: two of four requests took 20 ms");
    let ids = wait_for(Duration::from_secs(30), "Prometheus to store exemplars", || {
        let ids = prometheus.exemplar_trace_ids(r#"http_server_request_duration_seconds_bucket{job="shop/checkout"}"#);
        (!ids.is_empty()).then_some(ids)
    });
    assert!(ids.iter().all(|id| *id == trace_id), "exemplars {ids:?}, the SDK's trace {trace_id}");
    let counter_ids = prometheus.exemplar_trace_ids(requests);
    assert_eq!(counter_ids, [trace_id], "the counter's exemplar");

    // Bytes between workloads, from flow records: four pairs where three
    // series are allowed; the fourth folds into the overflow series.
    send_flows(
        otlp,
        &[("web", "db", 100), ("web", "db", 50), ("web", "cache", 7), ("api", "db", 3), ("api", "auth", 11)],
    );
    let bytes = |labels: &str| prometheus.query(&format!("network_flow_bytes_total{{{labels}}}"));
    let web_db = wait_for(Duration::from_secs(30), "Prometheus to scrape the flow bytes", || {
        bytes(r#"k8s_src_owner_name="web",k8s_dst_owner_name="db""#)
    });
    assert_eq!(web_db, 150.0);
    assert_eq!(bytes(r#"k8s_src_owner_name="api",k8s_dst_owner_name="db""#), Some(3.0));
    assert_eq!(bytes(r#"otel_metric_overflow="true""#), Some(11.0), "the fourth pair's bytes");
    assert_eq!(
        flowtel.metric(
            "flowtel_connector_overflow_items_total",
            &[("connector", "signal_to_metrics"), ("metric", "network.flow.bytes")]
        ),
        1.0
    );
    let counted = wait_for(Duration::from_secs(30), "the count connector's total", || {
        prometheus.query(r#"sum(flow_records_total{cluster="test"})"#)
    });
    assert_eq!(counted, 5.0, "every flow record counted");
}

#[test]
fn idle_series_expire_and_fresh_ones_stay() {
    let (otlp, scrape_port) = (free_port(), free_port());
    let _flowtel = Flowtel::start(&config(otlp, scrape_port, "3s"));
    send_flows(otlp, &[("web", "db", 10)]);
    let started = Instant::now();
    let text = wait_for(Duration::from_secs(10), "web's bytes in the scrape", || {
        let text = scrape(scrape_port, PROMETHEUS_ACCEPT);
        text.contains("network_flow_bytes_total{").then_some(text)
    });
    assert_eq!(metric_value(&text, "network_flow_bytes_total", &[("k8s_src_owner_name", "web")]), 10.0, "{text}");
    assert!(text.ends_with("# EOF\n"), "Prometheus asks for OpenMetrics: {text}");
    // Keep one series fresh while the other goes idle.
    while started.elapsed() < Duration::from_secs(5) {
        send_flows(otlp, &[("api", "db", 1)]);
        std::thread::sleep(Duration::from_millis(500));
    }
    let text = scrape(scrape_port, "text/plain");
    assert!(!text.contains(r#"k8s_src_owner_name="web""#), "web's series expired: {text}");
    assert!(metric_value(&text, "network_flow_bytes_total", &[("k8s_src_owner_name", "api")]) >= 10.0, "{text}");
}

#[test]
fn prometheus_scrapes_over_https_and_plain_http_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let (otlp, scrape_port) = (free_port(), free_port());
    let tls = format!(
        "    tls: {{cert_file: \"{}\", key_file: \"{}\"}}\n",
        pki.server_cert.display(),
        pki.server_key.display()
    );
    let config = config(otlp, scrape_port, "1h")
        .replace("    const_labels: {cluster: test}\n", &format!("    const_labels: {{cluster: test}}\n{tls}"));
    assert!(config.contains("cert_file"));
    let _flowtel = Flowtel::start(&config);
    send_flows(otlp, &[("web", "db", 42)]);
    let prometheus = Prometheus::start_https(scrape_port, &pki.ca);
    let bytes = wait_for(Duration::from_secs(30), "Prometheus to scrape over HTTPS", || {
        prometheus.query(r#"network_flow_bytes_total{k8s_src_owner_name="web"}"#)
    });
    assert_eq!(bytes, 42.0);
    assert!(
        flowtel_tests::http_get(scrape_port, "/metrics").is_none_or(|(status, _)| status != 200),
        "plain HTTP gets no metrics"
    );
}
