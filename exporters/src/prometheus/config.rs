//! `exporters::prometheus` config, with the collector's keys.

use std::{collections::BTreeMap, time::Duration};

use flowtel_core::{
    config::{HostPort, Validate},
    export::ServerTls,
};
use serde::Deserialize;

/// `exporters::prometheus`: serves the metrics it is given for Prometheus
/// to scrape.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusConfig {
    /// Where the scrape endpoint (`/metrics`) listens.
    pub endpoint: HostPort,
    /// A prefix for every metric name (`namespace_name`).
    pub namespace: Option<String>,
    /// Labels put on every series.
    pub const_labels: BTreeMap<String, String>,
    /// Whether samples carry the time of their last point.
    pub send_timestamps: bool,
    /// How long a series not updated stays exposed.
    #[serde(with = "humantime_serde")]
    pub metric_expiration: Duration,
    /// Whether every resource attribute becomes a label of its series.
    pub resource_to_telemetry_conversion: ResourceToTelemetry,
    /// Resource attributes that become labels of every series of their
    /// resource (without converting them all).
    pub resource_constant_labels: Vec<String>,
    /// Whether a scraper asking for OpenMetrics gets it (with exemplars).
    pub enable_open_metrics: bool,
    /// Whether names get unit and `_total` suffixes (`_ratio` for unit `1` gauges).
    pub add_metric_suffixes: bool,
    /// Series exposed at most; new ones past it are dropped and counted
    /// until others expire.
    pub max_series: usize,
    /// TLS for the scrape endpoint (HTTPS); plain HTTP without it.
    pub tls: Option<ServerTls>,
}

/// `resource_to_telemetry_conversion`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ResourceToTelemetry {
    /// Whether it is on.
    pub enabled: bool,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        PrometheusConfig {
            endpoint: HostPort::new("127.0.0.1", 8889),
            namespace: None,
            const_labels: BTreeMap::new(),
            send_timestamps: false,
            metric_expiration: Duration::from_secs(300),
            resource_to_telemetry_conversion: ResourceToTelemetry::default(),
            resource_constant_labels: Vec::new(),
            enable_open_metrics: false,
            add_metric_suffixes: true,
            max_series: 200_000,
            tls: None,
        }
    }
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

impl Validate for PrometheusConfig {
    fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        for key in self.const_labels.keys() {
            if !valid_label_name(key) {
                problems.push((
                    format!("const_labels::{key}"),
                    "a label name is letters, digits and `_`, not starting with a digit or `__`".to_owned(),
                ));
            }
        }
        if let Some(namespace) = &self.namespace
            && (namespace.is_empty() || !valid_label_name(namespace))
        {
            problems.push(("namespace".into(), "letters, digits and `_`, not starting with a digit".into()));
        }
        if self.metric_expiration.is_zero() {
            problems.push(("metric_expiration".into(), "must be more than 0".into()));
        }
        if self.max_series == 0 {
            problems.push(("max_series".into(), "must be at least 1".into()));
        }
        if let Some(tls) = &self.tls {
            problems.extend(tls.problems());
        }
        problems
    }
}
