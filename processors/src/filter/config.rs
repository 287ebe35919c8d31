//! `processors::filter` config, shaped like the collector's.

use flowtel_core::config::Validate;
use serde::Deserialize;

use super::expression;

/// `processors::filter`: drops what matches any condition.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    /// Conditions on log records.
    pub logs: LogConditions,
    /// Conditions on metric data points.
    pub metrics: MetricConditions,
    /// Conditions on spans.
    pub traces: SpanConditions,
}

/// `logs`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConditions {
    /// A log record matching any of these is dropped.
    pub log_record: Vec<String>,
}

/// `metrics`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricConditions {
    /// A data point matching any of these is dropped (a metric left without points too).
    pub datapoint: Vec<String>,
}

/// `traces`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SpanConditions {
    /// A span matching any of these is dropped.
    pub span: Vec<String>,
}

impl FilterConfig {
    /// Every condition with its config path.
    pub fn conditions(&self) -> impl Iterator<Item = (String, &String)> {
        self.logs
            .log_record
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("logs::log_record[{i}]"), c))
            .chain(self.metrics.datapoint.iter().enumerate().map(|(i, c)| (format!("metrics::datapoint[{i}]"), c)))
            .chain(self.traces.span.iter().enumerate().map(|(i, c)| (format!("traces::span[{i}]"), c)))
    }
}

impl Validate for FilterConfig {
    fn validate(&self) -> Vec<(String, String)> {
        self.conditions()
            .filter_map(|(path, condition)| {
                expression::parse(condition).err().map(|e| (path, format!("{e}: {condition}")))
            })
            .collect()
    }
}
