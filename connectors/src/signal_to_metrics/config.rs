//! `connectors::signal_to_metrics` config, shaped like the collector's.

use flowtel_core::{
    condition,
    config::Validate,
    item_metrics::{AttributeRule, ValueSource, attribute_problems},
};
use serde::Deserialize;

/// `connectors::signal_to_metrics`: metrics made from log records, spans
/// and metric data points.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SignalToMetricsConfig {
    /// Metrics from log records.
    pub logs: Vec<MetricDefinition>,
    /// Metrics from spans.
    pub spans: Vec<MetricDefinition>,
    /// Metrics from metric data points.
    pub datapoints: Vec<MetricDefinition>,
}

/// One metric to make.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricDefinition {
    /// The metric's name.
    pub name: String,
    /// Its description.
    #[serde(default)]
    pub description: String,
    /// Its unit (UCUM: `By`, `s`, `{packet}`).
    #[serde(default)]
    pub unit: String,
    /// An item counts when any holds (every item when empty), in flowtel's
    /// condition language.
    #[serde(default)]
    pub conditions: Vec<String>,
    /// A series per distinct set of these item attributes' values.
    #[serde(default)]
    pub attributes: Vec<AttributeRule>,
    /// The resource attributes the metric keeps (all when empty).
    #[serde(default)]
    pub include_resource_attributes: Vec<AttributeRule>,
    /// A sum.
    pub sum: Option<SumDefinition>,
    /// An explicit-bucket histogram.
    pub histogram: Option<HistogramDefinition>,
    /// A base-2 exponential histogram.
    pub exponential_histogram: Option<ExponentialHistogramDefinition>,
    /// Distinct attribute sets kept apart; the rest fold into one series
    /// marked `otel.metric.overflow=true` (default 2000).
    #[serde(default)]
    pub max_cardinality: Option<usize>,
}

/// `sum`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SumDefinition {
    /// What each item adds: an attribute's key or a number (`"1"`).
    pub value: String,
}

/// `histogram`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HistogramDefinition {
    /// Upper bounds, increasing (the collector's defaults when absent).
    #[serde(default)]
    pub buckets: Option<Vec<f64>>,
    /// Each item's weight: an attribute's key or a number (1 when absent).
    #[serde(default)]
    pub count: Option<String>,
    /// The value recorded: an attribute's key or a number.
    pub value: String,
}

/// `exponential_histogram`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExponentialHistogramDefinition {
    /// Buckets per sign at most (default 160).
    #[serde(default)]
    pub max_size: Option<usize>,
    /// Each item's weight: an attribute's key or a number (1 when absent).
    #[serde(default)]
    pub count: Option<String>,
    /// The value recorded: an attribute's key or a number.
    pub value: String,
}

impl SignalToMetricsConfig {
    /// Each section by its config name.
    pub(crate) fn sections(&self) -> [(&'static str, &[MetricDefinition]); 3] {
        [("logs", &self.logs), ("spans", &self.spans), ("datapoints", &self.datapoints)]
    }
}

fn value_problem(path: String, text: &str, problems: &mut Vec<(String, String)>) {
    if let Err(message) = ValueSource::parse(text) {
        problems.push((path, message));
    }
}

impl Validate for SignalToMetricsConfig {
    fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.sections().iter().all(|(_, metrics)| metrics.is_empty()) {
            problems
                .push((String::new(), "define at least one metric under `logs`, `spans` or `datapoints`".to_owned()));
        }
        for (section, metrics) in self.sections() {
            for (index, metric) in metrics.iter().enumerate() {
                let path = format!("{section}::{index}");
                if metric.name.trim().is_empty() {
                    problems.push((format!("{path}::name"), "a metric needs a name".to_owned()));
                } else if metrics[..index].iter().any(|earlier| earlier.name == metric.name) {
                    problems.push((format!("{path}::name"), format!("`{}` is defined twice", metric.name)));
                }
                let kinds = [metric.sum.is_some(), metric.histogram.is_some(), metric.exponential_histogram.is_some()];
                if kinds.iter().filter(|k| **k).count() != 1 {
                    problems.push((
                        path.clone(),
                        "needs exactly one of `sum`, `histogram` or `exponential_histogram`".to_owned(),
                    ));
                }
                if let Some(sum) = &metric.sum {
                    value_problem(format!("{path}::sum::value"), &sum.value, &mut problems);
                }
                if let Some(histogram) = &metric.histogram {
                    value_problem(format!("{path}::histogram::value"), &histogram.value, &mut problems);
                    if let Some(count) = &histogram.count {
                        value_problem(format!("{path}::histogram::count"), count, &mut problems);
                    }
                    if let Some(problem) = histogram.buckets.as_deref().and_then(bucket_problem) {
                        problems.push((format!("{path}::histogram::buckets"), problem));
                    }
                }
                if let Some(exponential) = &metric.exponential_histogram {
                    value_problem(format!("{path}::exponential_histogram::value"), &exponential.value, &mut problems);
                    if let Some(count) = &exponential.count {
                        value_problem(format!("{path}::exponential_histogram::count"), count, &mut problems);
                    }
                    if exponential.max_size.is_some_and(|size| size < 2) {
                        problems.push((
                            format!("{path}::exponential_histogram::max_size"),
                            "must be at least 2".to_owned(),
                        ));
                    }
                }
                if metric.max_cardinality == Some(0) {
                    problems.push((format!("{path}::max_cardinality"), "must be at least 1".to_owned()));
                }
                problems.extend(attribute_problems(&format!("{path}::attributes"), &metric.attributes));
                problems.extend(attribute_problems(
                    &format!("{path}::include_resource_attributes"),
                    &metric.include_resource_attributes,
                ));
                problems.extend(condition::problems(
                    metric.conditions.iter().enumerate().map(|(i, c)| (format!("{path}::conditions::{i}"), c)),
                ));
            }
        }
        problems
    }
}

/// What is wrong with a bucket list, if anything.
fn bucket_problem(buckets: &[f64]) -> Option<String> {
    if buckets.is_empty() {
        return Some("needs at least one bound (or leave it out for the defaults)".to_owned());
    }
    if let Some(bad) = buckets.iter().find(|b| !b.is_finite()) {
        return Some(format!("{bad} is not a finite bound (+Inf is always the last bucket)"));
    }
    buckets
        .windows(2)
        .find(|pair| pair[0] >= pair[1])
        .map(|pair| format!("bounds must increase: {} then {}", pair[0], pair[1]))
}
