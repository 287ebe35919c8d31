//! `connectors::count` config, shaped like the collector's.

use std::collections::BTreeMap;

use flowtel_core::{
    condition,
    config::Validate,
    item_metrics::{AttributeRule, attribute_problems},
};
use serde::Deserialize;

/// `connectors::count`: metrics named by their key under each kind of item
/// they count. A kind without any counts every item under the collector's
/// default name.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CountConfig {
    /// Counts of spans.
    pub spans: BTreeMap<String, CountMetric>,
    /// Counts of span events.
    pub spanevents: BTreeMap<String, CountMetric>,
    /// Counts of metrics.
    pub metrics: BTreeMap<String, CountMetric>,
    /// Counts of metric data points.
    pub datapoints: BTreeMap<String, CountMetric>,
    /// Counts of log records.
    pub logs: BTreeMap<String, CountMetric>,
}

/// One count.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CountMetric {
    /// The metric's description.
    pub description: Option<String>,
    /// An item counts when any holds (every item when empty), in flowtel's
    /// condition language.
    pub conditions: Vec<String>,
    /// A count per distinct set of these attributes' values.
    pub attributes: Vec<AttributeRule>,
    /// Distinct attribute sets kept apart; the rest fold into one series
    /// marked `otel.metric.overflow=true` (default 2000).
    pub max_cardinality: Option<usize>,
}

impl CountConfig {
    /// Each section by its config name, with its metrics.
    pub(crate) fn sections(&self) -> [(&'static str, &BTreeMap<String, CountMetric>); 5] {
        [
            ("spans", &self.spans),
            ("spanevents", &self.spanevents),
            ("metrics", &self.metrics),
            ("datapoints", &self.datapoints),
            ("logs", &self.logs),
        ]
    }
}

impl Validate for CountConfig {
    fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        for (section, metrics) in self.sections() {
            for (name, metric) in metrics {
                let path = format!("{section}::{name}");
                if name.trim().is_empty() {
                    problems.push((path.clone(), "a metric needs a name".to_owned()));
                }
                if metric.max_cardinality == Some(0) {
                    problems.push((format!("{path}::max_cardinality"), "must be at least 1".to_owned()));
                }
                if section == "metrics" && !metric.attributes.is_empty() {
                    problems.push((
                        format!("{path}::attributes"),
                        "metrics are counted whole; count `datapoints` to group by attributes".to_owned(),
                    ));
                }
                problems.extend(attribute_problems(&format!("{path}::attributes"), &metric.attributes));
                problems.extend(condition::problems(
                    metric.conditions.iter().enumerate().map(|(i, c)| (format!("{path}::conditions::{i}"), c)),
                ));
            }
        }
        problems
    }
}
