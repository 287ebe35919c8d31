//! The tracepoint parts of the receiver: packet drops and TCP.
//!
//! At startup [`KernelInfo::discover`] learns this kernel's struct offsets
//! and enum names from BTF and the tracepoint record layouts from tracefs;
//! what is missing disables only what needs it, reported once. At run time
//! [`TracepointLoop`] turns drop and TCP events into log records and reads
//! the kernel's counters and histograms into metrics every flush.

use std::{path::Path, time::Duration};

use flowtel_core::{
    ComponentId,
    self_telemetry::{Counter, MetricsRegistry},
};
use flowtel_ebpf_common::{DropSettings, EVENT_COUNTERS, EventCounter, Histogram, KernelLayout, TcpSettings};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use tokio::{sync::mpsc, time::MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::{
    btf::{self, KernelEnums},
    cgroups::Cgroups,
    clock_now,
    config::{DropsConfig, EbpfReceiverConfig},
    drops::{DropContext, DropTotals, drop_record},
    events::KernelEvent,
    kallsyms::Kallsyms,
    loader::KernelMaps,
    publish::Publisher,
    tcp::{TcpContext, TcpFormats, TcpTotals, tcp_record},
    tracefs,
};

/// Records handed on at once at most; more wait for the next hand-over.
const RECORD_BATCH: usize = 1024;
/// How often records are handed on.
const HAND_ON_INTERVAL: Duration = Duration::from_millis(250);

/// What flowtel learned about the running kernel.
#[derive(Clone, Debug, Default)]
pub struct KernelInfo {
    /// Offsets for the programs.
    pub layout: KernelLayout,
    /// Enum names.
    pub enums: KernelEnums,
    /// TCP tracepoint record layouts.
    pub tcp_formats: TcpFormats,
    /// What could not be learned, in words.
    pub gaps: Vec<String>,
}

impl KernelInfo {
    /// Reads BTF from `btf_path` and formats from tracefs at `tracefs_root`
    /// (either may be missing: the gaps say what that costs).
    pub fn discover(btf_path: &Path, tracefs_root: Option<&Path>) -> Self {
        let mut info = KernelInfo::default();
        match btf::load(btf_path) {
            Ok(btf) => {
                let (layout, missing) = btf::struct_layout(&btf);
                info.layout = layout;
                info.gaps.extend(missing);
                info.enums = KernelEnums::read(&btf);
            }
            Err(err) => {
                info.layout = KernelLayout::unknown();
                info.gaps.push(format!("{err}: drops carry no addresses, TCP connections are not followed"));
            }
        }
        let Some(root) = tracefs_root else {
            info.gaps.push("tracefs is not available: no tracepoint layouts".into());
            return info;
        };
        let mut format = |category: &str, name: &str| match tracefs::format(root, category, name) {
            Ok(format) => format,
            Err(err) => {
                info.gaps.push(err);
                tracefs::Format::default()
            }
        };
        let kfree_skb = format("skb", "kfree_skb");
        let formats = TcpFormats {
            retransmit: format("tcp", "tcp_retransmit_skb"),
            send_reset: format("tcp", "tcp_send_reset"),
            receive_reset: format("tcp", "tcp_receive_reset"),
            set_state: format("sock", "inet_sock_set_state"),
        };
        let probe = format("tcp", "tcp_probe");
        let layout = &mut info.layout;
        let at = |format: &tracefs::Format, name: &str, size| {
            format.offset_of(name, size).unwrap_or(flowtel_ebpf_common::UNKNOWN)
        };
        layout.kfree_skb_skbaddr = at(&kfree_skb, "skbaddr", 8);
        layout.kfree_skb_location = at(&kfree_skb, "location", 8);
        layout.kfree_skb_reason = at(&kfree_skb, "reason", 4);
        layout.set_state_skaddr = at(&formats.set_state, "skaddr", 8);
        layout.set_state_oldstate = at(&formats.set_state, "oldstate", 4);
        layout.set_state_newstate = at(&formats.set_state, "newstate", 4);
        layout.set_state_protocol = at(&formats.set_state, "protocol", 2);
        layout.tcp_probe_srtt = at(&probe, "srtt", 4);
        layout.retransmit_skaddr = at(&formats.retransmit, "skaddr", 8);
        layout.retransmit_skbaddr = at(&formats.retransmit, "skbaddr", 8);
        layout.send_reset_skaddr = at(&formats.send_reset, "skaddr", 8);
        layout.send_reset_skbaddr = at(&formats.send_reset, "skbaddr", 8);
        layout.receive_reset_skaddr = at(&formats.receive_reset, "skaddr", 8);
        info.tcp_formats = formats;
        info
    }

    /// The drop program's settings, or an error naming an excluded reason
    /// this kernel does not know.
    pub fn drop_settings(&self, config: &DropsConfig) -> Result<(DropSettings, Vec<u32>), String> {
        let value = |name: &str| self.enums.drop_reason_value(name).map(|v| v as u32);
        let mut excluded = Vec::new();
        for (index, name) in config.exclude_reasons.iter().enumerate() {
            match value(name) {
                Some(reason) => excluded.push(reason),
                None if self.enums.drop_reasons.is_empty() => {
                    return Err(format!(
                        "drops.exclude_reasons[{index}]: this kernel reports no drop reasons (before 5.17, or no BTF)"
                    ));
                }
                None => {
                    let known: Vec<&str> = self.enums.drop_reasons.values().map(String::as_str).collect();
                    return Err(format!(
                        "drops.exclude_reasons[{index}]: `{name}` is not a drop reason of this kernel (it knows {})",
                        known.join(", ")
                    ));
                }
            }
        }
        let settings = DropSettings {
            // Without the enum, no value is a normal free; u32::MAX never matches a reason.
            consumed_reason: value("CONSUMED").unwrap_or(u32::MAX - 1),
            not_dropped_reason: value("NOT_DROPPED_YET").unwrap_or(u32::MAX - 1),
            max_events_per_second: config.max_events_per_second,
            stack_trace: u32::from(config.stack_trace),
        };
        Ok((settings, excluded))
    }

    /// The TCP programs' settings; `None` when the states are not known
    /// (then connections are not followed).
    pub fn tcp_settings(&self) -> Option<TcpSettings> {
        let state = |name| self.enums.tcp_state(name).map(|v| v as u32);
        Some(TcpSettings {
            established: state("ESTABLISHED")?,
            syn_sent: state("SYN_SENT")?,
            syn_recv: state("SYN_RECV")?,
            close: state("CLOSE")?,
            listen: state("LISTEN")?,
            protocol_tcp: self.enums.ipproto_tcp? as u32,
        })
    }
}

/// `flowtel_ebpf_kernel_events_lost_total` for `reason`: drop and TCP
/// events lost in the kernel (ring buffer) or on their way to this loop.
pub fn kernel_events_lost(registry: &MetricsRegistry, id: &str, reason: &str) -> Counter {
    registry.counter(
        "flowtel_ebpf_kernel_events_lost_total",
        "Drop and TCP events that never reached userspace, by reason.",
        &[("receiver", id), ("reason", reason)],
    )
}

/// flowtel's own metrics about the tracepoint parts.
struct OwnMetrics {
    /// Kernel counters mirrored into the registry, with the value last mirrored.
    mirrored: Vec<(EventCounter, Counter, u64)>,
    rate_limited: Counter,
    rate_limited_last: u64,
    /// TCP events whose tracepoint record could not be decoded.
    unreadable: Counter,
}

impl OwnMetrics {
    fn new(registry: &MetricsRegistry, id: &str) -> Self {
        let lost = |reason: &str| kernel_events_lost(registry, id, reason);
        let failures = |what: &str| {
            registry.counter(
                "flowtel_ebpf_kernel_map_full_total",
                "Drops or sockets the kernel could not track because a map was full, by map.",
                &[("receiver", id), ("map", what)],
            )
        };
        OwnMetrics {
            mirrored: vec![
                (EventCounter::RingBufferFull, lost("ring_buffer_full"), 0),
                (EventCounter::DropRingBufferFull, lost("ring_buffer_full"), 0),
                (EventCounter::SocketMapFull, failures("tcp_sockets"), 0),
                (EventCounter::DropCountMapFull, failures("drop_counts"), 0),
            ],
            rate_limited: registry.counter(
                "flowtel_ebpf_drop_events_rate_limited_total",
                "Drops counted in network.packet.drops but sent without a record because of max_events_per_second.",
                &[("receiver", id)],
            ),
            rate_limited_last: 0,
            unreadable: lost("unreadable"),
        }
    }

    fn mirror(&mut self, counters: &[u64; EVENT_COUNTERS as usize], rate_limited: u64) {
        for (which, counter, last) in &mut self.mirrored {
            let value = counters[*which as usize];
            counter.add(value.saturating_sub(*last));
            *last = value;
        }
        self.rate_limited.add(rate_limited.saturating_sub(self.rate_limited_last));
        self.rate_limited_last = rate_limited;
    }
}

/// Which tracepoint parts run.
#[derive(Clone, Copy, Debug)]
pub struct Parts {
    /// The drop program is attached.
    pub drops: bool,
    /// The TCP programs are attached.
    pub tcp: bool,
    /// Drop records carry stacks.
    pub stack_trace: bool,
}

/// The task turning drop and TCP events and counters into OTLP.
pub struct TracepointLoop {
    id: ComponentId,
    parts: Parts,
    flush_interval: Duration,
    maps: KernelMaps,
    info: KernelInfo,
    kallsyms: Kallsyms,
    cgroups: Option<Cgroups>,
    metrics: OwnMetrics,
    publisher: Publisher,
    pending: Vec<LogRecord>,
    start_unix_ns: u64,
}

impl TracepointLoop {
    /// A loop over the maps of the loaded programs.
    pub fn new(
        id: ComponentId,
        config: &EbpfReceiverConfig,
        parts: Parts,
        maps: KernelMaps,
        info: KernelInfo,
        registry: &MetricsRegistry,
        publisher: Publisher,
    ) -> Self {
        TracepointLoop {
            metrics: OwnMetrics::new(registry, &id.to_string()),
            id,
            parts,
            flush_interval: config.flush_interval,
            maps,
            info,
            kallsyms: if parts.drops { Kallsyms::load() } else { Kallsyms::default() },
            cgroups: Cgroups::discover(),
            publisher,
            pending: Vec::new(),
            start_unix_ns: clock_now().1,
        }
    }

    /// Runs until `stop`, then reports what is left.
    pub async fn run(mut self, mut events: mpsc::Receiver<KernelEvent>, stop: CancellationToken) {
        let interval = |period| {
            let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
            interval
        };
        let mut hand_on = interval(HAND_ON_INTERVAL);
        let mut flush = interval(self.flush_interval);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                Some(event) = events.recv() => {
                    self.on_event(&event);
                    if self.pending.len() >= RECORD_BATCH {
                        self.hand_on().await;
                    }
                }
                _ = hand_on.tick() => self.hand_on().await,
                _ = flush.tick() => self.flush().await,
            }
        }
        while let Ok(event) = events.try_recv() {
            self.on_event(&event);
        }
        self.hand_on().await;
        self.flush().await;
    }

    fn on_event(&mut self, event: &KernelEvent) {
        let (monotonic_to_unix_ns, now_unix_ns) = clock_now();
        let record = match event {
            KernelEvent::Drop(drop) => {
                let stack = (self.parts.stack_trace && drop.stack_id >= 0).then(|| self.maps.stack(drop.stack_id));
                let ctx = DropContext {
                    enums: &self.info.enums,
                    kallsyms: &self.kallsyms,
                    monotonic_to_unix_ns,
                    now_unix_ns,
                };
                Some(drop_record(drop, stack.flatten().as_deref(), &ctx))
            }
            KernelEvent::Tcp(tcp) => {
                let ctx = TcpContext {
                    formats: &self.info.tcp_formats,
                    enums: &self.info.enums,
                    monotonic_to_unix_ns,
                    now_unix_ns,
                };
                tcp_record(tcp, &ctx, self.cgroups.as_mut())
            }
        };
        match record {
            Some(record) => self.pending.push(record),
            None => {
                self.metrics.unreadable.inc();
                tracing::debug!(receiver = %self.id, "A TCP event's record could not be read; skipped and counted.");
            }
        }
    }

    async fn hand_on(&mut self) {
        if !self.pending.is_empty() {
            let records = std::mem::take(&mut self.pending);
            self.publisher.logs(records).await;
        }
    }

    async fn flush(&mut self) {
        let now = clock_now().1;
        let mut metrics = Vec::new();
        let counters = match self.maps.counters() {
            Ok(counters) => counters,
            Err(err) => {
                tracing::error!(receiver = %self.id, error = %err, "Cannot read the kernel's event counters.");
                return;
            }
        };
        let mut rate_limited = 0;
        if self.parts.drops {
            match self.maps.drop_counts() {
                Ok(entries) => {
                    let totals = DropTotals::sum(
                        &self.info.enums,
                        entries.iter().map(|(key, values)| (*key, values.as_slice())),
                    );
                    rate_limited = totals.rate_limited;
                    metrics.push(totals.metric(self.start_unix_ns, now));
                }
                Err(err) => tracing::error!(receiver = %self.id, error = %err, "Cannot read the drop counters."),
            }
        }
        self.metrics.mirror(&counters, rate_limited);
        if self.parts.tcp {
            match self.maps.histograms() {
                Ok(mut histograms) => {
                    let mut take = |which: Histogram| std::mem::take(&mut histograms[which as usize]);
                    let totals = TcpTotals {
                        retransmits: counters[EventCounter::Retransmits as usize],
                        resets_sent: counters[EventCounter::ResetsSent as usize],
                        resets_received: counters[EventCounter::ResetsReceived as usize],
                        rtt: take(Histogram::Rtt),
                        handshake_client: take(Histogram::HandshakeClient),
                        handshake_server: take(Histogram::HandshakeServer),
                    };
                    metrics.extend(totals.metrics(self.start_unix_ns, now));
                }
                Err(err) => tracing::error!(receiver = %self.id, error = %err, "Cannot read the TCP histograms."),
            }
        }
        self.publisher.metrics(metrics).await;
    }
}
