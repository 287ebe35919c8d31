//! The `ebpf` receiver: the kernel's view of the network.
//!
//! One folder per kernel program family, each shaped the same way —
//! `attach` (load and attach the programs), `read` (their events and maps
//! into OTLP), `convert` (the records and metrics themselves):
//!
//! - [`flows`]: TC classifiers counting every flow (`network.flow`);
//! - [`drops`]: `skb:kfree_skb`, packet drops with the kernel's reason;
//! - [`tcp`]: retransmits, resets, RTT, handshakes and connections.
//!
//! [`kernel`] is what they share: the eBPF object, event streams, the
//! kernel's clock and what flowtel learns about the running kernel. Drop
//! and TCP events come on one stream, read by [`tracepoint_events`]; every
//! family hands its output to the pipelines through [`publish`], with the
//! traced records as [`exemplars`] of their metric points.

mod config;
pub mod conntrack;
pub mod drops;
pub mod exemplars;
pub mod filter;
pub mod flows;
pub mod journeys;
pub mod kernel;
pub mod netfilter;
pub mod otlp;
pub mod publish;
pub mod tcp;
pub mod tracepoint_events;

use std::path::Path;

use async_trait::async_trait;
use flowtel_core::{
    ComponentKind,
    component::{ComponentError, Receiver, ReceiverContext},
};
use flowtel_ebpf_common::JourneySettings;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::{
    DropTracepoint, DropsConfig, EbpfReceiverConfig, EventTransport, ResponseLatencyConfig, TcAttach, TcpConfig,
    TraceContextConfig,
};
pub use kernel::{
    events::{
        EventLoss, FLOW_STREAM, KERNEL_STREAM, KernelEvent, Transport, decode as decode_event, decode_kernel_event,
        start as start_event_readers,
    },
    loader::{EbpfError, KernelMaps, PROBES_OBJECT, ProbeSettings, Probes},
};

use self::{
    drops::read::DropReader,
    kernel::{btf, capabilities, info::KernelInfo, tracefs},
    netfilter::NetfilterTrace,
    publish::Publisher,
    tcp::read::TcpReader,
};

/// The `ebpf` receiver.
pub struct EbpfReceiver {
    config: EbpfReceiverConfig,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl EbpfReceiver {
    /// A receiver with the given (validated) config.
    pub fn new(config: EbpfReceiverConfig) -> Self {
        EbpfReceiver { config, stop: CancellationToken::new(), tasks: Vec::new() }
    }
}

#[async_trait]
impl Receiver for EbpfReceiver {
    async fn start(&mut self, ctx: ReceiverContext) -> Result<(), ComponentError> {
        let error = |e: EbpfError| ComponentError::new(ComponentKind::Receiver, &ctx.id, e.to_string());
        let config = &self.config;
        let info = learn_kernel(config, &ctx).map_err(error)?;
        let (drop_settings, excluded_reasons) = if config.drops.enabled {
            drops::attach::settings(&info, &config.drops).map_err(error)?
        } else {
            Default::default()
        };
        let tcp_settings = tcp::attach::settings(&info, &config.tcp);
        if config.tcp.enabled && tcp_settings.is_none() {
            tracing::warn!(receiver = %ctx.id, "TCP states are unknown (no BTF): handshakes and connections are not followed.");
        }
        let filter = config
            .packet_filter()
            .map_err(|message| ComponentError::new(ComponentKind::Receiver, &ctx.id, format!("filter: {message}")))?;
        if let Some(filter) = &filter {
            tracing::info!(
                receiver = %ctx.id,
                filter = %filter.expression,
                instructions = filter.link_layer.length,
                "Packets the filter does not match make no flow, drop or TCP event (run in the kernel)."
            );
        }
        let (transport, why) = Transport::choose(config.event_transport);
        tracing::info!(receiver = %ctx.id, "Kernel events arrive through {}: {why}.", transport.describe());
        let settings = ProbeSettings {
            max_flows: config.max_flows.get(),
            sampling: config.sampling.get(),
            event_transport: transport,
            layout: info.layout,
            drops: drop_settings,
            tcp: tcp_settings.unwrap_or_default(),
            trace_context_connections: if config.trace_context.enabled {
                config.trace_context.max_connections.get()
            } else {
                0
            },
            response_latency_servers: if config.response_latency.enabled {
                config.response_latency.max_servers.get()
            } else {
                0
            },
            journeys: JourneySettings {
                enabled: u32::from(config.journeys.enabled),
                delivered: u32::from(!config.filter.is_empty()),
                max_per_second: config.journeys.max_per_second,
                pad: 0,
            },
            filter,
        };
        let mut probes = Probes::load(&settings).map_err(error)?;
        if config.trace_context.enabled
            && let Err(err) = probes.enable_trace_context()
        {
            tracing::warn!(receiver = %ctx.id, error = %err, "Trace context is not read from HTTP requests on this kernel.");
        }
        let watcher = flows::attach::attach(&mut probes, config, &ctx.id).map_err(error)?;
        let drops_run = config.drops.enabled
            && drops::attach::attach(&mut probes, &config.drops, &excluded_reasons, &ctx.id).map_err(error)?;
        if drops_run && info.enums.drop_reasons.is_empty() {
            tracing::info!(
                receiver = %ctx.id,
                "Drops carry their location but no reason: this kernel's kfree_skb has none (before 5.17); they report NOT_SPECIFIED."
            );
        }
        let tcp_run = config.tcp.enabled && tcp::attach::attach(&mut probes, &ctx.id);
        if config.journeys.enabled && drops_run {
            probes.attach_journeys().map_err(error)?;
            let which = if config.filter.is_empty() {
                "every packet; the journeys of dropped ones are exported"
            } else {
                "the packets the filter matches at their first hook; dropped or delivered, their journeys are exported"
            };
            tracing::info!(
                receiver = %ctx.id,
                "Following packet journeys: {which}, {} a second at most.",
                config.journeys.max_per_second
            );
        }

        let host = flowtel_core::linux::host_name().unwrap_or_default();
        let publisher = Publisher::new(ctx.id.clone(), ctx.output, &ctx.metrics, host);
        let mut tasks = Vec::new();
        if drops_run || tcp_run {
            let readers = tracepoint_events::Readers {
                drops: drops_run.then(|| {
                    DropReader::new(
                        info.enums.clone(),
                        config.drops.stack_trace,
                        netfilter_trace(config, &ctx.id, &ctx.metrics),
                    )
                }),
                tcp: tcp_run.then(|| TcpReader::new(info.tcp_formats.clone(), info.enums.clone())),
            };
            let output =
                tracepoint_events::Output { id: &ctx.id, registry: &ctx.metrics, publisher: publisher.clone() };
            let started =
                tracepoint_events::start(&mut probes, readers, config.flush_interval, output, self.stop.clone());
            tasks.extend(started.map_err(error)?);
        }
        let started = flows::read::start(probes, watcher, config, &ctx.id, &ctx.metrics, publisher, self.stop.clone());
        tasks.extend(started.map_err(error)?);
        self.tasks = tasks;
        tracing::info!(receiver = %ctx.id, "Watching network flows.");
        // Reading the kernel's BTF and loading the object took tens of MiB
        // that are free now; hand them back rather than keep them resident.
        // SAFETY: glibc's malloc_trim only returns free heap memory.
        unsafe { libc::malloc_trim(0) };
        Ok(())
    }

    async fn shutdown(&mut self) {
        self.stop.cancel();
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

/// Checks the capabilities the config needs and learns what the drop and
/// TCP programs need of this kernel (nothing when both are off); what the
/// kernel lacks is reported once.
fn learn_kernel(config: &EbpfReceiverConfig, ctx: &ReceiverContext) -> Result<KernelInfo, EbpfError> {
    let tracepoints_wanted = config.drops.enabled || config.tcp.enabled;
    if let Some(effective) = capabilities::effective() {
        let missing = capabilities::missing(effective, tracepoints_wanted);
        if !missing.is_empty() {
            return Err(EbpfError::MissingCapabilities(missing));
        }
    }
    if !tracepoints_wanted {
        return Ok(KernelInfo::default());
    }
    let tracefs = tracefs::root()?;
    let info = KernelInfo::discover(Path::new(btf::VMLINUX_BTF), Some(&tracefs));
    for gap in &info.gaps {
        tracing::warn!(receiver = %ctx.id, gap = %gap, "The kernel lacks something the drop or TCP programs use.");
    }
    Ok(info)
}

/// With `allow_system_changes`, the nftables trace that names the rule of
/// each drop by nftables; what stops it is reported and drops go on without.
fn netfilter_trace(
    config: &EbpfReceiverConfig,
    id: &flowtel_core::ComponentId,
    metrics: &flowtel_core::self_telemetry::MetricsRegistry,
) -> Option<NetfilterTrace> {
    if !config.allow_system_changes {
        return None;
    }
    let lost = metrics.counter(
        "flowtel_ebpf_netfilter_trace_events_lost_total",
        "nftables trace events the trace socket could not hold (drops by nftables may then not name their rule).",
        &[("receiver", &id.to_string())],
    );
    match NetfilterTrace::start(lost) {
        Ok(trace) => {
            let lifetime = if trace.owned {
                "removed at shutdown, or by the kernel if flowtel dies"
            } else {
                "removed at shutdown (before 5.12 the kernel cannot tie it to flowtel)"
            };
            tracing::info!(
                receiver = %id,
                "Drops by nftables name their rule: table inet {} traces every packet of this network namespace ({lifetime}).",
                netfilter::TABLE
            );
            Some(trace)
        }
        Err(error) => {
            tracing::error!(receiver = %id, error = %error, "Drops by nftables will not name their rule (allow_system_changes).");
            None
        }
    }
}
