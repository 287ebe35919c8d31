//! The built-in components: their type names, aliases and signals, and how
//! each is decoded from its config and built. A `match` on the type name is
//! the whole registry.

use flowtel_core::export::BuildError;
use std::sync::Arc;

use flowtel_connectors::{
    count::{CountConfig, CountConnector},
    forward::{ForwardConfig, ForwardConnector},
    signal_to_metrics::{SignalToMetricsConfig, SignalToMetricsConnector},
};
use flowtel_core::{
    ComponentId, ComponentKind, Signal,
    component::{Connector, Exporter, Extension, Processor, Receiver},
    config::{ComponentConfig, ConfigError, ConfigErrors, Value},
    export::{QueueConfig, RetryConfig},
    topology::ExporterSpec,
};
use flowtel_exporters::{
    debug::{DebugConfig, DebugExporter},
    file::{FileConfig, FileExporter},
    hubble::{HubbleConfig, HubbleExporter},
    load_balancing::{BackendExporters, LoadBalancingConfig, LoadBalancingExporter},
    otlp_grpc::{OtlpGrpcConfig, OtlpGrpcExporter},
    otlp_http::{OtlpHttpConfig, OtlpHttpExporter},
    pcap::{PcapConfig, PcapExporter},
    prometheus::{PrometheusConfig, PrometheusExporter},
};
use flowtel_extensions::file_storage::{FileStorage, FileStorageConfig};
use flowtel_processors::{
    batch::{BatchConfig, BatchProcessor},
    filter::{FilterConfig, FilterProcessor},
    host_attributes::HostAttributes,
    k8s_attributes::K8sAttributes,
    log_dedup::{LogDedupConfig, LogDedupProcessor},
    memory_limiter::{MemoryLimiter, MemoryLimiterConfig},
    probabilistic_sampler::{ProbabilisticSampler, ProbabilisticSamplerConfig},
    trace_correlation::TraceCorrelation,
};
use flowtel_receiver::{
    ebpf::{EbpfReceiver, EbpfReceiverConfig},
    otlp::{OtlpReceiver, OtlpReceiverConfig},
};

/// A built-in component type.
pub struct ComponentType {
    /// Receiver, processor or exporter.
    pub kind: ComponentKind,
    /// The canonical type name.
    pub name: &'static str,
    /// Older names accepted in configs.
    pub aliases: &'static [&'static str],
    /// Signals it handles (for a connector, those it takes in).
    pub signals: &'static [Signal],
    /// For a connector, the signals it turns into which: (from the
    /// pipelines exporting to it, to the pipelines receiving from it).
    pub joins: &'static [(Signal, Signal)],
    /// One line on what it does.
    pub description: &'static str,
}

const ALL_SIGNALS: &[Signal] = &[Signal::Logs, Signal::Metrics, Signal::Traces];
const LOGS: &[Signal] = &[Signal::Logs];
const LOGS_AND_TRACES: &[Signal] = &[Signal::Logs, Signal::Traces];
const SAME_SIGNAL: &[(Signal, Signal)] =
    &[(Signal::Logs, Signal::Logs), (Signal::Metrics, Signal::Metrics), (Signal::Traces, Signal::Traces)];
const TO_METRICS: &[(Signal, Signal)] =
    &[(Signal::Logs, Signal::Metrics), (Signal::Metrics, Signal::Metrics), (Signal::Traces, Signal::Metrics)];

/// Every built-in component type.
pub const COMPONENT_TYPES: &[ComponentType] = &[
    ComponentType {
        kind: ComponentKind::Receiver,
        name: "ebpf",
        aliases: &[],
        signals: ALL_SIGNALS,
        joins: &[],
        description: "network flows from the kernel's TC hooks (eBPF)",
    },
    ComponentType {
        kind: ComponentKind::Receiver,
        name: "otlp",
        aliases: &[],
        signals: ALL_SIGNALS,
        joins: &[],
        description: "OTLP over gRPC and HTTP (protobuf, JSON) from applications and other agents",
    },
    ComponentType {
        kind: ComponentKind::Processor,
        name: "batch",
        aliases: &[],
        signals: ALL_SIGNALS,
        joins: &[],
        description: "groups items into batches by size and time",
    },
    ComponentType {
        kind: ComponentKind::Processor,
        name: "filter",
        aliases: &[],
        signals: ALL_SIGNALS,
        joins: &[],
        description: "drops records, data points and spans matching conditions",
    },
    ComponentType {
        kind: ComponentKind::Processor,
        name: "host_attributes",
        aliases: &[],
        signals: ALL_SIGNALS,
        joins: &[],
        description: "the local process, container and network namespace at each end of a flow, from /proc",
    },
    ComponentType {
        kind: ComponentKind::Processor,
        name: "k8s_attributes",
        aliases: &["k8sattributes"],
        signals: ALL_SIGNALS,
        joins: &[],
        description: "Kubernetes pod, workload, service and node of both ends of a flow, and of OTLP senders",
    },
    ComponentType {
        kind: ComponentKind::Processor,
        name: "log_dedup",
        aliases: &["logdedup"],
        signals: ALL_SIGNALS,
        joins: &[],
        description: "identical log records become one with a count; flow mode counts a flow once across interfaces",
    },
    ComponentType {
        kind: ComponentKind::Processor,
        name: "memory_limiter",
        aliases: &["memorylimiter"],
        signals: ALL_SIGNALS,
        joins: &[],
        description: "refuses data (receivers push back) while memory is above a limit",
    },
    ComponentType {
        kind: ComponentKind::Processor,
        name: "probabilistic_sampler",
        aliases: &["probabilisticsampler"],
        signals: ALL_SIGNALS,
        joins: &[],
        description: "keeps a share of the flows (log records) and traces, both directions of a flow together",
    },
    ComponentType {
        kind: ComponentKind::Processor,
        name: "trace_correlation",
        aliases: &[],
        signals: ALL_SIGNALS,
        joins: &[],
        description: "kernel records stamped with their connection's span, spans given the kernel events of their lifetime",
    },
    ComponentType {
        kind: ComponentKind::Exporter,
        name: "otlp_grpc",
        aliases: &["otlp"],
        signals: ALL_SIGNALS,
        joins: &[],
        description: "OTLP over gRPC to any backend, with queue and retries",
    },
    ComponentType {
        kind: ComponentKind::Exporter,
        name: "otlp_http",
        aliases: &["otlphttp"],
        signals: ALL_SIGNALS,
        joins: &[],
        description: "OTLP over HTTP (protobuf or JSON) to any backend, with queue and retries",
    },
    ComponentType {
        kind: ComponentKind::Exporter,
        name: "debug",
        aliases: &[],
        signals: ALL_SIGNALS,
        joins: &[],
        description: "prints what passes to standard output",
    },
    ComponentType {
        kind: ComponentKind::Exporter,
        name: "file",
        aliases: &[],
        signals: ALL_SIGNALS,
        joins: &[],
        description: "OTLP/JSON lines in a file, rotated by size",
    },
    ComponentType {
        kind: ComponentKind::Exporter,
        name: "pcap",
        aliases: &[],
        signals: LOGS_AND_TRACES,
        joins: &[],
        description: "the packets drop records and journeys carry, as pcap-ng files for Wireshark",
    },
    ComponentType {
        kind: ComponentKind::Exporter,
        name: "hubble",
        aliases: &[],
        signals: LOGS,
        joins: &[],
        description: "serves the Hubble API (hubble observe, relay, UI) from flow and drop records",
    },
    ComponentType {
        kind: ComponentKind::Exporter,
        name: "load_balancing",
        aliases: &["loadbalancing"],
        signals: ALL_SIGNALS,
        joins: &[],
        description: "spreads data over OTLP backends by trace, service, resource, stream or flow (consistent hashing; static, dns or k8s resolver)",
    },
    ComponentType {
        kind: ComponentKind::Exporter,
        name: "prometheus",
        aliases: &[],
        signals: &[Signal::Metrics],
        joins: &[],
        description: "serves metrics on /metrics for Prometheus to scrape (text, or OpenMetrics with exemplars)",
    },
    ComponentType {
        kind: ComponentKind::Connector,
        name: "forward",
        aliases: &[],
        signals: ALL_SIGNALS,
        joins: SAME_SIGNAL,
        description: "passes data on to pipelines of the same signal",
    },
    ComponentType {
        kind: ComponentKind::Connector,
        name: "count",
        aliases: &[],
        signals: ALL_SIGNALS,
        joins: TO_METRICS,
        description: "counts log records, spans, span events, metrics and data points into metrics, by attributes",
    },
    ComponentType {
        kind: ComponentKind::Connector,
        name: "signal_to_metrics",
        aliases: &["signaltometrics"],
        signals: ALL_SIGNALS,
        joins: TO_METRICS,
        description: "sums and histograms of values from records, spans and data points, by attributes",
    },
    ComponentType {
        kind: ComponentKind::Extension,
        name: "file_storage",
        aliases: &[],
        signals: &[],
        joins: &[],
        description: "keeps sending queues on disk (sending_queue::storage), so unsent data survives restarts and crashes",
    },
];

/// The built-in type that `id` names, by its name or an alias.
pub fn component_type(kind: ComponentKind, id: &ComponentId) -> Result<&'static ComponentType, ConfigError> {
    COMPONENT_TYPES
        .iter()
        .find(|t| t.kind == kind && (t.name == id.type_name() || t.aliases.contains(&id.type_name())))
        .ok_or_else(|| {
            let known: Vec<&str> = COMPONENT_TYPES.iter().filter(|t| t.kind == kind).map(|t| t.name).collect();
            ConfigError::new(
                format!("{}::{id}", kind.section()),
                format!("unknown {} type `{}`; built in: {}", kind.as_str(), id.type_name(), known.join(", ")),
            )
        })
}

/// A receiver's decoded config.
pub enum ReceiverConfig {
    /// `ebpf`.
    Ebpf(EbpfReceiverConfig),
    /// `otlp`.
    Otlp(OtlpReceiverConfig),
}

/// A processor's decoded config; processors are built once per pipeline.
pub enum ProcessorConfig {
    /// `batch`.
    Batch(BatchConfig),
    /// `filter`.
    Filter(FilterConfig),
    /// `host_attributes`: one socket index shared by its pipelines.
    HostAttributes(HostAttributes),
    /// `k8s_attributes`: one view of the cluster shared by its pipelines.
    K8sAttributes(Box<K8sAttributes>),
    /// `log_dedup`.
    LogDedup(LogDedupConfig),
    /// `memory_limiter`.
    MemoryLimiter(MemoryLimiterConfig),
    /// `probabilistic_sampler`.
    ProbabilisticSampler(ProbabilisticSamplerConfig),
    /// `trace_correlation`: one index of spans and kernel events shared by its pipelines.
    TraceCorrelation(TraceCorrelation),
}

/// An exporter's decoded config.
pub enum ExporterConfig {
    /// `otlp_grpc`.
    OtlpGrpc(OtlpGrpcConfig),
    /// `otlp_http`.
    OtlpHttp(OtlpHttpConfig),
    /// `debug`.
    Debug(DebugConfig),
    /// `file`.
    File(FileConfig),
    /// `pcap`.
    Pcap(PcapConfig),
    /// `hubble`.
    Hubble(HubbleConfig),
    /// `prometheus`.
    Prometheus(PrometheusConfig),
    /// `load_balancing`, with the `otlp_grpc` settings of its backends.
    LoadBalancing(Box<(LoadBalancingConfig, OtlpGrpcConfig)>),
}

/// The `endpoint` a `load_balancing` exporter's `protocol::otlp` gets when
/// it names none (each backend's is the resolved one).
const RESOLVED_ENDPOINT: &str = "load-balancing.invalid:4317";

/// Decodes a `load_balancing` exporter, with its `protocol::otlp` as an
/// `otlp_grpc` exporter's config.
fn decode_load_balancing(config: &ComponentConfig) -> Result<ExporterConfig, ConfigErrors> {
    let balancing: LoadBalancingConfig = config.decode()?;
    let mut otlp = match &balancing.protocol.otlp {
        Value::Empty(tag, _) => Value::Dict(*tag, Default::default()),
        other => other.clone(),
    };
    if let Value::Dict(_, dict) = &mut otlp {
        dict.entry("endpoint".into()).or_insert_with(|| Value::from(RESOLVED_ENDPOINT));
    }
    let otlp: OtlpGrpcConfig = ComponentConfig::new(format!("{}::protocol::otlp", config.path()), otlp).decode()?;
    Ok(ExporterConfig::LoadBalancing(Box::new((balancing, otlp))))
}

/// A connector's decoded config.
pub enum ConnectorConfig {
    /// `forward`.
    Forward(ForwardConfig),
    /// `count`.
    Count(CountConfig),
    /// `signal_to_metrics`.
    SignalToMetrics(SignalToMetricsConfig),
}

/// An extension's decoded config.
pub enum ExtensionConfig {
    /// `file_storage`.
    FileStorage(FileStorageConfig),
}

/// Decodes an extension's config.
pub fn decode_extension(kind: &ComponentType, config: &ComponentConfig) -> Result<ExtensionConfig, ConfigErrors> {
    match kind.name {
        "file_storage" => config.decode().map(ExtensionConfig::FileStorage),
        other => Err(ConfigErrors::one(config.path(), format!("extension `{other}` cannot be built"))),
    }
}

impl ExtensionConfig {
    /// The extension.
    pub fn build(&self) -> Arc<dyn Extension> {
        match self {
            ExtensionConfig::FileStorage(config) => Arc::new(FileStorage::new(config.clone())),
        }
    }
}

/// Decodes a connector's config.
pub fn decode_connector(kind: &ComponentType, config: &ComponentConfig) -> Result<ConnectorConfig, ConfigErrors> {
    match kind.name {
        "forward" => config.decode().map(ConnectorConfig::Forward),
        "count" => config.decode().map(ConnectorConfig::Count),
        "signal_to_metrics" => config.decode().map(ConnectorConfig::SignalToMetrics),
        other => Err(ConfigErrors::one(config.path(), format!("connector `{other}` cannot be built"))),
    }
}

impl ConnectorConfig {
    /// The connector (one instance serves all its pipelines).
    pub fn build(&self) -> Arc<dyn Connector> {
        match self {
            ConnectorConfig::Forward(_) => Arc::new(ForwardConnector),
            ConnectorConfig::Count(config) => Arc::new(CountConnector::new(config)),
            ConnectorConfig::SignalToMetrics(config) => Arc::new(SignalToMetricsConnector::new(config)),
        }
    }
}

/// Decodes a receiver's config.
pub fn decode_receiver(kind: &ComponentType, config: &ComponentConfig) -> Result<ReceiverConfig, ConfigErrors> {
    match kind.name {
        "ebpf" => config.decode().map(ReceiverConfig::Ebpf),
        "otlp" => config.decode().map(ReceiverConfig::Otlp),
        other => Err(ConfigErrors::one(config.path(), format!("receiver `{other}` cannot be built"))),
    }
}

/// Decodes a processor's config.
pub fn decode_processor(kind: &ComponentType, config: &ComponentConfig) -> Result<ProcessorConfig, ConfigErrors> {
    match kind.name {
        "batch" => config.decode().map(ProcessorConfig::Batch),
        "filter" => config.decode().map(ProcessorConfig::Filter),
        "host_attributes" => config.decode().map(|c| ProcessorConfig::HostAttributes(HostAttributes::new(c))),
        "k8s_attributes" => config.decode().map(|c| ProcessorConfig::K8sAttributes(Box::new(K8sAttributes::new(c)))),
        "log_dedup" => config.decode().map(ProcessorConfig::LogDedup),
        "memory_limiter" => config.decode().map(ProcessorConfig::MemoryLimiter),
        "probabilistic_sampler" => config.decode().map(ProcessorConfig::ProbabilisticSampler),
        "trace_correlation" => config.decode().map(|c| ProcessorConfig::TraceCorrelation(TraceCorrelation::new(c))),
        other => Err(ConfigErrors::one(config.path(), format!("processor `{other}` cannot be built"))),
    }
}

/// Decodes an exporter's config.
pub fn decode_exporter(kind: &ComponentType, config: &ComponentConfig) -> Result<ExporterConfig, ConfigErrors> {
    match kind.name {
        "otlp_grpc" => config.decode().map(ExporterConfig::OtlpGrpc),
        "otlp_http" => config.decode().map(ExporterConfig::OtlpHttp),
        "debug" => config.decode().map(ExporterConfig::Debug),
        "file" => config.decode().map(ExporterConfig::File),
        "pcap" => config.decode().map(ExporterConfig::Pcap),
        "hubble" => config.decode().map(ExporterConfig::Hubble),
        "prometheus" => config.decode().map(ExporterConfig::Prometheus),
        "load_balancing" => decode_load_balancing(config),
        other => Err(ConfigErrors::one(config.path(), format!("exporter `{other}` cannot be built"))),
    }
}

impl ReceiverConfig {
    /// A new receiver instance.
    pub fn build(&self) -> Box<dyn Receiver> {
        match self {
            ReceiverConfig::Ebpf(config) => Box::new(EbpfReceiver::new(config.clone())),
            ReceiverConfig::Otlp(config) => Box::new(OtlpReceiver::new(config.clone())),
        }
    }
}

impl ProcessorConfig {
    /// A new processor instance (one per pipeline).
    pub fn build(&self) -> Box<dyn Processor> {
        match self {
            ProcessorConfig::Batch(config) => Box::new(BatchProcessor::new(config.clone())),
            ProcessorConfig::Filter(config) => Box::new(FilterProcessor::new(config)),
            ProcessorConfig::HostAttributes(shared) => Box::new(shared.processor()),
            ProcessorConfig::K8sAttributes(shared) => Box::new(shared.processor()),
            ProcessorConfig::LogDedup(config) => Box::new(LogDedupProcessor::new(config.clone())),
            ProcessorConfig::MemoryLimiter(config) => Box::new(MemoryLimiter::new(config)),
            ProcessorConfig::ProbabilisticSampler(config) => Box::new(ProbabilisticSampler::new(config.clone())),
            ProcessorConfig::TraceCorrelation(shared) => Box::new(shared.processor()),
        }
    }
}

impl ExporterConfig {
    /// The exporter with its queue and retry settings.
    pub fn build(&self) -> Result<ExporterSpec, BuildError> {
        Ok(match self {
            ExporterConfig::OtlpGrpc(config) => ExporterSpec {
                exporter: Arc::new(OtlpGrpcExporter::new(config)?),
                queue: config.sending_queue.clone(),
                retry: config.retry_on_failure.clone(),
            },
            ExporterConfig::OtlpHttp(config) => ExporterSpec {
                exporter: Arc::new(OtlpHttpExporter::new(config)?),
                queue: config.sending_queue.clone(),
                retry: config.retry_on_failure.clone(),
            },
            ExporterConfig::Debug(config) => ExporterSpec {
                exporter: Arc::new(DebugExporter::new(config)),
                queue: QueueConfig::local(),
                retry: RetryConfig::disabled(),
            },
            ExporterConfig::File(config) => ExporterSpec {
                exporter: Arc::new(FileExporter::new(config)?),
                queue: QueueConfig::local(),
                retry: RetryConfig::disabled(),
            },
            ExporterConfig::Pcap(config) => ExporterSpec {
                exporter: Arc::new(PcapExporter::new(config)?),
                queue: QueueConfig::local(),
                retry: RetryConfig::disabled(),
            },
            ExporterConfig::Hubble(config) => ExporterSpec {
                exporter: Arc::new(HubbleExporter::new(config)),
                queue: QueueConfig::local(),
                retry: RetryConfig::disabled(),
            },
            ExporterConfig::Prometheus(config) => ExporterSpec {
                exporter: Arc::new(PrometheusExporter::new(config)),
                queue: QueueConfig::local(),
                retry: RetryConfig::disabled(),
            },
            ExporterConfig::LoadBalancing(configs) => {
                let (balancing, otlp) = &**configs;
                let template = otlp.clone();
                let make_backend: BackendExporters = Arc::new(move |endpoint: &str| {
                    let config = OtlpGrpcConfig { endpoint: endpoint.to_owned(), ..template.clone() };
                    Ok(Arc::new(OtlpGrpcExporter::new(&config)?) as Arc<dyn Exporter>)
                });
                // Checked here so a bad protocol fails at startup, not per backend.
                OtlpGrpcExporter::new(otlp)?;
                let exporter = LoadBalancingExporter::new(
                    balancing,
                    make_backend,
                    otlp.sending_queue.clone(),
                    otlp.retry_on_failure.clone(),
                );
                ExporterSpec {
                    exporter: Arc::new(exporter),
                    queue: QueueConfig::default(),
                    retry: RetryConfig::default(),
                }
            }
        })
    }
}
