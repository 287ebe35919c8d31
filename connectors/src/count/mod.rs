//! The `count` connector: counts log records, spans, span events, metrics
//! and data points into delta sums, per distinct set of attribute values,
//! as the collector's `count` connector does (see the README).

mod config;

use std::sync::Mutex;

use flowtel_core::{
    Payload,
    component::{Connector, ConnectorContext},
    condition::parse_all,
    item_metrics::{Aggregation, DEFAULT_MAX_CARDINALITY, ItemKind, MetricRule, RuleSet, SeriesLimit, ValueSource},
};

pub use config::{CountConfig, CountMetric};

/// The collector's default count of each kind of item: name and description.
fn default_count(kind: ItemKind) -> (&'static str, &'static str) {
    match kind {
        ItemKind::Spans => ("trace.span.count", "The number of spans observed."),
        ItemKind::SpanEvents => ("trace.span.event.count", "The number of span events observed."),
        ItemKind::Metrics => ("metric.count", "The number of metrics observed."),
        ItemKind::DataPoints => ("metric.datapoint.count", "The number of data points observed."),
        ItemKind::LogRecords => ("log.record.count", "The number of log records observed."),
    }
}

/// The `count` connector.
pub struct CountConnector {
    rules: RuleSet,
}

impl CountConnector {
    /// A connector with the given (validated) config.
    pub fn new(config: &CountConfig) -> Self {
        let kinds =
            [ItemKind::Spans, ItemKind::SpanEvents, ItemKind::Metrics, ItemKind::DataPoints, ItemKind::LogRecords];
        let mut logs = Vec::new();
        let mut metrics = Vec::new();
        let mut traces = Vec::new();
        for ((_, section), kind) in config.sections().into_iter().zip(kinds) {
            let rules: Vec<MetricRule> = if section.is_empty() {
                let (name, description) = default_count(kind);
                vec![rule(kind, name, description.to_owned(), &CountMetric::default())]
            } else {
                section
                    .iter()
                    .map(|(name, metric)| {
                        let description = metric.description.clone().unwrap_or_default();
                        rule(kind, name, description, metric)
                    })
                    .collect()
            };
            match kind {
                ItemKind::LogRecords => logs.extend(rules),
                ItemKind::Metrics | ItemKind::DataPoints => metrics.extend(rules),
                ItemKind::Spans | ItemKind::SpanEvents => traces.extend(rules),
            }
        }
        CountConnector { rules: RuleSet::new("count", logs, metrics, traces) }
    }
}

fn rule(items: ItemKind, name: &str, description: String, metric: &CountMetric) -> MetricRule {
    MetricRule {
        name: name.to_owned(),
        description,
        unit: String::new(),
        items,
        conditions: parse_all(&metric.conditions),
        attributes: metric.attributes.clone(),
        resource_attributes: None,
        aggregation: Aggregation::Sum { value: ValueSource::Constant(1.0) },
        limit: Mutex::new(SeriesLimit::new(metric.max_cardinality.unwrap_or(DEFAULT_MAX_CARDINALITY))),
    }
}

impl Connector for CountConnector {
    fn start(&self, ctx: ConnectorContext) {
        self.rules.start(&ctx.id.to_string(), &ctx.metrics);
    }

    fn consume(&self, payload: Payload, out: &mut Vec<Payload>) {
        self.rules.consume(&payload, out);
    }
}

#[cfg(test)]
mod tests;
