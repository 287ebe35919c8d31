//! End to end with the OpenTelemetry Python SDK: `probabilistic_sampler`
//! deciding by trace id in a logs and a traces pipeline keeps or drops
//! each trace whole, the log record written inside it included, and says
//! on each kept record how many it stands for.

#![allow(clippy::unwrap_used, missing_docs)]

use std::{collections::BTreeMap, process::Command, time::Duration};

use flowtel_tests::{
    Flowtel, free_port,
    otlp_json::{file_requests, items},
    python, script, wait_for,
};

const TRACES: usize = 300;

#[test]
fn traces_and_their_logs_are_kept_or_dropped_whole() {
    let dir = tempfile::tempdir().unwrap();
    let grpc = free_port();
    let file = dir.path().join("sampled.jsonl");
    let flowtel = Flowtel::start(&format!(
        r#"
receivers:
  otlp: {{protocols: {{grpc: {{endpoint: "127.0.0.1:{grpc}"}}}}}}
processors:
  probabilistic_sampler: {{sampling_percentage: 50, hash_seed: 9, attribute_source: traceID}}
exporters:
  file: {{path: "{}"}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:${{METRICS_PORT}}"}}}}
  pipelines:
    logs: {{receivers: [otlp], processors: [probabilistic_sampler], exporters: [file]}}
    traces: {{receivers: [otlp], processors: [probabilistic_sampler], exporters: [file]}}
"#,
        file.display()
    ));
    let output = Command::new(python())
        .arg(script("sdk_traces.py"))
        .args(["--endpoint", &format!("127.0.0.1:{grpc}"), "--traces", &TRACES.to_string()])
        .output()
        .unwrap();
    assert!(output.status.success(), "sdk_traces.py: {}", String::from_utf8_lossy(&output.stderr));

    // Everything the sampler let through is written before it is counted as sent.
    let sampler = |signal: &str, which: &str| {
        flowtel.metric(
            &format!("flowtel_processor_{which}_items_total"),
            &[("processor", "probabilistic_sampler"), ("signal", signal)],
        )
    };
    wait_for(Duration::from_secs(30), "every span and log through the sampler and written", || {
        let passed =
            sampler("logs", "incoming") == TRACES as f64 && sampler("traces", "incoming") == 2.0 * TRACES as f64;
        let written = ["logs", "traces"].iter().all(|signal| {
            sampler(signal, "outgoing") == flowtel.metric("flowtel_exporter_sent_items_total", &[("signal", signal)])
        });
        (passed && written).then_some(())
    });

    let requests = file_requests(&file);
    let count = |signal: &str| {
        let mut per_trace: BTreeMap<usize, usize> = BTreeMap::new();
        for item in items(&requests, signal) {
            *per_trace.entry(item.attributes["test.trace"].parse().unwrap()).or_default() += 1;
            if signal == "logs" {
                let adjusted = item.attributes.get("sampling.adjusted_count").and_then(|v| v.parse::<f64>().ok());
                assert_eq!(adjusted, Some(2.0), "a kept log stands for two: {item:?}");
            }
        }
        per_trace
    };
    let (spans, logs) = (count("traces"), count("logs"));
    assert!(spans.values().all(|&n| n == 2), "a kept trace has both its spans: {spans:?}");
    assert_eq!(
        spans.keys().collect::<Vec<_>>(),
        logs.keys().collect::<Vec<_>>(),
        "a trace's log is kept exactly when its spans are"
    );
    assert!(logs.values().all(|&n| n == 1));
    // 300 traces at 50%: the standard deviation is 8.7 traces; 50 is 5.8 of them.
    assert!((100..=200).contains(&spans.len()), "{} of {TRACES} traces kept", spans.len());
    assert_eq!(sampler("traces", "outgoing"), 2.0 * spans.len() as f64, "what was dropped shows in the metrics");
}
