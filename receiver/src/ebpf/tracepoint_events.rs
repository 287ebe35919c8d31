//! The drop and TCP programs' shared event stream: one task reads it,
//! hands each event to its family's reader (`drops::read`, `tcp::read`),
//! and every flush reads the families' counters into metrics.

use std::time::Duration;

use flowtel_core::{
    ComponentId,
    schema::{attr, event, metric},
    self_telemetry::{Counter, MetricsRegistry},
};
use flowtel_ebpf_common::{EVENT_COUNTERS, EventCounter};
use opentelemetry_proto::tonic::{logs::v1::LogRecord, trace::v1::Span};
use tokio::{sync::mpsc, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use super::{
    drops::{convert::DROP_SERIES, read::DropReader},
    exemplars::{Exemplars, Sample},
    kernel::{
        clock::{clock_now, interval},
        events::{self, EventLoss, KERNEL_STREAM, KernelEvent},
        loader::{EbpfError, KernelMaps, Probes},
    },
    publish::Publisher,
    tcp::read::TcpReader,
};

/// Batches of events waiting between the stream's readers and the task.
const EVENT_QUEUE: usize = 16_384 / crate::ebpf::kernel::events::EVENT_BATCH;
/// Records handed on at once at most; more wait for the next hand-over.
const RECORD_BATCH: usize = 1024;
/// How often records are handed on.
const HAND_ON_INTERVAL: Duration = Duration::from_millis(250);

/// The families on this stream that run (`None`: not attached).
pub struct Readers {
    /// The drop program's.
    pub drops: Option<DropReader>,
    /// The TCP programs'.
    pub tcp: Option<TcpReader>,
}

/// Where the task's output and own metrics go.
pub struct Output<'a> {
    /// The receiver.
    pub id: &'a ComponentId,
    /// flowtel's own metrics.
    pub registry: &'a MetricsRegistry,
    /// The receiver's pipelines.
    pub publisher: Publisher,
}

/// Takes the stream and the counting maps out of `probes` and starts the
/// stream's readers and the task; they run until `stop`.
pub fn start(
    probes: &mut Probes,
    readers: Readers,
    flush_interval: Duration,
    output: Output<'_>,
    stop: CancellationToken,
) -> Result<Vec<JoinHandle<()>>, EbpfError> {
    let maps = probes.take_kernel_maps()?;
    let id = output.id.to_string();
    let lost = |reason: &str| kernel_events_lost(output.registry, &id, reason);
    let (sender, events) = mpsc::channel(EVENT_QUEUE);
    let transport = probes.transport();
    let mut tasks = events::start(
        probes.ebpf_mut(),
        KERNEL_STREAM,
        transport,
        events::decode_kernel_event,
        sender,
        EventLoss::new(&lost),
        stop.clone(),
    )?;
    let run = TracepointLoop {
        metrics: OwnMetrics::new(output.registry, &id),
        id: output.id.clone(),
        readers,
        flush_interval,
        maps,
        publisher: output.publisher,
        pending: Vec::new(),
        pending_spans: Vec::new(),
        exemplars: Exemplars::default(),
        start_unix_ns: clock_now().1,
    };
    tasks.push(tokio::spawn(run.run(events, stop)));
    Ok(tasks)
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
        let filtered = |kind: &str| {
            registry.counter(
                "flowtel_ebpf_kernel_events_filtered_out_total",
                "Drops, and TCP tracepoint hits, the receiver's filter did not match (neither counted nor sent), by kind.",
                &[("receiver", id), ("kind", kind)],
            )
        };
        OwnMetrics {
            mirrored: vec![
                (EventCounter::DropsFilteredOut, filtered("drop"), 0),
                (EventCounter::TcpFilteredOut, filtered("tcp"), 0),
                (
                    EventCounter::TcpSampledOut,
                    registry.counter(
                        "flowtel_ebpf_tcp_events_sampled_out_total",
                        "TCP events counted in the TCP metrics but not sent as records: sampled out under pressure (tcp.max_events_per_second, a filling ring buffer).",
                        &[("receiver", id)],
                    ),
                    0,
                ),
                (EventCounter::RingBufferFull, lost("ring_buffer_full"), 0),
                (EventCounter::DropRingBufferFull, lost("ring_buffer_full"), 0),
                (EventCounter::SocketMapFull, failures("tcp_sockets"), 0),
                (EventCounter::DropCountMapFull, failures("drop_counts"), 0),
                (EventCounter::JourneyRingBufferFull, lost("ring_buffer_full"), 0),
                (
                    EventCounter::JourneysOverBudget,
                    registry.counter(
                        "flowtel_ebpf_journeys_over_budget_total",
                        "Packet journeys that ended but were not exported: over journeys.max_per_second.",
                        &[("receiver", id)],
                    ),
                    0,
                ),
            ],
            rate_limited: registry.counter(
                "flowtel_ebpf_drop_events_rate_limited_total",
                "Drops counted in network.packet.drops but not sent as records: sampled out under pressure (max_events_per_second, a filling ring buffer).",
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

/// The task turning drop and TCP events and counters into OTLP.
struct TracepointLoop {
    id: ComponentId,
    readers: Readers,
    flush_interval: Duration,
    maps: KernelMaps,
    metrics: OwnMetrics,
    publisher: Publisher,
    pending: Vec<LogRecord>,
    /// Journeys not yet handed on.
    pending_spans: Vec<Span>,
    /// Traced records, for the next metrics' points.
    exemplars: Exemplars,
    start_unix_ns: u64,
}

impl TracepointLoop {
    /// Runs until `stop`, then reports what is left.
    async fn run(mut self, mut events: mpsc::Receiver<Vec<KernelEvent>>, stop: CancellationToken) {
        let mut hand_on = interval(HAND_ON_INTERVAL);
        let mut flush = interval(self.flush_interval);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                Some(batch) = events.recv() => {
                    for event in &batch {
                        self.on_event(event);
                    }
                    if self.pending.len() + self.pending_spans.len() >= RECORD_BATCH {
                        self.hand_on().await;
                    }
                }
                _ = hand_on.tick() => self.hand_on().await,
                _ = flush.tick() => self.flush().await,
            }
        }
        while let Ok(batch) = events.try_recv() {
            for event in &batch {
                self.on_event(event);
            }
        }
        self.hand_on().await;
        self.flush().await;
    }

    fn on_event(&mut self, event: &KernelEvent) {
        let clock = clock_now();
        match event {
            KernelEvent::Drop(drop) => {
                if let Some(drops) = &self.readers.drops {
                    let record = drops.record(drop, &self.maps, clock);
                    self.exemplars.offer(metric::PACKET_DROPS.name, &DROP_SERIES, &record, Sample::Int(1));
                    self.pending.push(record);
                }
            }
            KernelEvent::Journey(journey) => {
                if let Some(drops) = &self.readers.drops {
                    self.pending_spans.push(drops.journey(journey, clock));
                }
            }
            KernelEvent::Tcp(tcp) => {
                let Some(reader) = &mut self.readers.tcp else { return };
                match reader.record(tcp, clock) {
                    Some(record) => {
                        self.offer_tcp_exemplars(&record);
                        self.pending.push(record);
                    }
                    None => {
                        self.metrics.unreadable.inc();
                        tracing::debug!(receiver = %self.id, "A TCP event's record could not be read; skipped and counted.");
                    }
                }
            }
        }
    }

    /// A traced TCP record as an exemplar of the TCP metrics it counts in.
    fn offer_tcp_exemplars(&mut self, record: &LogRecord) {
        let exemplars = &mut self.exemplars;
        if record.event_name == event::TCP_RETRANSMIT {
            let segments = Sample::Attribute(attr::NETWORK_TCP_RETRANSMIT_SEGMENTS);
            exemplars.offer(metric::TCP_RETRANSMITS.name, &[], record, segments);
        } else if record.event_name == event::TCP_CONNECTION {
            exemplars.offer(metric::TCP_RTT.name, &[], record, Sample::Attribute(attr::NETWORK_TCP_SRTT));
            let handshake = Sample::Attribute(attr::NETWORK_TCP_HANDSHAKE_DURATION);
            exemplars.offer(metric::TCP_HANDSHAKE_DURATION.name, &[attr::NETWORK_TCP_SIDE], record, handshake);
        }
    }

    async fn hand_on(&mut self) {
        if !self.pending.is_empty() {
            let records = std::mem::take(&mut self.pending);
            self.publisher.logs(records).await;
        }
        if !self.pending_spans.is_empty() {
            let spans = std::mem::take(&mut self.pending_spans);
            self.publisher.spans(spans).await;
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
        if let Some(drops) = &self.readers.drops {
            match drops.metric(&self.maps, self.start_unix_ns, now) {
                Ok((metric, limited)) => {
                    rate_limited = limited;
                    metrics.push(metric);
                }
                Err(err) => tracing::error!(receiver = %self.id, error = %err, "Cannot read the drop counters."),
            }
        }
        self.metrics.mirror(&counters, rate_limited);
        if let Some(tcp) = &self.readers.tcp {
            match tcp.metrics(&self.maps, &counters, self.start_unix_ns, now) {
                Ok(tcp_metrics) => metrics.extend(tcp_metrics),
                Err(err) => tracing::error!(receiver = %self.id, error = %err, "Cannot read the TCP histograms."),
            }
        }
        self.exemplars.attach(&mut metrics);
        self.publisher.metrics(metrics).await;
    }
}
