//! Metrics made from items: the engine of the `count` and
//! `signal_to_metrics` connectors. A [`MetricRule`] picks items (log
//! records, spans, span events, metrics or data points) by conditions,
//! groups them by attributes and aggregates a value of each into a sum, an
//! explicit-bucket histogram or an exponential histogram.
//!
//! As in the collector, each payload is aggregated on its own and comes out
//! as delta points. What outlives a payload is each rule's set of series, so
//! that a rule's cardinality stays bounded ([`SeriesLimit`]): past
//! `max_cardinality`, new series fold into one marked
//! `otel.metric.overflow=true`.

mod exponential;
mod series_limit;

use std::{collections::HashMap, sync::Mutex};

use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value},
    metrics::v1::{
        AggregationTemporality, Exemplar, ExponentialHistogram, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
        ResourceMetrics, ScopeMetrics, Sum, exemplar, metric::Data, number_data_point,
    },
    resource::v1::Resource,
};

pub use exponential::ExponentialBuckets;
pub use series_limit::SeriesLimit;

use crate::{
    attributes::{find, number, of_resource, text},
    condition::{
        Expr,
        record::{log_record_field, lookup, metric_field, span_field},
    },
    payload::Payload,
};

/// The attribute marking the series that folds what a rule's cardinality
/// limit leaves out (the collector's name for it).
pub const OVERFLOW_ATTRIBUTE: &str = "otel.metric.overflow";

/// The explicit buckets of a histogram rule that names none (the collector's).
pub const DEFAULT_BUCKETS: [f64; 16] =
    [2.0, 4.0, 6.0, 8.0, 10.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1000.0, 1400.0, 2000.0, 5000.0, 10_000.0, 15_000.0];

/// What a rule looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemKind {
    /// Log records.
    LogRecords,
    /// Spans.
    Spans,
    /// The events of spans.
    SpanEvents,
    /// Metrics (one per metric, whatever its points).
    Metrics,
    /// Metric data points.
    DataPoints,
}

/// Where a number comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum ValueSource {
    /// An item attribute holding a number (or a string holding one).
    Attribute(String),
    /// The same number for every item.
    Constant(f64),
}

impl ValueSource {
    /// `"1"`, `0.5` → a constant; `flow.bytes` or `attributes["flow.bytes"]` → an attribute.
    pub fn parse(text: &str) -> Result<ValueSource, String> {
        let text = text.trim();
        if let Ok(constant) = text.parse::<f64>() {
            return if constant.is_finite() {
                Ok(ValueSource::Constant(constant))
            } else {
                Err(format!("`{text}` is not a finite number"))
            };
        }
        let key = text.strip_prefix("attributes[\"").and_then(|rest| rest.strip_suffix("\"]")).unwrap_or(text);
        if key.is_empty() || !key.chars().all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '/' | ':' | '@'))
        {
            return Err(format!(
                "`{text}` is neither a number nor an attribute key (`flow.bytes` or `attributes[\"flow.bytes\"]`)"
            ));
        }
        Ok(ValueSource::Attribute(key.to_owned()))
    }

    fn read(&self, item: &Item<'_>) -> Option<f64> {
        match self {
            ValueSource::Constant(value) => Some(*value),
            ValueSource::Attribute(key) => find(item.attributes, key).and_then(number).filter(|v| v.is_finite()),
        }
    }
}

/// An attribute a rule groups by, as the collector's connectors write it
/// (`{key: k8s.src.namespace.name, default_value: unknown}`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeRule {
    /// The key (of the item, or of its resource for resource attributes).
    pub key: String,
    /// The value for items without the attribute; without one, such items
    /// are not counted.
    #[serde(default, deserialize_with = "scalar_text")]
    pub default_value: Option<String>,
}

/// A scalar (text, number or boolean) as text.
fn scalar_text<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Int(i64),
        Float(f64),
        Bool(bool),
    }
    let scalar: Option<Scalar> = serde::Deserialize::deserialize(deserializer)?;
    Ok(scalar.map(|scalar| match scalar {
        Scalar::Text(text) => text,
        Scalar::Int(n) => n.to_string(),
        Scalar::Float(n) => n.to_string(),
        Scalar::Bool(b) => b.to_string(),
    }))
}

/// The problems of a list of attribute rules at `path` (empty or repeated keys).
pub fn attribute_problems(path: &str, rules: &[AttributeRule]) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    for (index, rule) in rules.iter().enumerate() {
        if rule.key.trim().is_empty() {
            problems.push((format!("{path}::{index}::key"), "must not be empty".to_owned()));
        } else if rule.key.contains(['[', ']', '"', '(', ')', ' ']) || rule.key.starts_with("resource.") {
            problems.push((
                format!("{path}::{index}::key"),
                format!(
                    "`{}` is not an attribute key: name the key itself (`k8s.pod.name`); resource attributes go under `include_resource_attributes`",
                    rule.key
                ),
            ));
        } else if rules[..index].iter().any(|earlier| earlier.key == rule.key) {
            problems.push((format!("{path}::{index}::key"), format!("`{}` is listed twice", rule.key)));
        }
    }
    problems
}

/// How a rule aggregates.
#[derive(Clone, Debug, PartialEq)]
pub enum Aggregation {
    /// A delta, monotonic sum of `value`.
    Sum {
        /// Added per item.
        value: ValueSource,
    },
    /// An explicit-bucket histogram of `value`, each item weighing `count`.
    Histogram {
        /// Upper bounds, increasing.
        buckets: Vec<f64>,
        /// Each item's weight (1 when absent).
        count: Option<ValueSource>,
        /// The value recorded.
        value: ValueSource,
    },
    /// A base-2 exponential histogram of `value`.
    ExponentialHistogram {
        /// Buckets per sign at most.
        max_size: usize,
        /// Each item's weight (1 when absent).
        count: Option<ValueSource>,
        /// The value recorded.
        value: ValueSource,
    },
}

/// One metric a connector makes.
#[derive(Debug)]
pub struct MetricRule {
    /// The metric's name.
    pub name: String,
    /// Its description.
    pub description: String,
    /// Its unit (UCUM).
    pub unit: String,
    /// The items it looks at.
    pub items: ItemKind,
    /// An item counts when any holds (all items when empty).
    pub conditions: Vec<Expr>,
    /// The data points' attributes.
    pub attributes: Vec<AttributeRule>,
    /// The resource attributes kept (all when `None`).
    pub resource_attributes: Option<Vec<AttributeRule>>,
    /// What it aggregates.
    pub aggregation: Aggregation,
    /// The series it keeps apart; the rest fold into the overflow series.
    pub limit: Mutex<SeriesLimit>,
}

/// One item as a rule sees it.
struct Item<'a> {
    attributes: &'a [KeyValue],
    resource: &'a [KeyValue],
    field: &'a dyn Fn(&str) -> Option<String>,
    trace: Option<(&'a [u8], &'a [u8])>,
}

impl Item<'_> {
    fn matches(&self, conditions: &[Expr]) -> bool {
        conditions.is_empty()
            || conditions.iter().any(|c| c.matches(&|path| lookup(path, self.attributes, self.resource, self.field)))
    }
}

/// What one call of [`aggregate`] found of a rule's series, per resource.
#[derive(Default)]
struct Points {
    index: HashMap<Vec<String>, usize>,
    series: Vec<Series>,
}

/// One series' aggregate in a payload.
struct Series {
    attributes: Vec<KeyValue>,
    sum: f64,
    count: u64,
    min: f64,
    max: f64,
    buckets: Vec<u64>,
    exponential: Option<ExponentialBuckets>,
    exemplar: Option<Exemplar>,
}

/// Applies `rules` to `payload`: one metric per rule and resource with
/// what matched, as delta points stamped `[start, now]`. Items folded into
/// an overflow series are added to `overflowed[rule index]`.
pub fn aggregate(
    rules: &[MetricRule],
    payload: &Payload,
    scope: &InstrumentationScope,
    start: u64,
    now: u64,
    overflowed: &mut [u64],
) -> Option<Payload> {
    let mut out = Vec::new();
    each_resource(payload, &mut |resource, visit_items| {
        let resource_attributes = of_resource(resource);
        let mut metrics = Vec::new();
        for (index, rule) in rules.iter().enumerate() {
            let mut points = Points::default();
            let mut limit = rule.limit.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            visit_items(rule.items, &mut |item| {
                if item.matches(&rule.conditions)
                    && !record(rule, &mut limit, &mut points, item, now)
                    && let Some(slot) = overflowed.get_mut(index)
                {
                    *slot += 1;
                }
            });
            drop(limit);
            if !points.series.is_empty() {
                metrics.push(rule.metric(points, start, now));
            }
        }
        if !metrics.is_empty() {
            let mut grouped: Vec<(Vec<KeyValue>, Vec<Metric>)> = Vec::new();
            for (rule, metric) in metrics {
                let attributes = rule.output_resource(resource_attributes);
                match grouped.iter_mut().find(|(a, _)| *a == attributes) {
                    Some((_, list)) => list.push(metric),
                    None => grouped.push((attributes, vec![metric])),
                }
            }
            for (attributes, metrics) in grouped {
                out.push(ResourceMetrics {
                    resource: Some(Resource { attributes, ..Resource::default() }),
                    scope_metrics: vec![ScopeMetrics { scope: Some(scope.clone()), metrics, ..Default::default() }],
                    ..Default::default()
                });
            }
        }
    });
    (!out.is_empty()).then_some(Payload::Metrics(out))
}

/// Records one matching item; `false` when it folded into the overflow series.
fn record(rule: &MetricRule, limit: &mut SeriesLimit, points: &mut Points, item: &Item<'_>, now: u64) -> bool {
    let mut key = Vec::with_capacity(rule.attributes.len());
    for attribute in &rule.attributes {
        match find(item.attributes, &attribute.key).and_then(text) {
            Some(value) => key.push(value.into_owned()),
            None => match &attribute.default_value {
                Some(default) => key.push(default.clone()),
                None => return true,
            },
        }
    }
    let (value, weight) = match &rule.aggregation {
        Aggregation::Sum { value } => (value.read(item), 1.0),
        Aggregation::Histogram { count, value, .. } | Aggregation::ExponentialHistogram { count, value, .. } => {
            (value.read(item), count.as_ref().map_or(Some(1.0), |c| c.read(item)).unwrap_or(0.0))
        }
    };
    let Some(value) = value else { return true };
    if weight <= 0.0 {
        return true;
    }
    let kept = limit.admit(&key, now);
    if !kept {
        // Longer than any kept key, so it never meets one.
        key = vec![String::new(); rule.attributes.len() + 1];
    }
    let slot = match points.index.get(&key) {
        Some(&slot) => slot,
        None => {
            let attributes = if kept { rule.point_attributes(item, &key) } else { overflow_attributes() };
            points.series.push(Series::new(attributes, &rule.aggregation));
            points.index.insert(key, points.series.len() - 1);
            points.series.len() - 1
        }
    };
    points.series[slot].add(&rule.aggregation, value, weight as u64, item);
    kept
}

fn overflow_attributes() -> Vec<KeyValue> {
    vec![KeyValue {
        key: OVERFLOW_ATTRIBUTE.to_owned(),
        value: Some(AnyValue { value: Some(Value::BoolValue(true)) }),
        ..Default::default()
    }]
}

impl MetricRule {
    /// The data point attributes of a series first seen on `item`: its own
    /// values (types kept), defaults as strings.
    fn point_attributes(&self, item: &Item<'_>, key: &[String]) -> Vec<KeyValue> {
        self.attributes
            .iter()
            .zip(key)
            .map(|(attribute, text)| {
                let value = find(item.attributes, &attribute.key).cloned().unwrap_or(Value::StringValue(text.clone()));
                KeyValue {
                    key: attribute.key.clone(),
                    value: Some(AnyValue { value: Some(value) }),
                    ..Default::default()
                }
            })
            .collect()
    }

    /// The resource attributes the metric keeps.
    fn output_resource(&self, resource: &[KeyValue]) -> Vec<KeyValue> {
        match &self.resource_attributes {
            None => resource.to_vec(),
            Some(rules) => rules
                .iter()
                .filter_map(|rule| {
                    let value = find(resource, &rule.key)
                        .cloned()
                        .or_else(|| rule.default_value.clone().map(Value::StringValue))?;
                    Some(KeyValue {
                        key: rule.key.clone(),
                        value: Some(AnyValue { value: Some(value) }),
                        ..Default::default()
                    })
                })
                .collect(),
        }
    }

    fn metric(&self, points: Points, start: u64, now: u64) -> (&MetricRule, Metric) {
        let temporality = AggregationTemporality::Delta as i32;
        let data = match &self.aggregation {
            Aggregation::Sum { .. } => Data::Sum(Sum {
                data_points: points.series.into_iter().map(|s| s.number_point(start, now)).collect(),
                aggregation_temporality: temporality,
                is_monotonic: true,
            }),
            Aggregation::Histogram { buckets, .. } => Data::Histogram(Histogram {
                data_points: points.series.into_iter().map(|s| s.histogram_point(buckets, start, now)).collect(),
                aggregation_temporality: temporality,
            }),
            Aggregation::ExponentialHistogram { .. } => Data::ExponentialHistogram(ExponentialHistogram {
                data_points: points.series.into_iter().map(|s| s.exponential_point(start, now)).collect(),
                aggregation_temporality: temporality,
            }),
        };
        let metric = Metric {
            name: self.name.clone(),
            description: self.description.clone(),
            unit: self.unit.clone(),
            data: Some(data),
            ..Default::default()
        };
        (self, metric)
    }
}

impl Series {
    fn new(attributes: Vec<KeyValue>, aggregation: &Aggregation) -> Self {
        let (buckets, exponential) = match aggregation {
            Aggregation::Sum { .. } => (Vec::new(), None),
            Aggregation::Histogram { buckets, .. } => (vec![0; buckets.len() + 1], None),
            Aggregation::ExponentialHistogram { max_size, .. } => {
                (Vec::new(), Some(ExponentialBuckets::new(*max_size)))
            }
        };
        Series { attributes, sum: 0.0, count: 0, min: f64::MAX, max: f64::MIN, buckets, exponential, exemplar: None }
    }

    fn add(&mut self, aggregation: &Aggregation, value: f64, weight: u64, item: &Item<'_>) {
        match aggregation {
            Aggregation::Sum { .. } => self.sum += value,
            Aggregation::Histogram { buckets, .. } => {
                let bucket = buckets.partition_point(|bound| *bound < value);
                self.buckets[bucket] += weight;
                self.record_distribution(value, weight);
            }
            Aggregation::ExponentialHistogram { .. } => {
                if let Some(exponential) = &mut self.exponential {
                    exponential.record(value, weight);
                }
                self.record_distribution(value, weight);
            }
        }
        if self.exemplar.is_none()
            && let Some((trace_id, span_id)) = item.trace
        {
            self.exemplar = Some(Exemplar {
                trace_id: trace_id.to_vec(),
                span_id: span_id.to_vec(),
                value: Some(exemplar::Value::AsDouble(value)),
                ..Default::default()
            });
        }
    }

    fn record_distribution(&mut self, value: f64, weight: u64) {
        self.sum += value * weight as f64;
        self.count += weight;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    fn stamp_exemplar(&mut self, now: u64) -> Vec<Exemplar> {
        self.exemplar
            .take()
            .map(|mut e| {
                e.time_unix_nano = now;
                e
            })
            .into_iter()
            .collect()
    }

    fn number_point(mut self, start: u64, now: u64) -> NumberDataPoint {
        let exemplars = self.stamp_exemplar(now);
        let value = if self.sum.fract() == 0.0 && self.sum.abs() < i64::MAX as f64 {
            number_data_point::Value::AsInt(self.sum as i64)
        } else {
            number_data_point::Value::AsDouble(self.sum)
        };
        NumberDataPoint {
            attributes: self.attributes,
            start_time_unix_nano: start,
            time_unix_nano: now,
            exemplars,
            value: Some(value),
            ..Default::default()
        }
    }

    fn histogram_point(mut self, bounds: &[f64], start: u64, now: u64) -> HistogramDataPoint {
        let exemplars = self.stamp_exemplar(now);
        HistogramDataPoint {
            attributes: self.attributes,
            start_time_unix_nano: start,
            time_unix_nano: now,
            count: self.count,
            sum: Some(self.sum),
            bucket_counts: self.buckets,
            explicit_bounds: bounds.to_vec(),
            exemplars,
            min: Some(self.min),
            max: Some(self.max),
            ..Default::default()
        }
    }

    fn exponential_point(
        mut self,
        start: u64,
        now: u64,
    ) -> opentelemetry_proto::tonic::metrics::v1::ExponentialHistogramDataPoint {
        let exemplars = self.stamp_exemplar(now);
        let mut point = self.exponential.take().unwrap_or_else(|| ExponentialBuckets::new(1)).into_point();
        point.attributes = self.attributes;
        point.start_time_unix_nano = start;
        point.time_unix_nano = now;
        point.sum = Some(self.sum);
        point.min = Some(self.min);
        point.max = Some(self.max);
        point.exemplars = exemplars;
        point
    }
}

type ItemVisitor<'v> = dyn FnMut(&Item<'_>) + 'v;
/// Visits a resource's items of one kind.
type ResourceItems<'r> = dyn FnMut(ItemKind, &mut ItemVisitor<'_>) + 'r;

/// Calls `f` with each resource of the payload and a function visiting
/// that resource's items of a kind.
fn each_resource(payload: &Payload, f: &mut dyn FnMut(Option<&Resource>, &mut ResourceItems<'_>)) {
    match payload {
        Payload::Encoded(encoded) => each_resource(&encoded.decode(), f),
        Payload::Logs(resources) => {
            for resource in resources {
                let attributes = of_resource(resource.resource.as_ref());
                f(resource.resource.as_ref(), &mut |kind, visit| {
                    if kind != ItemKind::LogRecords {
                        return;
                    }
                    for record in resource.scope_logs.iter().flat_map(|s| &s.log_records) {
                        let field = |name: &str| log_record_field(record, name);
                        visit(&Item {
                            attributes: &record.attributes,
                            resource: attributes,
                            field: &field,
                            trace: trace_of(&record.trace_id, &record.span_id),
                        });
                    }
                });
            }
        }
        Payload::Traces(resources) => {
            for resource in resources {
                let attributes = of_resource(resource.resource.as_ref());
                f(resource.resource.as_ref(), &mut |kind, visit| {
                    for span in resource.scope_spans.iter().flat_map(|s| &s.spans) {
                        let trace = trace_of(&span.trace_id, &span.span_id);
                        match kind {
                            ItemKind::Spans => {
                                let field = |name: &str| span_field(span, name);
                                visit(&Item {
                                    attributes: &span.attributes,
                                    resource: attributes,
                                    field: &field,
                                    trace,
                                });
                            }
                            ItemKind::SpanEvents => {
                                for event in &span.events {
                                    let field = |name: &str| (name == "name").then(|| event.name.clone());
                                    visit(&Item {
                                        attributes: &event.attributes,
                                        resource: attributes,
                                        field: &field,
                                        trace,
                                    });
                                }
                            }
                            _ => return,
                        }
                    }
                });
            }
        }
        Payload::Metrics(resources) => {
            for resource in resources {
                let attributes = of_resource(resource.resource.as_ref());
                f(resource.resource.as_ref(), &mut |kind, visit| {
                    for metric in resource.scope_metrics.iter().flat_map(|s| &s.metrics) {
                        let field = |name: &str| metric_field(metric, name);
                        match kind {
                            ItemKind::Metrics => {
                                visit(&Item { attributes: &[], resource: attributes, field: &field, trace: None })
                            }
                            ItemKind::DataPoints => {
                                for point_attributes in point_attributes(metric) {
                                    visit(&Item {
                                        attributes: point_attributes,
                                        resource: attributes,
                                        field: &field,
                                        trace: None,
                                    });
                                }
                            }
                            _ => return,
                        }
                    }
                });
            }
        }
    }
}

fn trace_of<'a>(trace_id: &'a [u8], span_id: &'a [u8]) -> Option<(&'a [u8], &'a [u8])> {
    (trace_id.len() == 16 && trace_id.iter().any(|b| *b != 0)).then_some((trace_id, span_id))
}

/// The attribute lists of a metric's data points.
fn point_attributes(metric: &Metric) -> Vec<&[KeyValue]> {
    match &metric.data {
        Some(Data::Sum(d)) => d.data_points.iter().map(|p| p.attributes.as_slice()).collect(),
        Some(Data::Gauge(d)) => d.data_points.iter().map(|p| p.attributes.as_slice()).collect(),
        Some(Data::Histogram(d)) => d.data_points.iter().map(|p| p.attributes.as_slice()).collect(),
        Some(Data::ExponentialHistogram(d)) => d.data_points.iter().map(|p| p.attributes.as_slice()).collect(),
        Some(Data::Summary(d)) => d.data_points.iter().map(|p| p.attributes.as_slice()).collect(),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests;

/// The series a rule keeps apart unless its config says otherwise.
pub const DEFAULT_MAX_CARDINALITY: usize = 2000;

/// A connector's rules by the signal they read, and what they count in
/// flowtel's own metrics: the engine behind `count` and `signal_to_metrics`.
pub struct RuleSet {
    scope: InstrumentationScope,
    logs: Vec<MetricRule>,
    metrics: Vec<MetricRule>,
    traces: Vec<MetricRule>,
    /// When the last payload was aggregated: the next delta's start.
    last: std::sync::atomic::AtomicU64,
    /// `flowtel_connector_overflow_items_total` per rule, in the order
    /// logs, metrics, traces; set at start.
    overflow: std::sync::OnceLock<Vec<crate::self_telemetry::Counter>>,
}

impl RuleSet {
    /// Rules under the scope `scope_name` (the connector's type).
    pub fn new(scope_name: &str, logs: Vec<MetricRule>, metrics: Vec<MetricRule>, traces: Vec<MetricRule>) -> Self {
        RuleSet {
            scope: InstrumentationScope {
                name: format!("flowtel/{scope_name}"),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                ..Default::default()
            },
            logs,
            metrics,
            traces,
            last: std::sync::atomic::AtomicU64::new(crate::time::now_unix_nanos()),
            overflow: std::sync::OnceLock::new(),
        }
    }

    /// Registers the overflow counters of connector `connector`.
    pub fn start(&self, connector: &str, registry: &crate::self_telemetry::MetricsRegistry) {
        let counters = [&self.logs, &self.metrics, &self.traces]
            .into_iter()
            .flatten()
            .map(|rule| {
                registry.counter(
                    "flowtel_connector_overflow_items_total",
                    "Items a connector folded into a metric's overflow series (otel.metric.overflow=true) because the metric had max_cardinality series.",
                    &[("connector", connector), ("metric", rule.name.as_str())],
                )
            })
            .collect();
        let _ = self.overflow.set(counters);
    }

    /// The metrics `payload` makes, as delta points since the last call.
    pub fn consume(&self, payload: &Payload, out: &mut Vec<Payload>) {
        let (rules, first) = match payload {
            Payload::Encoded(encoded) => return self.consume(&encoded.decode(), out),
            Payload::Logs(_) => (&self.logs, 0),
            Payload::Metrics(_) => (&self.metrics, self.logs.len()),
            Payload::Traces(_) => (&self.traces, self.logs.len() + self.metrics.len()),
        };
        if rules.is_empty() {
            return;
        }
        let now = crate::time::now_unix_nanos();
        let start = self.last.swap(now, std::sync::atomic::Ordering::Relaxed).min(now);
        let mut overflowed = vec![0; rules.len()];
        if let Some(made) = aggregate(rules, payload, &self.scope, start, now, &mut overflowed) {
            out.push(made);
        }
        if let Some(counters) = self.overflow.get() {
            for (index, count) in overflowed.into_iter().enumerate().filter(|(_, count)| *count > 0) {
                if let Some(counter) = counters.get(first + index) {
                    counter.add(count);
                }
            }
        }
    }
}
