//! Reading the flow programs' output: flow-end events as they come, and
//! the kernel's flow table every flush, into `network.flow` records and the
//! `network.flow.*` metrics (with `convert`).

use std::{collections::BTreeMap, time::Duration};

use aya::maps::{MapData, PerCpuHashMap};
use flowtel_core::{
    ComponentId,
    schema::{attr, metric},
    self_telemetry::{Counter, MetricsRegistry},
};
use flowtel_ebpf_common::{
    COUNTERS, Counter as KernelCounter, EVENT_FLOW_END, FLOW_COUNTERS_MAP, FLOWS_MAP, FlowEvent, FlowKey, FlowStats,
    tcp_flags,
};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use tokio::{sync::mpsc, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use super::{
    attach::InterfaceWatcher,
    convert::{self, FlowMetrics, RecordContext},
    link_events::LinkEvents,
    reply::ReplyRule,
    table::{EndReason, FlowReport, FlowTable, merge_per_cpu},
    trace_context,
};
use crate::ebpf::{
    config::EbpfReceiverConfig,
    conntrack::{Conntrack, ConntrackCounters, Tuple},
    exemplars::{Exemplars, Sample},
    kernel::{
        clock::{clock_now, interval, monotonic_now_ns},
        events::{self, EventLoss, FLOW_STREAM},
        loader::{EbpfError, Probes, map_error, sum_per_cpu_slots},
    },
    otlp::address,
    publish::Publisher,
};

/// Batches of events waiting between the stream's readers and the task.
const EVENT_QUEUE: usize = 16_384 / crate::ebpf::kernel::events::EVENT_BATCH;
/// How often flow-end reports are handed on.
const END_REPORT_INTERVAL: Duration = Duration::from_millis(250);

/// Starts the flow event stream's readers and the flow task, which owns
/// the programs from now on and detaches them when `stop` ends it.
pub fn start(
    mut probes: Probes,
    watcher: InterfaceWatcher,
    config: &EbpfReceiverConfig,
    id: &ComponentId,
    registry: &MetricsRegistry,
    publisher: Publisher,
    stop: CancellationToken,
) -> Result<Vec<JoinHandle<()>>, EbpfError> {
    let (counters, loss) = FlowCounters::new(registry, &id.to_string());
    let (sender, events) = mpsc::channel(EVENT_QUEUE);
    let transport = probes.transport();
    let mut tasks =
        events::start(probes.ebpf_mut(), FLOW_STREAM, transport, events::decode, sender, loss, stop.clone())?;
    let run = FlowLoop {
        id: id.clone(),
        config: config.clone(),
        probes,
        watcher,
        table: FlowTable::new(config.idle_timeout.as_nanos() as u64).with_reply_rule(ReplyRule::from_system()),
        flow_metrics: FlowMetrics::new(clock_now().1),
        counters,
        publisher,
        pending: Vec::new(),
        exemplars: Exemplars::default(),
        conntrack: conntrack(config, id, registry),
    };
    tasks.push(tokio::spawn(run.run(events, stop)));
    Ok(tasks)
}

/// With `conntrack.enabled`, the NATed connections of this namespace; what
/// stops it is reported and flows go on without.
fn conntrack(config: &EbpfReceiverConfig, id: &ComponentId, registry: &MetricsRegistry) -> Option<Conntrack> {
    if !config.conntrack.enabled {
        return None;
    }
    let id = id.to_string();
    let counters = ConntrackCounters {
        lost: registry.counter(
            "flowtel_ebpf_conntrack_events_lost_total",
            "Conntrack events the socket could not hold (a NATed connection may then not be named).",
            &[("receiver", &id)],
        ),
        refused: registry.counter(
            "flowtel_ebpf_conntrack_connections_refused_total",
            "NATed connections not kept because conntrack.max_connections were (their flows are not named).",
            &[("receiver", &id)],
        ),
    };
    // A closed connection's flows are reported at the next flush after they go idle.
    let retention = config.idle_timeout + config.flush_interval * 2;
    match Conntrack::start(config.conntrack.max_connections.get() as usize, retention, counters) {
        Ok(conntrack) => {
            tracing::info!(receiver = %id, "Flows of NATed connections name both tuples, from conntrack in this network namespace.");
            Some(conntrack)
        }
        Err(error) => {
            tracing::error!(receiver = %id, error = %error, "Cannot follow conntrack; flows of NATed connections will not name both tuples.");
            None
        }
    }
}

/// flowtel's own metrics about the flow programs.
struct FlowCounters {
    /// Kernel counters mirrored into the registry, with the value last mirrored.
    mirrored: Vec<(KernelCounter, Counter, u64)>,
    evicted: Counter,
    /// Flow records sent without `flow.is_reply`.
    reply_unknown: Counter,
}

impl FlowCounters {
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
        let requests = |result: &str| {
            registry.counter(
                "flowtel_ebpf_trace_context_requests_total",
                "HTTP/1.x requests seen by the TC programs, by what their traceparent header gave: read, absent, malformed, or unreadable (headers not all in the first packet read).",
                &[("receiver", id), ("result", result)],
            )
        };
        let mirror = |counter, name, help| (counter, registry.counter(name, help, &receiver), 0);
        let metrics = FlowCounters {
            mirrored: vec![
                mirror(KernelCounter::PacketsSeen, "flowtel_ebpf_packets_total", "Packets seen by the TC programs."),
                mirror(
                    KernelCounter::PacketsSampledOut,
                    "flowtel_ebpf_packets_sampled_out_total",
                    "Packets not counted because of 1-in-N sampling.",
                ),
                mirror(
                    KernelCounter::PacketsFilteredOut,
                    "flowtel_ebpf_packets_filtered_out_total",
                    "Packets the receiver's filter did not match (counted in no flow).",
                ),
                mirror(
                    KernelCounter::ParseFailures,
                    "flowtel_ebpf_parse_failures_total",
                    "Packets whose headers were truncated or malformed.",
                ),
                mirror(
                    KernelCounter::HeadersCopied,
                    "flowtel_ebpf_packets_parsed_from_copies_total",
                    "Packets whose headers went on past the skb's linear area, parsed from copies rather than in place.",
                ),
                mirror(KernelCounter::NonIpPackets, "flowtel_ebpf_non_ip_packets_total", "Packets that were not IP."),
                mirror(
                    KernelCounter::FlowMapInsertFailures,
                    "flowtel_ebpf_flow_insert_failures_total",
                    "New flows the kernel's flow table could not take.",
                ),
                (KernelCounter::RingBufferFull, lost("ring_buffer_full"), 0),
                (KernelCounter::TraceContextsRead, requests("read"), 0),
                (KernelCounter::TraceContextsAbsent, requests("absent"), 0),
                (KernelCounter::TraceContextsMalformed, requests("malformed"), 0),
                (KernelCounter::TraceContextsUnreadable, requests("unreadable"), 0),
                mirror(
                    KernelCounter::TraceContextMapFull,
                    "flowtel_ebpf_trace_context_map_full_total",
                    "Trace contexts of new connections the kernel's full map could not keep (raise trace_context.max_connections).",
                ),
            ],
            reply_unknown: registry.counter(
                "flowtel_ebpf_flow_records_reply_unknown_total",
                "Flow records sent without flow.is_reply: no rule knew which side asked.",
                &receiver,
            ),
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

/// The next link change; never, without a subscription.
async fn link_change(links: Option<&LinkEvents>) -> std::io::Result<()> {
    match links {
        Some(links) => links.changed().await,
        None => std::future::pending().await,
    }
}

/// The flow task: flow-end events in, a report of every flow each flush.
struct FlowLoop {
    id: ComponentId,
    config: EbpfReceiverConfig,
    probes: Probes,
    watcher: InterfaceWatcher,
    table: FlowTable,
    flow_metrics: FlowMetrics,
    counters: FlowCounters,
    publisher: Publisher,
    /// Flow-end records not yet handed on.
    pending: Vec<LogRecord>,
    /// Traced flow records, for the next `network.flow.bytes` points.
    exemplars: Exemplars,
    /// NATed connections (`conntrack.enabled`).
    conntrack: Option<Conntrack>,
}

impl FlowLoop {
    async fn run(mut self, mut events: mpsc::Receiver<Vec<FlowEvent>>, stop: CancellationToken) {
        let mut flush = interval(self.config.flush_interval);
        let mut poll = interval(self.config.interface_poll_interval);
        let mut ends = interval(END_REPORT_INTERVAL);
        let mut links = match LinkEvents::open() {
            Ok(links) => Some(links),
            Err(err) => {
                tracing::warn!(receiver = %self.id, error = %err, "No rtnetlink link messages; new interfaces are found by polling only.");
                None
            }
        };
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                Some(batch) = events.recv() => {
                    for event in &batch {
                        self.on_event(event);
                    }
                }
                _ = ends.tick() => self.hand_on_ends().await,
                _ = flush.tick() => self.flush().await,
                changed = link_change(links.as_ref()) => {
                    if let Err(err) = changed {
                        tracing::warn!(receiver = %self.id, error = %err, "Reading rtnetlink link messages failed; new interfaces are found by polling from now on.");
                        links = None;
                    }
                    let _ = self.watcher.sync(&mut self.probes, false);
                }
                _ = poll.tick() => {
                    let _ = self.watcher.sync(&mut self.probes, false);
                }
            }
        }
        while let Ok(batch) = events.try_recv() {
            for event in &batch {
                self.on_event(event);
            }
        }
        // Final report of everything counted so far.
        self.flush().await;
        self.probes.detach_all();
        tracing::info!(receiver = %self.id, "Flow programs detached.");
    }

    /// `clock` is `(monotonic_to_unix_ns(), Unix time now)`, read once per batch of records.
    fn record(&mut self, report: &FlowReport, clock: (u64, u64)) -> LogRecord {
        let name = |ifindex| self.watcher.name(ifindex);
        let ctx = RecordContext {
            interface_name: &name,
            sampling: self.config.sampling.get(),
            monotonic_to_unix_ns: clock.0,
            now_unix_ns: clock.1,
        };
        if report.is_reply.is_none() {
            self.counters.reply_unknown.inc();
        }
        let mut record = convert::flow_record(report, &ctx);
        if let Some(conntrack) = &self.conntrack {
            let key = &report.key;
            let seen = Tuple {
                protocol: key.protocol,
                source: (address(key.ip_version, &key.src_addr), key.src_port),
                destination: (address(key.ip_version, &key.dst_addr), key.dst_port),
            };
            record.attributes.extend(conntrack.attributes(&seen));
        }
        let bytes = Sample::Attribute(attr::FLOW_BYTES);
        self.exemplars.offer(metric::FLOW_BYTES.name, &convert::FLOW_SERIES, &record, bytes);
        record
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
            let record = self.record(&report, clock_now());
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
        let now_ns = monotonic_now_ns();
        let flush = self.table.flush(&kernel, now_ns);
        self.probes.delete_flows(&flush.delete);
        self.forget_gone_trace_contexts(&kernel, now_ns);
        self.counters.evicted.add(flush.evicted);
        if flush.evicted > 0 {
            tracing::warn!(receiver = %self.id, evicted = flush.evicted, "The kernel's flow table was full; raise max_flows.");
        }
        self.counters.mirror(&self.probes);
        let clock = clock_now();
        let mut records = std::mem::take(&mut self.pending);
        for report in &flush.reports {
            self.flow_metrics.add(report, self.watcher.name(report.key.ifindex), self.config.sampling.get());
            records.push(self.record(report, clock));
        }
        self.publisher.logs(records).await;

        let mut active: BTreeMap<String, usize> = BTreeMap::new();
        for (key, _) in &kernel {
            *active.entry(self.watcher.name(key.ifindex)).or_default() += 1;
        }
        let mut metrics = self.flow_metrics.metrics(clock.1, &active);
        if self.config.response_latency.enabled {
            match self.probes.response_latency() {
                Ok(servers) => {
                    let name = |ifindex| self.watcher.name(ifindex);
                    let start = self.flow_metrics.start_unix_ns();
                    metrics.push(convert::response_latency_metric(&servers, &name, start, clock.1));
                }
                Err(err) => tracing::error!(receiver = %self.id, error = %err, "Cannot read the response latencies."),
            }
        }
        self.exemplars.attach(&mut metrics);
        self.publisher.metrics(metrics).await;
    }

    /// Forgets the trace contexts of connections gone (no flow left, and
    /// no request for longer than `idle_timeout`), so the kernel's map keeps
    /// its room for connections alive.
    fn forget_gone_trace_contexts(&mut self, kernel: &[(FlowKey, FlowStats)], now_ns: u64) {
        if !self.config.trace_context.enabled {
            return;
        }
        match self.probes.trace_contexts() {
            Ok(contexts) => {
                let idle_ns = self.config.idle_timeout.as_nanos() as u64;
                self.probes.forget_trace_contexts(&trace_context::gone(&contexts, kernel, now_ns, idle_ns));
            }
            Err(err) => tracing::error!(receiver = %self.id, error = %err, "Cannot read the trace contexts."),
        }
    }
}

impl Probes {
    /// Every flow in the kernel's table, per-CPU values summed.
    pub fn flows(&self) -> Result<Vec<(FlowKey, FlowStats)>, EbpfError> {
        let map = self.ebpf.map(FLOWS_MAP).ok_or_else(|| map_error(FLOWS_MAP)("missing".into()))?;
        let flows: PerCpuHashMap<&MapData, FlowKey, FlowStats> =
            PerCpuHashMap::try_from(map).map_err(|e| map_error(FLOWS_MAP)(e.to_string()))?;
        let mut out = Vec::new();
        for entry in flows.iter() {
            match entry {
                Ok((key, values)) => out.push((key, merge_per_cpu(values.iter()))),
                // An entry deleted while iterating: skip it.
                Err(err) => tracing::debug!(error = %err, "Flow map entry vanished while reading."),
            }
        }
        Ok(out)
    }

    /// One flow's current stats, if the kernel still has it.
    pub fn flow(&self, key: &FlowKey) -> Option<FlowStats> {
        let map = self.ebpf.map(FLOWS_MAP)?;
        let flows: PerCpuHashMap<&MapData, FlowKey, FlowStats> = PerCpuHashMap::try_from(map).ok()?;
        flows.get(key, 0).ok().map(|values| merge_per_cpu(values.iter()))
    }

    /// Deletes flows from the kernel's table.
    pub fn delete_flows(&mut self, keys: &[FlowKey]) {
        let Some(map) = self.ebpf.map_mut(FLOWS_MAP) else { return };
        let Ok(mut flows) = PerCpuHashMap::<&mut MapData, FlowKey, FlowStats>::try_from(map) else { return };
        for key in keys {
            let _ = flows.remove(key);
        }
    }

    /// The loss and health counters, summed over CPUs, indexed by `Counter`.
    pub fn counters(&self) -> Result<[u64; COUNTERS as usize], EbpfError> {
        let map = self.ebpf.map(FLOW_COUNTERS_MAP).ok_or_else(|| map_error(FLOW_COUNTERS_MAP)("missing".into()))?;
        sum_per_cpu_slots::<{ COUNTERS as usize }>(map, FLOW_COUNTERS_MAP)
    }
}
