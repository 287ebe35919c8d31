//! Cost per record of `signal_to_metrics` at 10 and 10,000 series, against
//! a baseline in the same run: evaluating its condition alone.
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flowtel_connectors::signal_to_metrics::{SignalToMetricsConfig, SignalToMetricsConnector};
use flowtel_core::{
    Payload,
    component::Connector,
    condition::{parse, record::any_log_record},
};
use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, KeyValue, any_value::Value},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
};

const RECORDS: usize = 512;

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

/// 512 flow records whose (source, destination) workload pairs run through
/// `series` distinct values, starting at `first`.
fn flows(series: usize, first: usize) -> Payload {
    let records = (0..RECORDS)
        .map(|i| {
            let pair = (first + i) % series;
            LogRecord {
                event_name: "network.flow".into(),
                attributes: vec![
                    kv("k8s.src.namespace.name", Value::StringValue("shop".into())),
                    kv("k8s.src.owner.name", Value::StringValue(format!("web-{}", pair / 100))),
                    kv("k8s.dst.namespace.name", Value::StringValue("shop".into())),
                    kv("k8s.dst.owner.name", Value::StringValue(format!("db-{}", pair % 100))),
                    kv("network.transport", Value::StringValue("tcp".into())),
                    kv("flow.bytes", Value::IntValue(1500)),
                    kv("flow.packets", Value::IntValue(1)),
                ],
                ..Default::default()
            }
        })
        .collect();
    Payload::Logs(vec![ResourceLogs {
        scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }],
        ..Default::default()
    }])
}

const CONDITION: &str = r#"event_name == "network.flow""#;

fn connector() -> SignalToMetricsConnector {
    let yaml = format!(
        r#"
logs:
  - name: network.workload.bytes
    unit: By
    conditions: ['{CONDITION}']
    attributes:
      - {{key: k8s.src.namespace.name}}
      - {{key: k8s.src.owner.name}}
      - {{key: k8s.dst.namespace.name}}
      - {{key: k8s.dst.owner.name}}
    max_cardinality: 20000
    sum: {{value: flow.bytes}}
"#
    );
    let config: SignalToMetricsConfig =
        figment::Figment::from(<figment::providers::Yaml as figment::providers::Format>::string(&yaml))
            .extract()
            .unwrap();
    SignalToMetricsConnector::new(&config)
}

fn signal_to_metrics(c: &mut Criterion) {
    let mut group = c.benchmark_group("signal_to_metrics");
    group.throughput(Throughput::Elements(RECORDS as u64));
    let payload = flows(10, 0);
    let condition = [parse(CONDITION).unwrap()];
    // The connector takes its payload by value: both sides pay a clone.
    group.bench_function("baseline: its condition on 512 flow records", |b| {
        b.iter(|| {
            let payload = payload.clone();
            let Payload::Logs(resources) = &payload else { unreachable!() };
            resources
                .iter()
                .flat_map(|r| &r.scope_logs)
                .flat_map(|s| &s.log_records)
                .filter(|record| any_log_record(&condition, record, &[]))
                .count()
        });
    });
    for series in [10usize, 10_000] {
        let connector = connector();
        // Payloads that walk through every series, so all of them are known.
        let payloads: Vec<Payload> = (0..series.div_ceil(RECORDS)).map(|i| flows(series, i * RECORDS)).collect();
        let mut next = 0;
        group.bench_function(format!("512 flow records into {series} series"), |b| {
            b.iter(|| {
                let mut out = Vec::new();
                connector.consume(payloads[next % payloads.len()].clone(), &mut out);
                next += 1;
                out
            });
        });
    }
    group.finish();
}

criterion_group!(benches, signal_to_metrics);
criterion_main!(benches);
