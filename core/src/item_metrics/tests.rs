use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    metrics::v1::{metric::Data, number_data_point},
};

use super::*;
use crate::condition::parse;

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

fn flow(workload: Option<&str>, bytes: i64) -> LogRecord {
    let mut attributes = vec![kv("flow.bytes", Value::IntValue(bytes))];
    if let Some(workload) = workload {
        attributes.push(kv("k8s.src.owner.name", Value::StringValue(workload.into())));
    }
    LogRecord {
        event_name: "network.flow".into(),
        attributes,
        trace_id: vec![7; 16],
        span_id: vec![1; 8],
        ..Default::default()
    }
}

fn logs(records: Vec<LogRecord>) -> Payload {
    Payload::Logs(vec![ResourceLogs {
        resource: Some(Resource {
            attributes: vec![kv("host.name", Value::StringValue("node-1".into()))],
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }],
        ..Default::default()
    }])
}

fn rule(aggregation: Aggregation, default_value: Option<&str>, max: usize) -> MetricRule {
    MetricRule {
        name: "bytes".into(),
        description: String::new(),
        unit: "By".into(),
        items: ItemKind::LogRecords,
        conditions: vec![parse(r#"event_name == "network.flow""#).unwrap()],
        attributes: vec![AttributeRule {
            key: "k8s.src.owner.name".into(),
            default_value: default_value.map(Into::into),
        }],
        resource_attributes: None,
        aggregation,
        limit: Mutex::new(SeriesLimit::new(max)),
    }
}

fn metrics_of(payload: Option<Payload>) -> Vec<Metric> {
    match payload {
        Some(Payload::Metrics(resources)) => {
            resources.into_iter().flat_map(|r| r.scope_metrics).flat_map(|s| s.metrics).collect()
        }
        _ => Vec::new(),
    }
}

fn sums(metric: &Metric) -> Vec<(String, i64)> {
    let Some(Data::Sum(sum)) = &metric.data else { panic!("not a sum") };
    let mut out: Vec<(String, i64)> = sum
        .data_points
        .iter()
        .map(|p| {
            let label = p
                .attributes
                .iter()
                .map(|kv| format!("{}={:?}", kv.key, kv.value.as_ref().unwrap().value.as_ref().unwrap()))
                .collect();
            let Some(number_data_point::Value::AsInt(v)) = p.value else { panic!("not an int") };
            (label, v)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn sums_group_by_attributes_and_default_values() {
    let rules = [rule(Aggregation::Sum { value: ValueSource::parse("flow.bytes").unwrap() }, Some("unknown"), 10)];
    let payload = logs(vec![flow(Some("web"), 100), flow(Some("web"), 50), flow(None, 7), flow(Some("db"), 1)]);
    let mut overflowed = [0];
    let out = aggregate(&rules, &payload, &InstrumentationScope::default(), 1, 2, &mut overflowed);
    let metrics = metrics_of(out);
    assert_eq!(metrics.len(), 1);
    assert_eq!(
        sums(&metrics[0]),
        [
            ("k8s.src.owner.name=StringValue(\"db\")".to_owned(), 1),
            ("k8s.src.owner.name=StringValue(\"unknown\")".to_owned(), 7),
            ("k8s.src.owner.name=StringValue(\"web\")".to_owned(), 150),
        ]
    );
    let Some(Data::Sum(sum)) = &metrics[0].data else { unreachable!() };
    assert_eq!(sum.aggregation_temporality, AggregationTemporality::Delta as i32);
    assert!(sum.is_monotonic);
    assert_eq!(sum.data_points[0].exemplars[0].trace_id, vec![7; 16], "traced records give exemplars");
}

#[test]
fn items_without_an_attribute_and_its_default_are_not_counted() {
    let rules = [rule(Aggregation::Sum { value: ValueSource::Constant(1.0) }, None, 10)];
    let metrics = metrics_of(aggregate(
        &rules,
        &logs(vec![flow(None, 1), flow(Some("web"), 1)]),
        &InstrumentationScope::default(),
        1,
        2,
        &mut [0],
    ));
    assert_eq!(sums(&metrics[0]), [("k8s.src.owner.name=StringValue(\"web\")".to_owned(), 1)]);
}

#[test]
fn past_max_cardinality_series_fold_into_the_overflow_series() {
    let rules = [rule(Aggregation::Sum { value: ValueSource::Constant(1.0) }, None, 2)];
    let records = ["a", "b", "c", "d", "a", "d"].iter().map(|w| flow(Some(w), 1)).collect();
    let mut overflowed = [0];
    let metrics =
        metrics_of(aggregate(&rules, &logs(records), &InstrumentationScope::default(), 1, 2, &mut overflowed));
    assert_eq!(
        sums(&metrics[0]),
        [
            ("k8s.src.owner.name=StringValue(\"a\")".to_owned(), 2),
            ("k8s.src.owner.name=StringValue(\"b\")".to_owned(), 1),
            ("otel.metric.overflow=BoolValue(true)".to_owned(), 3),
        ]
    );
    assert_eq!(overflowed, [3]);
}

#[test]
fn histograms_put_values_in_their_buckets() {
    let rules = [rule(
        Aggregation::Histogram {
            buckets: vec![10.0, 100.0],
            count: None,
            value: ValueSource::parse(r#"attributes["flow.bytes"]"#).unwrap(),
        },
        Some("x"),
        10,
    )];
    let records = [5, 10, 11, 500].iter().map(|b| flow(None, *b)).collect();
    let metrics = metrics_of(aggregate(&rules, &logs(records), &InstrumentationScope::default(), 1, 2, &mut [0]));
    let Some(Data::Histogram(histogram)) = &metrics[0].data else { panic!("not a histogram") };
    let point = &histogram.data_points[0];
    assert_eq!(point.bucket_counts, [2, 1, 1], "bounds are inclusive upper bounds");
    assert_eq!((point.count, point.sum, point.min, point.max), (4, Some(526.0), Some(5.0), Some(500.0)));
}

#[test]
fn value_sources_parse_constants_and_attribute_keys() {
    assert_eq!(ValueSource::parse("1"), Ok(ValueSource::Constant(1.0)));
    assert_eq!(ValueSource::parse("flow.bytes"), Ok(ValueSource::Attribute("flow.bytes".into())));
    assert_eq!(ValueSource::parse(r#"attributes["a b"]"#).map_err(|_| ()), Err(()));
    assert!(ValueSource::parse("Int(AdjustedCount())").is_err());
    assert!(ValueSource::parse("NaN").is_err());
}
