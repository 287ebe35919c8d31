//! The `ebpf` receiver: the kernel's view of the network.
//!
//! TC classifiers on the watched interfaces aggregate traffic per flow in
//! the kernel (see `ebpf/probes`); new-flow and flow-end events arrive
//! through a ring buffer (or perf buffers). Every `flush_interval` the
//! receiver reads the kernel's flow table and reports each active flow's
//! traffic since its previous report as a `network.flow` log record, ends
//! idle flows, and emits the `network.flow.*` metrics. A FIN or RST reports
//! the flow at once.
//!
//! Tracepoint programs add packet drops (`skb:kfree_skb`) and TCP events
//! (retransmits, resets, RTT, handshakes, connections); see [`tracepoints`].

pub mod btf;
mod capabilities;
mod cgroups;
mod config;
pub mod convert;
pub mod drops;
mod events;
pub mod flow_table;
mod interfaces;
pub mod kallsyms;
mod loader;
mod publish;
pub mod tcp;
pub mod tracefs;
pub mod tracepoints;

use std::{collections::BTreeMap, path::Path, time::Duration};

use async_trait::async_trait;
use flowtel_core::{
    ComponentId, ComponentKind,
    component::{ComponentError, Receiver, ReceiverContext},
    self_telemetry::{Counter, MetricsRegistry},
};
use flowtel_ebpf_common::{
    Counter as KernelCounter, EVENT_FLOW_END, FlowEvent, TRANSPORT_PERF_ARRAY, TRANSPORT_RING_BUFFER, tcp_flags,
};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use tokio::{sync::mpsc, task::JoinHandle, time::MissedTickBehavior};
use tokio_util::sync::CancellationToken;

pub use config::{DropTracepoint, DropsConfig, EbpfReceiverConfig, EventTransport, TcAttach, TcpConfig};
pub use events::{
    EventLoss, FLOW_STREAM, KERNEL_STREAM, KernelEvent, decode as decode_event, decode_kernel_event,
    start as start_event_readers,
};
pub use loader::{EbpfError, KernelMaps, PROBES_OBJECT, ProbeSettings, Probes};

use self::{
    convert::{FlowMetrics, RecordContext},
    flow_table::{EndReason, FlowReport, FlowTable},
    interfaces::{Interface, InterfaceFilter},
    publish::Publisher,
    tracepoints::{KernelInfo, Parts, TracepointLoop},
};

/// Events waiting between the readers and the flow table.
const EVENT_QUEUE: usize = 16_384;
/// How often flow-end reports are handed on.
const END_REPORT_INTERVAL: Duration = Duration::from_millis(250);

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

/// Unix time minus the kernel's monotonic clock (what `bpf_ktime_get_ns` reads).
fn monotonic_to_unix_ns() -> u64 {
    let read = |clock| {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes into the timespec we own.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    };
    read(libc::CLOCK_REALTIME).saturating_sub(read(libc::CLOCK_MONOTONIC))
}

fn monotonic_now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `(monotonic_to_unix_ns(), Unix time now)`.
fn clock_now() -> (u64, u64) {
    let offset = monotonic_to_unix_ns();
    (offset, offset + monotonic_now_ns())
}

/// flowtel's own metrics about the kernel side.
struct KernelMetrics {
    /// Kernel counters mirrored into the registry, with the value last mirrored.
    mirrored: Vec<(KernelCounter, Counter, u64)>,
    evicted: Counter,
}

impl KernelMetrics {
    /// The metrics, and the loss counters the event readers update.
    fn new(registry: &MetricsRegistry, id: &str) -> (Self, EventLoss) {
        let receiver = [("receiver", id)];
        let lost = |reason: &str| {
            registry.counter(
                "flowtel_ebpf_events_lost_total",
                "Flow events that never reached userspace's flow table, by reason.",
                &[("receiver", id), ("reason", reason)],
            )
        };
        let loss = EventLoss::new(&lost);
        let mirror = |counter, name, help| (counter, registry.counter(name, help, &receiver), 0);
        let metrics = KernelMetrics {
            mirrored: vec![
                mirror(KernelCounter::PacketsSeen, "flowtel_ebpf_packets_total", "Packets seen by the TC programs."),
                mirror(
                    KernelCounter::PacketsSampledOut,
                    "flowtel_ebpf_packets_sampled_out_total",
                    "Packets not counted because of 1-in-N sampling.",
                ),
                mirror(
                    KernelCounter::ParseFailures,
                    "flowtel_ebpf_parse_failures_total",
                    "Packets whose headers were truncated or malformed.",
                ),
                mirror(KernelCounter::NonIpPackets, "flowtel_ebpf_non_ip_packets_total", "Packets that were not IP."),
                mirror(
                    KernelCounter::FlowMapInsertFailures,
                    "flowtel_ebpf_flow_insert_failures_total",
                    "New flows the kernel's flow table could not take.",
                ),
                (KernelCounter::RingBufferFull, lost("ring_buffer_full"), 0),
            ],
            evicted: registry.counter(
                "flowtel_ebpf_flows_evicted_total",
                "Flows the kernel evicted from its full flow table before they were reported.",
                &receiver,
            ),
        };
        (metrics, loss)
    }

    fn mirror(&mut self, probes: &Probes) {
        let Ok(values) = probes.counters() else { return };
        for (which, counter, last) in &mut self.mirrored {
            let value = values[*which as usize];
            counter.add(value.saturating_sub(*last));
            *last = value;
        }
    }
}

#[async_trait]
impl Receiver for EbpfReceiver {
    async fn start(&mut self, ctx: ReceiverContext) -> Result<(), ComponentError> {
        let error = |message: String| ComponentError::new(ComponentKind::Receiver, &ctx.id, message);
        let config = &self.config;
        let tracepoints_wanted = config.drops.enabled || config.tcp.enabled;
        if let Some(effective) = capabilities::effective() {
            let missing = capabilities::missing(effective, tracepoints_wanted);
            if !missing.is_empty() {
                return Err(error(format!(
                    "flowtel lacks {}; run it as root or grant these capabilities",
                    missing.join(", ")
                )));
            }
        }
        let info = if tracepoints_wanted {
            let tracefs = tracefs::root().map_err(|e| {
                error(format!("{e}; the drop and TCP programs read their tracepoints' layouts there (or set drops.enabled and tcp.enabled to false)"))
            })?;
            KernelInfo::discover(Path::new(btf::VMLINUX_BTF), Some(&tracefs))
        } else {
            KernelInfo::default()
        };
        for gap in &info.gaps {
            tracing::warn!(receiver = %ctx.id, gap = %gap, "The kernel lacks something the drop or TCP programs use.");
        }
        let (drop_settings, excluded_reasons) =
            if config.drops.enabled { info.drop_settings(&config.drops).map_err(error)? } else { Default::default() };
        let tcp_settings = info.tcp_settings();
        if config.tcp.enabled && tcp_settings.is_none() {
            tracing::warn!(receiver = %ctx.id, "TCP states are unknown (no BTF): handshakes and connections are not followed.");
        }
        let settings = ProbeSettings {
            max_flows: config.max_flows.get(),
            sampling: config.sampling.get(),
            event_transport: match config.event_transport {
                EventTransport::RingBuffer => TRANSPORT_RING_BUFFER,
                EventTransport::PerfArray => TRANSPORT_PERF_ARRAY,
            },
            layout: info.layout,
            drops: drop_settings,
            tcp: tcp_settings.unwrap_or_default(),
        };
        let mut probes = Probes::load(&settings).map_err(|e| error(e.to_string()))?;
        let filter = InterfaceFilter::new(&config.interfaces, &config.exclude_interfaces)
            .map_err(|(field, message)| error(format!("{field}: {message}")))?;
        let mut watcher = InterfaceWatcher { filter, names: BTreeMap::new(), mode: config.tc_attach };
        // At startup an interface that cannot be attached is an error; later ones are logged.
        watcher.sync(&mut probes, true).map_err(|e| error(e.to_string()))?;
        if probes.attached().next().is_none() {
            tracing::warn!(receiver = %ctx.id, "No interface matches yet; waiting for one to appear.");
        }
        let parts = attach_tracepoints(&mut probes, config, &excluded_reasons, &ctx.id).map_err(error)?;

        let id = ctx.id.to_string();
        let publisher = Publisher::new(
            ctx.id.clone(),
            ctx.output,
            &ctx.metrics,
            flowtel_core::linux::host_name().unwrap_or_default(),
        );
        let (metrics, loss) = KernelMetrics::new(&ctx.metrics, &id);
        let (sender, events) = mpsc::channel(EVENT_QUEUE);
        let transport = config.event_transport;
        let mut tasks =
            events::start(probes.ebpf_mut(), FLOW_STREAM, transport, events::decode, sender, loss, self.stop.clone())
                .map_err(|e| error(e.to_string()))?;
        if parts.drops || parts.tcp {
            let maps = probes.take_kernel_maps().map_err(|e| error(e.to_string()))?;
            let lost = |reason: &str| tracepoints::kernel_events_lost(&ctx.metrics, &id, reason);
            let (kernel_sender, kernel_events) = mpsc::channel(EVENT_QUEUE);
            let loss = EventLoss::new(&lost);
            let stop = self.stop.clone();
            let readers = events::start(
                probes.ebpf_mut(),
                KERNEL_STREAM,
                transport,
                decode_kernel_event,
                kernel_sender,
                loss,
                stop,
            )
            .map_err(|e| error(e.to_string()))?;
            tasks.extend(readers);
            let run = TracepointLoop::new(ctx.id.clone(), config, parts, maps, info, &ctx.metrics, publisher.clone());
            tasks.push(tokio::spawn(run.run(kernel_events, self.stop.clone())));
        }
        let run = FlowLoop {
            id: ctx.id.clone(),
            config: config.clone(),
            probes,
            watcher,
            table: FlowTable::new(config.idle_timeout.as_nanos() as u64),
            flow_metrics: FlowMetrics::new(clock_now().1),
            metrics,
            publisher,
            pending: Vec::new(),
        };
        tasks.push(tokio::spawn(run.run(events, self.stop.clone())));
        self.tasks = tasks;
        tracing::info!(receiver = %ctx.id, transport = ?config.event_transport, "Watching network flows.");
        Ok(())
    }

    async fn shutdown(&mut self) {
        self.stop.cancel();
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

/// Attaches the drop and TCP programs the config asks for. A part the
/// kernel cannot run is reported and left off, unless the config named
/// exactly how to attach it.
fn attach_tracepoints(
    probes: &mut Probes,
    config: &EbpfReceiverConfig,
    excluded_reasons: &[u32],
    id: &ComponentId,
) -> Result<Parts, String> {
    let mut parts = Parts { drops: false, tcp: false, stack_trace: config.drops.stack_trace };
    if config.drops.enabled {
        match probes.attach_drops(config.drops.tracepoint) {
            Ok(which) => {
                probes.exclude_drop_reasons(excluded_reasons).map_err(|e| e.to_string())?;
                tracing::info!(receiver = %id, program = which, "Watching packet drops.");
                parts.drops = true;
            }
            Err(err) if config.drops.tracepoint != DropTracepoint::Auto => return Err(err.to_string()),
            Err(err) => tracing::warn!(receiver = %id, error = %err, "Packet drops are off: the kernel refused them."),
        }
    }
    if config.tcp.enabled {
        let failed = probes.attach_tcp();
        for (tracepoint, why) in &failed {
            tracing::warn!(receiver = %id, tracepoint, error = %why, "A TCP tracepoint is off; the others run.");
        }
        parts.tcp = failed.len() < loader::TCP_TRACEPOINTS.len();
        if parts.tcp {
            tracing::info!(receiver = %id, "Watching TCP retransmits, resets, RTT and connections.");
        }
    }
    Ok(parts)
}

/// Keeps the attached interfaces in line with the filter.
struct InterfaceWatcher {
    filter: InterfaceFilter,
    names: BTreeMap<u32, String>,
    mode: TcAttach,
}

impl InterfaceWatcher {
    fn sync(&mut self, probes: &mut Probes, strict: bool) -> Result<(), EbpfError> {
        let Ok(present) = interfaces::list(Path::new("/sys/class/net")) else { return Ok(()) };
        for interface in &present {
            self.names.insert(interface.ifindex, interface.name.clone());
        }
        let wanted: Vec<&Interface> = present.iter().filter(|i| self.filter.matches(i)).collect();
        let gone: Vec<String> =
            probes.attached().filter(|name| !wanted.iter().any(|i| i.name == *name)).map(str::to_owned).collect();
        for name in gone {
            tracing::info!(interface = %name, "Interface gone or no longer matching; detaching.");
            probes.detach(&name);
        }
        for interface in wanted {
            if probes.attached().any(|name| name == interface.name) {
                continue;
            }
            match probes.attach(&interface.name, self.mode) {
                Ok(()) => tracing::info!(interface = %interface.name, "Attached flow programs."),
                Err(err) if strict => return Err(err),
                Err(err) => tracing::warn!(interface = %interface.name, error = %err, "Cannot attach; will retry."),
            }
        }
        Ok(())
    }

    fn name(&self, ifindex: u32) -> String {
        self.names.get(&ifindex).cloned().unwrap_or_else(|| format!("if{ifindex}"))
    }
}

/// The receiver's task: events in, flushes out.
struct FlowLoop {
    id: ComponentId,
    config: EbpfReceiverConfig,
    probes: Probes,
    watcher: InterfaceWatcher,
    table: FlowTable,
    flow_metrics: FlowMetrics,
    metrics: KernelMetrics,
    publisher: Publisher,
    /// Flow-end records not yet handed on.
    pending: Vec<LogRecord>,
}

impl FlowLoop {
    async fn run(mut self, mut events: mpsc::Receiver<FlowEvent>, stop: CancellationToken) {
        let interval = |period| {
            let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
            interval
        };
        let mut flush = interval(self.config.flush_interval);
        let mut poll = interval(self.config.interface_poll_interval);
        let mut ends = interval(END_REPORT_INTERVAL);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                Some(event) = events.recv() => self.on_event(&event),
                _ = ends.tick() => self.hand_on_ends().await,
                _ = flush.tick() => self.flush().await,
                _ = poll.tick() => {
                    let _ = self.watcher.sync(&mut self.probes, false);
                }
            }
        }
        while let Ok(event) = events.try_recv() {
            self.on_event(&event);
        }
        // Final report of everything counted so far.
        self.flush().await;
        self.probes.detach_all();
        tracing::info!(receiver = %self.id, "Flow programs detached.");
    }

    /// `clock` is `(monotonic_to_unix_ns(), Unix time now)`, read once per batch of records.
    fn to_record(&self, report: &FlowReport, clock: (u64, u64)) -> LogRecord {
        let name = |ifindex| self.watcher.name(ifindex);
        let ctx = RecordContext {
            interface_name: &name,
            sampling: self.config.sampling.get(),
            monotonic_to_unix_ns: clock.0,
            now_unix_ns: clock.1,
        };
        convert::flow_record(report, &ctx)
    }

    fn on_event(&mut self, event: &FlowEvent) {
        if event.kind != EVENT_FLOW_END {
            return;
        }
        let reason =
            if u16::from(event.packet_tcp_flags) & tcp_flags::RST != 0 { EndReason::Rst } else { EndReason::Fin };
        let stats = self.probes.flow(&event.key).unwrap_or(event.stats);
        if let Some(report) = self.table.end(&event.key, &stats, reason) {
            self.flow_metrics.add(&report, self.watcher.name(report.key.ifindex), self.config.sampling.get());
            let record = self.to_record(&report, clock_now());
            self.pending.push(record);
        }
    }

    async fn hand_on_ends(&mut self) {
        if !self.pending.is_empty() {
            let records = std::mem::take(&mut self.pending);
            self.publisher.logs(records).await;
        }
    }

    async fn flush(&mut self) {
        let kernel = match self.probes.flows() {
            Ok(kernel) => kernel,
            Err(err) => {
                tracing::error!(receiver = %self.id, error = %err, "Cannot read the flow table.");
                return;
            }
        };
        let flush = self.table.flush(&kernel, monotonic_now_ns());
        self.probes.delete_flows(&flush.delete);
        self.metrics.evicted.add(flush.evicted);
        if flush.evicted > 0 {
            tracing::warn!(receiver = %self.id, evicted = flush.evicted, "The kernel's flow table was full; raise max_flows.");
        }
        self.metrics.mirror(&self.probes);
        let clock = clock_now();
        let mut records = std::mem::take(&mut self.pending);
        for report in &flush.reports {
            self.flow_metrics.add(report, self.watcher.name(report.key.ifindex), self.config.sampling.get());
            records.push(self.to_record(report, clock));
        }
        self.publisher.logs(records).await;

        let mut active: BTreeMap<String, usize> = BTreeMap::new();
        for (key, _) in &kernel {
            *active.entry(self.watcher.name(key.ifindex)).or_default() += 1;
        }
        self.publisher.metrics(self.flow_metrics.metrics(clock.1, &active)).await;
    }
}
