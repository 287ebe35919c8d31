//! `service::telemetry`.

use std::time::Duration;

use serde::Deserialize;

use crate::config::HostPort;

/// `service::telemetry`: how flowtel reports on itself.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// flowtel's own logs.
    pub logs: LogsConfig,
    /// flowtel's own metrics.
    pub metrics: MetricsConfig,
}

/// `service::telemetry::logs`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConfig {
    /// Lowest level written (`debug`, `info`, `warn`, `error`); `RUST_LOG` overrides it.
    pub level: LogLevel,
    /// `console` (human-readable) or `json`.
    pub encoding: LogEncoding,
}

/// A log level.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Everything, including per-request detail.
    Debug,
    /// Lifecycle and noteworthy events.
    #[default]
    Info,
    /// Problems flowtel recovers from.
    Warn,
    /// Problems that lose data or stop a component.
    Error,
}

impl LogLevel {
    /// The tracing filter directive for this level.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogEncoding {
    /// One human-readable line per event.
    #[default]
    Console,
    /// One JSON object per line.
    Json,
}

/// `service::telemetry::metrics`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `none` turns the metrics endpoint off; any other level serves every metric.
    pub level: MetricsLevel,
    /// Where `/metrics` (Prometheus text), `/healthz` and `/readyz` are served.
    pub address: HostPort,
    /// Also push the same metrics over OTLP/gRPC.
    pub otlp: Option<OtlpPushConfig>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { level: MetricsLevel::Normal, address: HostPort::new("127.0.0.1", 8888), otlp: None }
    }
}

/// How much of flowtel's own metrics to produce.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MetricsLevel {
    /// No metrics endpoint and no push.
    None,
    /// Every metric (flowtel's metrics are few enough to keep all).
    Basic,
    /// Every metric.
    #[default]
    Normal,
    /// Every metric.
    Detailed,
}

/// `service::telemetry::metrics::otlp`: push flowtel's metrics to an OTLP/gRPC endpoint.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OtlpPushConfig {
    /// The OTLP/gRPC endpoint URL, e.g. `http://127.0.0.1:4317`.
    pub endpoint: String,
    /// How often to push.
    #[serde(with = "humantime_serde", default = "default_push_interval")]
    pub interval: Duration,
}

fn default_push_interval() -> Duration {
    Duration::from_secs(30)
}
