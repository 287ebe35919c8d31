//! Hands the receiver's records and metrics to its pipelines, counting what
//! they took and what they refused.

use flowtel_core::schema::attr;
use flowtel_core::{
    ComponentId, Payload, Signal,
    intake::ReceiverOutput,
    self_telemetry::{MetricsRegistry, ReceiverItems},
};
use opentelemetry_proto::tonic::{
    common::v1::InstrumentationScope,
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    metrics::v1::{Metric, ResourceMetrics, ScopeMetrics},
    resource::v1::Resource,
    trace::v1::{ResourceSpans, ScopeSpans, Span},
};

use super::otlp::kv;

/// The receiver's way into its pipelines; one per task, all counting together.
#[derive(Clone)]
pub struct Publisher {
    id: ComponentId,
    output: ReceiverOutput,
    host: String,
    items: ReceiverItems,
}

impl Publisher {
    /// A publisher for receiver `id`, on host `host`.
    pub fn new(id: ComponentId, output: ReceiverOutput, registry: &MetricsRegistry, host: String) -> Self {
        Publisher { items: ReceiverItems::new(registry, &id.to_string(), "kernel"), id, output, host }
    }

    /// Sends log records (nothing when empty).
    pub async fn logs(&self, records: Vec<LogRecord>) {
        if records.is_empty() {
            return;
        }
        let payload = Payload::Logs(vec![ResourceLogs {
            resource: Some(resource(&self.host)),
            scope_logs: vec![ScopeLogs { scope: Some(scope()), log_records: records, schema_url: String::new() }],
            schema_url: String::new(),
        }]);
        self.push(payload).await;
    }

    /// Sends metrics (nothing when empty).
    pub async fn metrics(&self, metrics: Vec<Metric>) {
        if metrics.is_empty() {
            return;
        }
        let payload = Payload::Metrics(vec![ResourceMetrics {
            resource: Some(resource(&self.host)),
            scope_metrics: vec![ScopeMetrics { scope: Some(scope()), metrics, schema_url: String::new() }],
            schema_url: String::new(),
        }]);
        self.push(payload).await;
    }

    /// Sends spans (nothing when empty).
    pub async fn spans(&self, spans: Vec<Span>) {
        if spans.is_empty() {
            return;
        }
        let payload = Payload::Traces(vec![ResourceSpans {
            resource: Some(resource(&self.host)),
            scope_spans: vec![ScopeSpans { scope: Some(scope()), spans, schema_url: String::new() }],
            schema_url: String::new(),
        }]);
        self.push(payload).await;
    }

    async fn push(&self, payload: Payload) {
        let signal: Signal = payload.signal();
        if !self.output.accepts(signal) {
            return;
        }
        let items = payload.item_count() as u64;
        match self.output.push(payload).await {
            Ok(()) => self.items.accepted.get(signal).add(items),
            Err(err) => {
                self.items.refused.get(signal).add(items);
                tracing::warn!(receiver = %self.id, items, error = %err, "Pipelines did not take kernel data; dropped.");
            }
        }
    }
}

/// The instrumentation scope of everything the receiver produces.
pub fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "flowtel.receiver.ebpf".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    }
}

/// The resource: `service.name=flowtel` and `host.name`.
pub fn resource(host_name: &str) -> Resource {
    Resource {
        attributes: vec![kv(attr::SERVICE_NAME, "flowtel"), kv(attr::HOST_NAME, host_name)],
        ..Default::default()
    }
}
