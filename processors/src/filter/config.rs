//! `processors::filter` config, shaped like the collector's.

use flowtel_core::config::Validate;
use serde::Deserialize;

/// `processors::filter`: drops what matches any condition.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    /// The collector's `error_mode`. Conditions are checked at startup and
    /// evaluating them cannot fail (a missing or non-numeric attribute just
    /// does not match), so every mode behaves alike; it is accepted so that
    /// collector configs load.
    pub error_mode: ErrorMode,
    /// Conditions on log records.
    pub logs: LogConditions,
    /// Conditions on metric data points.
    pub metrics: MetricConditions,
    /// Conditions on spans.
    pub traces: SpanConditions,
}

/// `error_mode`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ErrorMode {
    /// Log evaluation errors and go on (the collector's default).
    #[default]
    Ignore,
    /// Go on without logging.
    Silent,
    /// Fail the payload.
    Propagate,
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
    /// A metric matching any of these is dropped whole (`name`, `unit`,
    /// `description`, `type`, `resource.<key>`).
    pub metric: Vec<String>,
    /// A data point matching any of these is dropped (a metric left without points too).
    pub datapoint: Vec<String>,
}

/// `traces`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SpanConditions {
    /// A span matching any of these is dropped.
    pub span: Vec<String>,
    /// A span event matching any of these is removed from its span (`name`
    /// is the event's, `span.name` its span's).
    pub spanevent: Vec<String>,
}

impl FilterConfig {
    /// Every condition with its config path.
    pub fn conditions(&self) -> impl Iterator<Item = (String, &String)> {
        self.logs
            .log_record
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("logs::log_record[{i}]"), c))
            .chain(self.metrics.metric.iter().enumerate().map(|(i, c)| (format!("metrics::metric[{i}]"), c)))
            .chain(self.metrics.datapoint.iter().enumerate().map(|(i, c)| (format!("metrics::datapoint[{i}]"), c)))
            .chain(self.traces.span.iter().enumerate().map(|(i, c)| (format!("traces::span[{i}]"), c)))
            .chain(self.traces.spanevent.iter().enumerate().map(|(i, c)| (format!("traces::spanevent[{i}]"), c)))
    }
}

impl Validate for FilterConfig {
    fn validate(&self) -> Vec<(String, String)> {
        flowtel_core::condition::problems(self.conditions())
    }
}
