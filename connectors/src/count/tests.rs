use flowtel_core::{Payload, component::Connector};
use opentelemetry_proto::tonic::{
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    metrics::v1::{metric::Data, number_data_point},
    trace::v1::{ResourceSpans, ScopeSpans, Span, span::Event},
};

use super::*;

fn metrics(out: Vec<Payload>) -> Vec<(String, i64)> {
    let mut found = Vec::new();
    for payload in out {
        let Payload::Metrics(resources) = payload else { panic!("count makes metrics") };
        for metric in resources.iter().flat_map(|r| &r.scope_metrics).flat_map(|s| &s.metrics) {
            let Some(Data::Sum(sum)) = &metric.data else { panic!("a sum") };
            for point in &sum.data_points {
                let Some(number_data_point::Value::AsInt(value)) = point.value else { panic!("an int") };
                found.push((metric.name.clone(), value));
            }
        }
    }
    found.sort();
    found
}

#[test]
fn without_settings_every_item_is_counted_under_the_collectors_names() {
    let connector = CountConnector::new(&CountConfig::default());
    let mut out = Vec::new();
    let span = Span { events: vec![Event::default(), Event::default()], ..Default::default() };
    connector.consume(
        Payload::Traces(vec![ResourceSpans {
            scope_spans: vec![ScopeSpans { spans: vec![span.clone(), span], ..Default::default() }],
            ..Default::default()
        }]),
        &mut out,
    );
    connector.consume(
        Payload::Logs(vec![ResourceLogs {
            scope_logs: vec![ScopeLogs { log_records: vec![LogRecord::default(); 3], ..Default::default() }],
            ..Default::default()
        }]),
        &mut out,
    );
    assert_eq!(
        metrics(out),
        [
            ("log.record.count".to_owned(), 3),
            ("trace.span.count".to_owned(), 2),
            ("trace.span.event.count".to_owned(), 4)
        ]
    );
}

#[test]
fn custom_counts_replace_the_default_of_their_kind() {
    let config: CountConfig = decoded(r#"{"logs": {"error.count": {"conditions": ["severity_number >= 17"]}}}"#);
    let connector = CountConnector::new(&config);
    let records = [9, 17, 21].map(|severity_number| LogRecord { severity_number, ..Default::default() }).to_vec();
    let mut out = Vec::new();
    connector.consume(
        Payload::Logs(vec![ResourceLogs {
            scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }],
            ..Default::default()
        }]),
        &mut out,
    );
    assert_eq!(metrics(out), [("error.count".to_owned(), 2)]);
}

fn decoded(text: &str) -> CountConfig {
    flowtel_core::config::load_str(&format!("connectors:\n  count: {text}\nservice: {{pipelines: {{}}}}\n"))
        .ok()
        .and_then(|raw| raw.connectors.values().next().cloned())
        .map(|config| config.decode().unwrap())
        .unwrap()
}
