//! The `signal_to_metrics` connector: sums, histograms and exponential
//! histograms of values taken from log records, spans and metric data
//! points, per distinct set of attribute values, in the collector's
//! `signaltometrics` shape (see the README). With it, flowtel's enriched
//! kernel records become per-workload metrics.

mod config;

use std::sync::Mutex;

use flowtel_core::{
    Payload,
    component::{Connector, ConnectorContext},
    condition::parse_all,
    item_metrics::{
        Aggregation, DEFAULT_BUCKETS, DEFAULT_MAX_CARDINALITY, ItemKind, MetricRule, RuleSet, SeriesLimit, ValueSource,
    },
};

pub use config::{
    ExponentialHistogramDefinition, HistogramDefinition, MetricDefinition, SignalToMetricsConfig, SumDefinition,
};

/// Buckets per sign of an exponential histogram that names no `max_size` (the collector's).
const DEFAULT_MAX_SIZE: usize = 160;

/// The `signal_to_metrics` connector.
pub struct SignalToMetricsConnector {
    rules: RuleSet,
}

impl SignalToMetricsConnector {
    /// A connector with the given (validated) config.
    pub fn new(config: &SignalToMetricsConfig) -> Self {
        let rules =
            |definitions: &[MetricDefinition], items| definitions.iter().filter_map(|d| rule(d, items)).collect();
        SignalToMetricsConnector {
            rules: RuleSet::new(
                "signal_to_metrics",
                rules(&config.logs, ItemKind::LogRecords),
                rules(&config.datapoints, ItemKind::DataPoints),
                rules(&config.spans, ItemKind::Spans),
            ),
        }
    }
}

/// The rule of a validated definition.
fn rule(definition: &MetricDefinition, items: ItemKind) -> Option<MetricRule> {
    let value = |text: &str| ValueSource::parse(text).ok();
    let count = |text: &Option<String>| text.as_deref().and_then(value);
    let aggregation = if let Some(sum) = &definition.sum {
        Aggregation::Sum { value: value(&sum.value)? }
    } else if let Some(histogram) = &definition.histogram {
        Aggregation::Histogram {
            buckets: histogram.buckets.clone().unwrap_or_else(|| DEFAULT_BUCKETS.to_vec()),
            count: count(&histogram.count),
            value: value(&histogram.value)?,
        }
    } else {
        let exponential = definition.exponential_histogram.as_ref()?;
        Aggregation::ExponentialHistogram {
            max_size: exponential.max_size.unwrap_or(DEFAULT_MAX_SIZE),
            count: count(&exponential.count),
            value: value(&exponential.value)?,
        }
    };
    Some(MetricRule {
        name: definition.name.clone(),
        description: definition.description.clone(),
        unit: definition.unit.clone(),
        items,
        conditions: parse_all(&definition.conditions),
        attributes: definition.attributes.clone(),
        resource_attributes: (!definition.include_resource_attributes.is_empty())
            .then(|| definition.include_resource_attributes.clone()),
        aggregation,
        limit: Mutex::new(SeriesLimit::new(definition.max_cardinality.unwrap_or(DEFAULT_MAX_CARDINALITY))),
    })
}

impl Connector for SignalToMetricsConnector {
    fn start(&self, ctx: ConnectorContext) {
        self.rules.start(&ctx.id.to_string(), &ctx.metrics);
    }

    fn consume(&self, payload: Payload, out: &mut Vec<Payload>) {
        self.rules.consume(&payload, out);
    }
}
