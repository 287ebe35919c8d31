//! flowtel's own telemetry: logs, per-component metrics served in Prometheus
//! text (and optionally pushed over OTLP), and health endpoints.

mod config;
mod logging;
mod otlp_push;
mod profile;
mod registry;
mod server;

pub use config::{LogEncoding, LogLevel, LogsConfig, MetricsConfig, MetricsLevel, OtlpPushConfig, TelemetryConfig};
pub use logging::{LogLimiter, init_logging};
pub use otlp_push::OtlpPush;
pub use registry::{Counter, Gauge, MetricsRegistry, ReceiverItems, Sample, SignalCounters};
pub use server::{Health, TelemetryServer};
