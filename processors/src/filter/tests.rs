use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, any_value::Value},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    metrics::v1::{Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics},
    resource::v1::Resource,
};

use super::*;

#[test]
fn metric_conditions_drop_whole_metrics() {
    let config: FilterConfig = serde_json::from_str(
        r#"{"error_mode": "ignore", "metrics": {"metric": ["name == \"network.flows.active\"", "type == METRIC_DATA_TYPE_HISTOGRAM and resource.attributes[\"host.name\"] == \"a\""]}}"#,
    )
    .expect("config");
    assert_eq!(flowtel_core::config::Validate::validate(&config), Vec::new());
    let mut processor = FilterProcessor::new(&config);
    let metric = |name: &str, data: Data| Metric { name: name.into(), data: Some(data), ..Default::default() };
    let gauge = || Data::Gauge(Gauge { data_points: vec![NumberDataPoint::default()] });
    let histogram =
        || Data::Histogram(Histogram { data_points: vec![HistogramDataPoint::default()], ..Default::default() });
    let resource = |host: &str| ResourceMetrics {
        resource: Some(Resource { attributes: vec![kv("host.name", host)], ..Default::default() }),
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![
                metric("network.flows.active", gauge()),
                metric("network.tcp.rtt", histogram()),
                metric("network.flow.bytes", gauge()),
            ],
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut out = Vec::new();
    processor.process(Payload::Metrics(vec![resource("a"), resource("b")]), &mut out);
    let Payload::Metrics(resources) = &out[0] else { panic!() };
    let names = |r: &ResourceMetrics| r.scope_metrics[0].metrics.iter().map(|m| m.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&resources[0]), ["network.flow.bytes"]);
    assert_eq!(names(&resources[1]), ["network.tcp.rtt", "network.flow.bytes"]);
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(Value::StringValue(value.into())) }),
        ..Default::default()
    }
}

#[test]
fn the_processor_drops_matching_records_and_points() {
    let mut processor = FilterProcessor::new(&FilterConfig {
        logs: LogConditions {
            log_record: vec![
                r#"event_name == "network.flow" and destination.port in 8000..8100"#.into(),
                r#"resource.host.name == "noisy""#.into(),
            ],
        },
        metrics: MetricConditions {
            datapoint: vec![r#"network.interface.name == "lo""#.into()],
            ..MetricConditions::default()
        },
        ..FilterConfig::default()
    });
    let record = |port: &str| LogRecord {
        event_name: "network.flow".into(),
        attributes: vec![kv("destination.port", port)],
        ..Default::default()
    };
    let logs = |host: &str, records: Vec<LogRecord>| ResourceLogs {
        resource: Some(Resource { attributes: vec![kv("host.name", host)], ..Default::default() }),
        scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }],
        schema_url: String::new(),
    };
    let mut out = Vec::new();
    processor.process(
        Payload::Logs(vec![logs("a", vec![record("80"), record("8080")]), logs("noisy", vec![record("443")])]),
        &mut out,
    );
    let Payload::Logs(resources) = &out[0] else { panic!() };
    assert_eq!(resources.len(), 1, "the emptied resource is gone");
    assert_eq!(resources[0].scope_logs[0].log_records, [record("80")]);

    let point = |interface: &str| NumberDataPoint {
        attributes: vec![kv("network.interface.name", interface)],
        ..Default::default()
    };
    let metric = |points| Metric {
        name: "network.flows.active".into(),
        data: Some(Data::Gauge(Gauge { data_points: points })),
        ..Default::default()
    };
    out.clear();
    processor.process(
        Payload::Metrics(vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![metric(vec![point("lo"), point("eth0")]), metric(vec![point("lo")])],
                ..Default::default()
            }],
            ..Default::default()
        }]),
        &mut out,
    );
    let Payload::Metrics(resources) = &out[0] else { panic!() };
    let metrics = &resources[0].scope_metrics[0].metrics;
    assert_eq!(metrics.len(), 1, "a metric without points is gone");
    assert_eq!(metrics[0], metric(vec![point("eth0")]));
}

#[test]
fn config_errors_carry_the_condition_path() {
    use flowtel_core::config::Validate;
    let config = FilterConfig {
        traces: SpanConditions { span: vec!["ok".into(), "name ==".into()], ..SpanConditions::default() },
        ..FilterConfig::default()
    };
    let problems = config.validate();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].0, "traces::span[1]");
    assert!(problems[0].1.starts_with("column 8: expected a value"), "{}", problems[0].1);
}

#[test]
fn spans_and_span_events_are_dropped_by_their_own_conditions() {
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span::Event};
    let config: FilterConfig = serde_json::from_str(
        r#"{"traces": {"span": ["span.name == \"GET /healthz\""],
            "spanevent": ["name == \"retry\" and span.name == \"query\"", "attributes[\"noise\"] != nil"]}}"#,
    )
    .expect("config");
    assert_eq!(flowtel_core::config::Validate::validate(&config), Vec::new());
    let mut processor = FilterProcessor::new(&config);
    let event = |name: &str, noisy: bool| Event {
        name: name.into(),
        attributes: if noisy { vec![kv("noise", "1")] } else { Vec::new() },
        ..Default::default()
    };
    let span = |name: &str| Span {
        name: name.into(),
        events: vec![event("retry", false), event("done", false), event("done", true)],
        ..Default::default()
    };
    let mut out = Vec::new();
    processor.process(
        Payload::Traces(vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![span("GET /healthz"), span("query"), span("render")],
                ..Default::default()
            }],
            ..Default::default()
        }]),
        &mut out,
    );
    let Payload::Traces(resources) = &out[0] else { panic!("traces") };
    let spans = &resources[0].scope_spans[0].spans;
    let events = |s: &Span| s.events.iter().map(|e| e.name.clone()).collect::<Vec<_>>();
    assert_eq!(spans.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["query", "render"]);
    assert_eq!(events(&spans[0]), ["done"], "the query's retry and the noisy event go");
    assert_eq!(events(&spans[1]), ["retry", "done"], "a retry of another span stays");
}
