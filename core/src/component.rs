//! The contracts every component honours, and the names they go by.
//!
//! Lifecycle: a component is built from its config (fail fast: every error a
//! user can cause is reported there), started, and shut down. After start a
//! component never panics or exits on bad input: it counts, logs and drops.
//! Shutdown is safe to call twice or before start.

use std::{fmt, str::FromStr, sync::Arc, time::Duration};

use async_trait::async_trait;
use tokio::time::Instant;

use crate::{
    intake::{Admission, ReceiverOutput},
    payload::{Client, Payload, Signal},
    self_telemetry::MetricsRegistry,
    storage::Storage,
};

/// The kind of a component: the top-level config section it lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ComponentKind {
    /// Takes data in.
    Receiver,
    /// Transforms data inside a pipeline.
    Processor,
    /// Sends data out.
    Exporter,
    /// The exporter of one pipeline and the receiver of another.
    Connector,
    /// Serves the service rather than a pipeline (storage for queues).
    Extension,
}

impl ComponentKind {
    /// The config section name (`receivers`, `processors`, `exporters`).
    pub fn section(self) -> &'static str {
        match self {
            ComponentKind::Receiver => "receivers",
            ComponentKind::Processor => "processors",
            ComponentKind::Exporter => "exporters",
            ComponentKind::Connector => "connectors",
            ComponentKind::Extension => "extensions",
        }
    }

    /// The label used in flowtel's own metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentKind::Receiver => "receiver",
            ComponentKind::Processor => "processor",
            ComponentKind::Exporter => "exporter",
            ComponentKind::Connector => "connector",
            ComponentKind::Extension => "extension",
        }
    }
}

/// A component id, `type[/name]`, as written in the config.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ComponentId {
    type_name: String,
    name: Option<String>,
}

impl ComponentId {
    /// The component type, e.g. `otlp_grpc`.
    pub fn type_name(&self) -> &str {
        &self.type_name
    }

    /// The optional instance name after the slash.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

impl<'de> serde::Deserialize<'de> for ComponentId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a component or pipeline id is not valid.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid id {id:?}: {reason}")]
pub struct IdError {
    id: String,
    reason: &'static str,
}

fn valid_id_part(part: &str) -> bool {
    !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

impl FromStr for ComponentId {
    type Err = IdError;

    fn from_str(id: &str) -> Result<Self, Self::Err> {
        let err = |reason| IdError { id: id.to_owned(), reason };
        let (type_name, name) = match id.split_once('/') {
            Some((t, n)) => (t, Some(n)),
            None => (id, None),
        };
        if !valid_id_part(type_name) {
            return Err(err("the type must be letters, digits, '_', '-' or '.', e.g. `otlp_grpc`"));
        }
        if let Some(name) = name
            && (name.is_empty() || name.contains('/'))
        {
            return Err(err("expected `type/name` with a non-empty name and one '/'"));
        }
        Ok(ComponentId { type_name: type_name.to_owned(), name: name.map(str::to_owned) })
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{}/{}", self.type_name, name),
            None => f.write_str(&self.type_name),
        }
    }
}

/// A pipeline id, `logs|metrics|traces[/name]`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PipelineId {
    signal: Signal,
    name: Option<String>,
}

impl PipelineId {
    /// The signal the pipeline carries.
    pub fn signal(&self) -> Signal {
        self.signal
    }
}

impl FromStr for PipelineId {
    type Err = IdError;

    fn from_str(id: &str) -> Result<Self, Self::Err> {
        let parsed: ComponentId = id.parse()?;
        let signal = match parsed.type_name() {
            "logs" => Signal::Logs,
            "metrics" => Signal::Metrics,
            "traces" => Signal::Traces,
            _ => {
                return Err(IdError {
                    id: id.to_owned(),
                    reason: "a pipeline id starts with `logs`, `metrics` or `traces`",
                });
            }
        };
        Ok(PipelineId { signal, name: parsed.name })
    }
}

impl fmt::Display for PipelineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{}/{}", self.signal, name),
            None => write!(f, "{}", self.signal),
        }
    }
}

/// An error a component reports when it cannot start or run.
#[derive(Debug, thiserror::Error)]
#[error("{component}: {message}")]
pub struct ComponentError {
    /// The component that failed, e.g. `receivers::otlp`.
    pub component: String,
    /// What went wrong, with the detail a user needs to fix it.
    pub message: String,
}

impl ComponentError {
    /// An error of the component `id` of kind `kind`.
    pub fn new(kind: ComponentKind, id: &ComponentId, message: impl fmt::Display) -> Self {
        ComponentError { component: format!("{}::{}", kind.section(), id), message: message.to_string() }
    }
}

/// What a receiver is given when it starts.
pub struct ReceiverContext {
    /// The receiver's id.
    pub id: ComponentId,
    /// Where it hands data to the pipelines that name it.
    pub output: ReceiverOutput,
    /// flowtel's own metrics.
    pub metrics: Arc<MetricsRegistry>,
}

/// What an exporter gets when it starts.
pub struct ExporterContext {
    /// The exporter's id.
    pub id: ComponentId,
    /// flowtel's own metrics.
    pub metrics: Arc<MetricsRegistry>,
}

/// Takes data in from outside and hands it to pipelines.
///
/// One instance serves every pipeline that names it.
#[async_trait]
pub trait Receiver: Send {
    /// Binds sockets, attaches programs and spawns the receiver's tasks.
    /// Errors here stop flowtel at startup.
    async fn start(&mut self, ctx: ReceiverContext) -> Result<(), ComponentError>;

    /// Stops taking data in and waits for in-flight hand-overs to finish.
    async fn shutdown(&mut self);
}

/// What a processor gets when its pipeline starts.
pub struct ProcessorContext {
    /// The processor's id.
    pub id: ComponentId,
    /// flowtel's own metrics.
    pub metrics: Arc<MetricsRegistry>,
}

/// Transforms payloads inside one pipeline (each pipeline has its own instance).
///
/// Processors run synchronously, one after another, on the pipeline's task:
/// a processor emits zero or more payloads into `out` for each input.
#[async_trait]
pub trait Processor: Send {
    /// Starts what the processor needs besides its payloads (watches of an
    /// API), before any data arrives. Errors stop flowtel's startup.
    async fn start(&mut self, _ctx: ProcessorContext) -> Result<(), ComponentError> {
        Ok(())
    }

    /// Handles one payload.
    fn process(&mut self, payload: Payload, out: &mut Vec<Payload>);

    /// Handles one payload that `client` sent; processors that care who sent
    /// data override this.
    fn process_from(&mut self, payload: Payload, _client: &Client, out: &mut Vec<Payload>) {
        self.process(payload, out);
    }

    /// When the processor next wants [`Processor::on_deadline`] to run.
    fn deadline(&self) -> Option<Instant> {
        None
    }

    /// Called once the deadline passed (e.g. a batch timeout).
    fn on_deadline(&mut self, _now: Instant, _out: &mut Vec<Payload>) {}

    /// Whether it handles requests kept in their encoding
    /// ([`Payload::Encoded`]) without reading their records (`batch`,
    /// `memory_limiter`): a pipeline of such processors and exporters gets
    /// its logs and spans from the `otlp` receiver undecoded.
    fn passes_encoded(&self) -> bool {
        false
    }

    /// Whether items it took are still held back (a batch being filled):
    /// acknowledgements of data bound for persistent queues wait until it
    /// holds nothing.
    fn holds_data(&self) -> bool {
        false
    }

    /// Emits everything held back, at shutdown.
    fn flush(&mut self, _out: &mut Vec<Payload>) {}

    /// A say on whether the receivers feeding this pipeline may hand over
    /// data (the `memory_limiter`); asked once, when the pipeline starts.
    fn admission(&self) -> Option<Arc<dyn Admission>> {
        None
    }
}

/// Why an export attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportErrorKind {
    /// Worth retrying (the backend is down, overloaded or timed out).
    /// `throttle` is how long the backend asked us to wait, if it said.
    Retryable {
        /// Delay requested by the backend (gRPC RetryInfo, HTTP Retry-After).
        throttle: Option<Duration>,
    },
    /// Retrying cannot help (bad request, auth, unsupported).
    Permanent,
    /// The backend refuses a request this large: the batch is sent again
    /// in halves (an item that alone is too large is dropped).
    TooLarge,
}

/// A failed export attempt.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ExportError {
    /// Whether to retry.
    pub kind: ExportErrorKind,
    /// What happened, for logs.
    pub message: String,
}

impl ExportError {
    /// A failure worth retrying.
    pub fn retryable(message: impl fmt::Display, throttle: Option<Duration>) -> Self {
        ExportError { kind: ExportErrorKind::Retryable { throttle }, message: message.to_string() }
    }

    /// A failure retrying cannot fix.
    pub fn permanent(message: impl fmt::Display) -> Self {
        ExportError { kind: ExportErrorKind::Permanent, message: message.to_string() }
    }

    /// A request the backend refuses for its size.
    pub fn too_large(message: impl fmt::Display) -> Self {
        ExportError { kind: ExportErrorKind::TooLarge, message: message.to_string() }
    }
}

/// The result of an export the backend accepted, maybe in part.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportOutcome {
    /// Items the backend said it rejected (OTLP partial success).
    pub rejected_items: u64,
    /// The backend's message about the rejected items.
    pub message: Option<String>,
}

/// Sends payloads out of flowtel.
///
/// The topology puts every exporter behind its own bounded queue and retries
/// failed attempts as the exporter's settings say; `export` makes one attempt.
#[async_trait]
pub trait Exporter: Send + Sync + 'static {
    /// Starts what the exporter serves or holds open (a server, a
    /// connection), before any data arrives. Errors stop flowtel's startup.
    async fn start(&self, _ctx: ExporterContext) -> Result<(), ComponentError> {
        Ok(())
    }

    /// Makes one attempt to send `payload`.
    async fn export(&self, payload: &Payload) -> Result<ExportOutcome, ExportError>;

    /// Whether it sends requests kept in their encoding
    /// ([`Payload::Encoded`]) as they are (OTLP exporters).
    fn takes_encoded(&self) -> bool {
        false
    }

    /// Releases resources after the queue drained (flush files, close connections).
    async fn shutdown(&self) {}
}

/// What a connector gets when its pipelines start.
pub struct ConnectorContext {
    /// The connector's id.
    pub id: ComponentId,
    /// flowtel's own metrics.
    pub metrics: Arc<MetricsRegistry>,
}

/// Joins pipelines: what the pipelines that export to it emit, it turns
/// into payloads for the pipelines that receive from it (by the payloads'
/// signal). One instance serves every pipeline that names it; it runs on
/// the exporting pipeline's task, and that pipeline waits while the
/// receiving pipelines are full, as the collector's connectors do.
pub trait Connector: Send + Sync + 'static {
    /// Registers what the connector counts in flowtel's own metrics.
    fn start(&self, _ctx: ConnectorContext) {}

    /// Turns one payload into zero or more payloads for the receiving pipelines.
    fn consume(&self, payload: Payload, out: &mut Vec<Payload>);
}

/// What an extension gets when it starts.
pub struct ExtensionContext {
    /// The extension's id.
    pub id: ComponentId,
    /// flowtel's own metrics.
    pub metrics: Arc<MetricsRegistry>,
}

/// Serves the service rather than one pipeline, as the collector's
/// extensions do; started before every other component and stopped after.
#[async_trait]
pub trait Extension: Send + Sync + 'static {
    /// Starts it. Errors stop flowtel's startup.
    async fn start(&self, ctx: ExtensionContext) -> Result<(), ComponentError>;

    /// Stops it, after every exporter stopped.
    async fn shutdown(&self) {}

    /// The storage it offers sending queues, for a storage extension.
    fn storage(&self) -> Option<Arc<dyn Storage>> {
        None
    }
}

/// An error and its causes, joined with `: ` (for messages that must say
/// everything in one line).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_ids_parse_type_and_name() {
        let id: ComponentId = "otlp_grpc/backend".parse().expect("valid id");
        assert_eq!(id.type_name(), "otlp_grpc");
        assert_eq!(id.name(), Some("backend"));
        assert_eq!(id.to_string(), "otlp_grpc/backend");
        assert!("otlp/".parse::<ComponentId>().is_err());
        assert!("a/b/c".parse::<ComponentId>().is_err());
        assert!("".parse::<ComponentId>().is_err());
        assert!("bad type".parse::<ComponentId>().is_err());
    }

    #[test]
    fn pipeline_ids_name_a_signal() {
        let id: PipelineId = "metrics/flow".parse().expect("valid id");
        assert_eq!(id.signal(), Signal::Metrics);
        assert_eq!(id.to_string(), "metrics/flow");
        assert!("profiles".parse::<PipelineId>().is_err());
    }
}
