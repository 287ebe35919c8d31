//! The bounded sending queue in front of each exporter, its consumers, and
//! the retry loop. Every item that leaves without being sent is counted in
//! `flowtel_exporter_dropped_items_total` with its reason.
//!
//! The topology puts one in front of every exporter; an exporter that
//! sends to several backends (`load_balancing`) runs one per backend, and
//! takes back what a backend's queue holds when the backend goes away
//! ([`SendingQueue::retire`]).
//!
//! The bound is room in the queue's unit (bytes, items or batches): a batch
//! takes its room when it is queued and gives it back when a consumer is
//! done with it (sent, or dropped after its retries), so batches being sent
//! or retried count against the bound as much as those waiting.
//!
//! With a `storage`, the queue lives on disk instead ([`durable`]): a batch
//! is queued once it is stored, and forgotten once it was sent or dropped.

mod durable;

use std::sync::Arc;

use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    task::JoinHandle,
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use self::durable::DurableBacklog;
use crate::{
    component::{ExportErrorKind, Exporter},
    export::{Backoff, QueueConfig, RetryConfig, Sizer, decode_protobuf},
    payload::{Encoded, Payload, Signal},
    self_telemetry::{LogLimiter, MetricsRegistry, SignalCounters},
    storage::DurableQueue,
};

/// Room is counted in units of this many bytes under the `bytes` sizer.
const BYTES_PER_UNIT: u64 = 1024;

/// How a queue measures batches.
#[derive(Clone, Copy)]
struct Measure {
    sizer: Sizer,
    /// Room units the queue has.
    capacity: u32,
}

impl Measure {
    fn new(sizer: Sizer, size: u64) -> Self {
        let units = if sizer == Sizer::Bytes { size.div_ceil(BYTES_PER_UNIT) } else { size };
        Measure { sizer, capacity: u32::try_from(units).unwrap_or(u32::MAX).clamp(1, Semaphore::MAX_PERMITS as u32) }
    }

    /// The room a payload takes; one larger than the whole queue takes all of it.
    fn room_of(&self, payload: &Payload) -> u32 {
        let units = match self.sizer {
            Sizer::Bytes => (payload.heap_size() as u64).div_ceil(BYTES_PER_UNIT),
            Sizer::Items => payload.item_count() as u64,
            Sizer::Requests => 1,
        };
        u32::try_from(units).unwrap_or(u32::MAX).clamp(1, self.capacity)
    }

    /// Room units in the sizer's own unit.
    fn in_sizer_unit(&self, units: u64) -> i64 {
        let value = if self.sizer == Sizer::Bytes { units * BYTES_PER_UNIT } else { units };
        i64::try_from(value).unwrap_or(i64::MAX)
    }
}

/// A batch in the queue, with the room it takes.
struct Queued {
    payload: Payload,
    _room: OwnedSemaphorePermit,
}

/// Why an exporter dropped items.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DropReason {
    QueueFull,
    Permanent,
    RetriesExhausted,
    RejectedByBackend,
    Shutdown,
    /// The storage reached its `max_size`.
    StorageFull,
    /// The storage could not write (a full disk, permissions).
    StorageError,
    /// A stored batch that does not decode.
    Unreadable,
}

impl DropReason {
    const ALL: [DropReason; 8] = [
        DropReason::QueueFull,
        DropReason::Permanent,
        DropReason::RetriesExhausted,
        DropReason::RejectedByBackend,
        DropReason::Shutdown,
        DropReason::StorageFull,
        DropReason::StorageError,
        DropReason::Unreadable,
    ];

    fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::Permanent => "permanent_error",
            DropReason::RetriesExhausted => "retries_exhausted",
            DropReason::RejectedByBackend => "rejected_by_backend",
            DropReason::Shutdown => "shutdown",
            DropReason::StorageFull => "storage_full",
            DropReason::StorageError => "storage_error",
            DropReason::Unreadable => "unreadable",
        }
    }
}

#[derive(Clone)]
struct ExporterMetrics {
    sent: SignalCounters,
    send_failed: SignalCounters,
    dropped: Vec<SignalCounters>,
}

impl ExporterMetrics {
    fn new(registry: &MetricsRegistry, name: &QueueName<'_>) -> Self {
        let labels = name.labels();
        let labels = labels.as_slice();
        ExporterMetrics {
            sent: SignalCounters::new(
                registry,
                "flowtel_exporter_sent_items_total",
                "Items the backend accepted.",
                labels,
            ),
            send_failed: SignalCounters::new(
                registry,
                "flowtel_exporter_send_failed_items_total",
                "Items in failed export attempts (retried or dropped).",
                labels,
            ),
            dropped: DropReason::ALL
                .iter()
                .map(|reason| {
                    let mut with_reason = labels.to_vec();
                    with_reason.push(("reason", reason.as_str()));
                    SignalCounters::new(
                        registry,
                        "flowtel_exporter_dropped_items_total",
                        "Items that left an exporter without being sent, by reason.",
                        &with_reason,
                    )
                })
                .collect(),
        }
    }

    fn dropped(&self, reason: DropReason, signal: Signal, items: usize) {
        self.dropped[reason as usize].get(signal).add(items as u64);
    }
}

/// Whose queue it is, for flowtel's own metrics and logs.
#[derive(Clone, Copy, Debug)]
pub struct QueueName<'a> {
    /// The exporter's id (`otlp_grpc/backend`).
    pub exporter: &'a str,
    /// For an exporter with a queue per backend, the backend (`10.0.0.7:4317`).
    pub backend: Option<&'a str>,
}

impl QueueName<'_> {
    fn labels(&self) -> Vec<(&str, &str)> {
        let mut labels = vec![("exporter", self.exporter)];
        labels.extend(self.backend.map(|backend| ("backend", backend)));
        labels
    }
}

impl std::fmt::Display for QueueName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.backend {
            Some(backend) => write!(f, "{} → {backend}", self.exporter),
            None => f.write_str(self.exporter),
        }
    }
}

/// Where queued batches wait: in memory, or stored.
#[derive(Clone)]
enum Backlog {
    Memory { sender: async_channel::Sender<Queued>, room: Arc<Semaphore>, measure: Measure },
    Durable(Arc<DurableBacklog>),
}

/// What became of a payload offered to a queue.
#[derive(Debug)]
pub enum Offer {
    /// Queued (stored, with a storage).
    Queued,
    /// Dropped and counted (full, a storage error, shutdown).
    Dropped,
    /// The queue was retired: the payload is handed back, not counted.
    Retired(Payload),
}

/// The senders' side of a sending queue. Cheap to clone.
#[derive(Clone)]
pub struct QueueInlet {
    id: Arc<str>,
    backlog: Backlog,
    block_on_overflow: bool,
    metrics: ExporterMetrics,
    warning: Arc<LogLimiter>,
    retired: CancellationToken,
}

impl QueueInlet {
    /// Queues a payload; when the queue is full it waits or drops (counted).
    /// Whether it was queued (stored, with a storage).
    pub async fn enqueue(&self, payload: Payload) -> bool {
        match self.offer(payload).await {
            Offer::Queued => true,
            Offer::Dropped => false,
            Offer::Retired(payload) => {
                self.drop_counted(DropReason::Shutdown, payload.signal(), payload.item_count());
                false
            }
        }
    }

    /// [`QueueInlet::enqueue`] that hands the payload back, uncounted, when
    /// the queue was retired (for the caller to send elsewhere).
    pub async fn offer(&self, payload: Payload) -> Offer {
        if self.retired.is_cancelled() {
            return Offer::Retired(payload);
        }
        let signal = payload.signal();
        let items = payload.item_count();
        let queued = match &self.backlog {
            Backlog::Memory { sender, room, measure } => {
                let wanted = measure.room_of(&payload);
                let room = if self.block_on_overflow {
                    room.clone().acquire_many_owned(wanted).await.map_err(|_| DropReason::Shutdown)
                } else {
                    room.clone().try_acquire_many_owned(wanted).map_err(|_| DropReason::QueueFull)
                };
                match room {
                    Ok(room) => match sender.try_send(Queued { payload, _room: room }) {
                        Ok(()) => Ok(()),
                        Err(refused) if self.retired.is_cancelled() => {
                            return Offer::Retired(refused.into_inner().payload);
                        }
                        Err(_) => Err(DropReason::Shutdown),
                    },
                    Err(_) if self.retired.is_cancelled() => return Offer::Retired(payload),
                    Err(reason) => Err(reason),
                }
            }
            Backlog::Durable(backlog) => backlog.push(&payload, self.block_on_overflow).await,
        };
        match queued {
            Ok(()) => Offer::Queued,
            Err(reason) => {
                self.drop_counted(reason, signal, items);
                Offer::Dropped
            }
        }
    }

    fn drop_counted(&self, reason: DropReason, signal: Signal, items: usize) {
        self.metrics.dropped(reason, signal, items);
        if self.warning.due() {
            match reason {
                DropReason::QueueFull => {
                    tracing::warn!(exporter = %self.id, items, "Sending queue is full; dropping data.")
                }
                DropReason::StorageFull | DropReason::StorageError => {
                    tracing::error!(exporter = %self.id, items, "The sending queue's storage could not store data; dropping it (see the storage's error above).")
                }
                _ => tracing::warn!(exporter = %self.id, items, "The exporter has stopped; dropping data."),
            }
        }
    }
}

/// An exporter with its queue and consumer tasks.
pub struct SendingQueue {
    id: Arc<str>,
    exporter: Arc<dyn Exporter>,
    workers: Vec<JoinHandle<()>>,
    hard_stop: CancellationToken,
    inlet: QueueInlet,
    /// The consumers' end of an in-memory queue, to take back what waits.
    waiting: Option<async_channel::Receiver<Queued>>,
    /// What consumers were sending when the queue was retired.
    handed_back: Arc<std::sync::Mutex<Vec<Payload>>>,
}

impl SendingQueue {
    /// Creates the queue (on `storage` when given) and starts its consumers.
    pub fn start(
        name: QueueName<'_>,
        exporter: Arc<dyn Exporter>,
        queue: &QueueConfig,
        retry: &RetryConfig,
        storage: Option<Arc<dyn DurableQueue>>,
        registry: &MetricsRegistry,
    ) -> Self {
        let id: Arc<str> = Arc::from(name.to_string());
        let (sizer, size, consumers, block) = if queue.enabled {
            let (sizer, size) = queue.bound();
            (sizer, size, queue.num_consumers.get(), queue.block_on_overflow)
        } else {
            (Sizer::Requests, 1, 1, true)
        };
        let metrics = ExporterMetrics::new(registry, &name);
        let hard_stop = CancellationToken::new();
        let retired = CancellationToken::new();
        let handed_back = Arc::default();
        let worker = Worker {
            id: id.clone(),
            exporter: exporter.clone(),
            retry: retry.clone(),
            metrics: metrics.clone(),
            hard_stop: hard_stop.clone(),
            retired: retired.clone(),
            handed_back: Arc::clone(&handed_back),
        };
        let mut labels = name.labels();
        labels.push(("unit", sizer.as_str()));
        let capacity = registry.gauge(
            "flowtel_exporter_queue_capacity",
            "The sending queue's bound, in its sizer's unit (bytes, items or requests).",
            &labels,
        );
        let (backlog, workers, waiting): (Backlog, Vec<JoinHandle<()>>, _) = match storage {
            Some(stored) => {
                let backlog = Arc::new(DurableBacklog::new(stored, sizer, size));
                capacity.set(i64::try_from(size).unwrap_or(i64::MAX));
                let observed = backlog.clone();
                registry.observed_gauge(
                    "flowtel_exporter_queue_size",
                    "What the sending queue holds, in its sizer's unit: batches waiting, being sent or retried.",
                    &labels,
                    move || i64::try_from(observed.used()).unwrap_or(i64::MAX),
                );
                let workers =
                    (0..consumers).map(|_| tokio::spawn(worker.clone().run_durable(backlog.clone()))).collect();
                (Backlog::Durable(backlog), workers, None)
            }
            None => {
                let measure = Measure::new(sizer, size);
                // The room bounds the queue; the channel only orders what has room.
                let (sender, receiver) = async_channel::unbounded();
                let room = Arc::new(Semaphore::new(measure.capacity as usize));
                capacity.set(measure.in_sizer_unit(u64::from(measure.capacity)));
                let room_of = room.clone();
                registry.observed_gauge(
                    "flowtel_exporter_queue_size",
                    "What the sending queue holds, in its sizer's unit: batches waiting, being sent or retried.",
                    &labels,
                    move || {
                        let used = u64::from(measure.capacity).saturating_sub(room_of.available_permits() as u64);
                        measure.in_sizer_unit(used)
                    },
                );
                let workers = (0..consumers).map(|_| tokio::spawn(worker.clone().run(receiver.clone()))).collect();
                (Backlog::Memory { sender, room, measure }, workers, Some(receiver))
            }
        };
        let inlet =
            QueueInlet { id: id.clone(), backlog, block_on_overflow: block, metrics, warning: Arc::default(), retired };
        SendingQueue { id, exporter, workers, hard_stop, inlet, waiting, handed_back }
    }

    /// The senders' side.
    pub fn inlet(&self) -> QueueInlet {
        self.inlet.clone()
    }

    /// Stops at once: what waits for room in the queue, or in it, or in a
    /// consumer's retries, is dropped and counted (reason `shutdown`); a
    /// stored queue keeps what it holds for the next start.
    pub fn stop_now(&self) {
        self.close();
        self.hard_stop.cancel();
    }

    fn close(&self) {
        match &self.inlet.backlog {
            Backlog::Memory { sender, room, .. } => {
                room.close();
                sender.close();
            }
            Backlog::Durable(backlog) => backlog.close(),
        }
    }

    /// Items this exporter dropped because flowtel was stopping.
    pub fn dropped_at_shutdown(&self) -> u64 {
        let counters = &self.inlet.metrics.dropped[DropReason::Shutdown as usize];
        Signal::ALL.iter().map(|signal| counters.get(*signal).get()).sum()
    }

    /// Stops the queue and hands back, uncounted, what it holds: batches
    /// waiting, and those its consumers were sending or retrying (an
    /// attempt cut short may have reached the backend: at least once).
    /// Offers made after this get their payload back. For an in-memory
    /// queue; a stored one keeps its batches for the next start.
    pub async fn retire(&mut self) -> Vec<Payload> {
        self.inlet.retired.cancel();
        self.stop_now();
        for worker in std::mem::take(&mut self.workers) {
            let _ = worker.await;
        }
        let mut back = std::mem::take(&mut *self.handed_back.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        if let Some(waiting) = &self.waiting {
            while let Ok(Queued { payload, .. }) = waiting.try_recv() {
                back.push(payload);
            }
        }
        self.exporter.shutdown().await;
        back
    }

    /// Lets the consumers drain the queue until `deadline`, then drops (and
    /// counts) what is left, and shuts the exporter down. A stored queue
    /// only finishes the batches being sent: the rest waits on disk.
    pub async fn shutdown(&mut self, deadline: Instant) {
        match &self.inlet.backlog {
            Backlog::Memory { sender, .. } => {
                sender.close();
            }
            Backlog::Durable(backlog) => backlog.close(),
        }
        let workers = std::mem::take(&mut self.workers);
        let drained = async {
            for worker in workers {
                let _ = worker.await;
            }
        };
        tokio::pin!(drained);
        if tokio::time::timeout_at(deadline, &mut drained).await.is_err() {
            tracing::warn!(exporter = %self.id, "Shutdown deadline reached; dropping what is still queued.");
            self.stop_now();
            drained.await;
        }
        if let Backlog::Durable(backlog) = &self.inlet.backlog {
            let left = backlog.usage();
            if left.records > 0 {
                tracing::info!(exporter = %self.id, items = left.items, batches = left.records, "Items stay in the persistent sending queue; they are sent first at the next start.");
            }
        }
        self.exporter.shutdown().await;
    }
}

#[derive(Clone)]
struct Worker {
    id: Arc<str>,
    exporter: Arc<dyn Exporter>,
    retry: RetryConfig,
    metrics: ExporterMetrics,
    hard_stop: CancellationToken,
    retired: CancellationToken,
    handed_back: Arc<std::sync::Mutex<Vec<Payload>>>,
}

/// How one attempt at a payload ended.
enum Attempt {
    /// Sent, or dropped and counted.
    Finished,
    /// Refused for its size: to be sent in halves.
    TooLarge(Payload),
    /// The queue stopped before it ended.
    Interrupted(Payload),
}

impl Worker {
    async fn run(self, receiver: async_channel::Receiver<Queued>) {
        while let Ok(Queued { payload, _room }) = receiver.recv().await {
            if self.hard_stop.is_cancelled() {
                self.unsent(vec![payload]);
                continue;
            }
            if let Err(left) = self.send(payload).await {
                self.unsent(left);
            }
        }
    }

    /// What a stop left unsent: handed back when the queue was retired,
    /// else dropped and counted.
    fn unsent(&self, payloads: Vec<Payload>) {
        if self.retired.is_cancelled() {
            self.handed_back.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend(payloads);
        } else {
            for payload in payloads {
                self.metrics.dropped(DropReason::Shutdown, payload.signal(), payload.item_count());
            }
        }
    }

    /// Sends stored batches until the queue closes; a batch is forgotten
    /// once sent (or dropped and counted), and one interrupted by a stop
    /// stays stored.
    async fn run_durable(self, backlog: Arc<DurableBacklog>) {
        while let Some(record) = backlog.next(&self.hard_stop).await {
            let decoded = record.bytes.split_first().and_then(|(signal, bytes)| {
                let signal = *Signal::ALL.get(usize::from(*signal))?;
                // An exporter that sends requests as they are gets them so.
                if self.exporter.takes_encoded()
                    && let Ok(encoded) = Encoded::check(signal, bytes.to_vec(), usize::MAX)
                {
                    return Some(Payload::Encoded(encoded));
                }
                decode_protobuf(signal, bytes).ok()
            });
            match decoded {
                Some(payload) => {
                    if self.send(payload).await.is_err() {
                        return;
                    }
                }
                None => {
                    self.metrics.dropped(DropReason::Unreadable, Signal::Logs, record.items as usize);
                    tracing::error!(exporter = %self.id, items = record.items, "A stored batch does not decode as OTLP; dropping it.");
                }
            }
            backlog.done(record.id).await;
        }
    }

    /// Sends one payload, retrying retryable failures as configured; a
    /// payload the backend refuses for its size is sent again in halves.
    /// Hands back what is left unsent when the queue stopped first.
    async fn send(&self, payload: Payload) -> Result<(), Vec<Payload>> {
        let mut pending = vec![payload];
        while let Some(payload) = pending.pop() {
            let items = payload.item_count();
            match self.send_one(payload).await {
                Attempt::Finished => {}
                Attempt::TooLarge(mut too_large) => {
                    let front = too_large.split_front(items / 2);
                    pending.push(too_large);
                    pending.push(front);
                }
                Attempt::Interrupted(payload) => {
                    pending.push(payload);
                    return Err(pending);
                }
            }
        }
        Ok(())
    }

    /// One payload, with its retries.
    async fn send_one(&self, payload: Payload) -> Attempt {
        let signal = payload.signal();
        let items = payload.item_count();
        let started = Instant::now();
        let mut backoff = Backoff::new(&self.retry);
        loop {
            let attempt = tokio::select! {
                result = self.exporter.export(&payload) => result,
                () = self.hard_stop.cancelled() => return Attempt::Interrupted(payload),
            };
            let error = match attempt {
                Ok(outcome) => {
                    let rejected = (outcome.rejected_items as usize).min(items);
                    self.metrics.sent.get(signal).add((items - rejected) as u64);
                    if rejected > 0 {
                        self.metrics.dropped(DropReason::RejectedByBackend, signal, rejected);
                        tracing::warn!(exporter = %self.id, rejected, message = outcome.message.as_deref().unwrap_or(""), "Backend rejected part of a batch.");
                    }
                    return Attempt::Finished;
                }
                Err(error) => error,
            };
            self.metrics.send_failed.get(signal).add(items as u64);
            let throttle = match error.kind {
                ExportErrorKind::TooLarge if items > 1 => {
                    tracing::info!(exporter = %self.id, items, error = %error.message, "Backend refused the batch for its size; sending it in halves.");
                    return Attempt::TooLarge(payload);
                }
                ExportErrorKind::Retryable { throttle } if self.retry.enabled => throttle,
                ExportErrorKind::Retryable { .. } | ExportErrorKind::Permanent | ExportErrorKind::TooLarge => {
                    self.metrics.dropped(DropReason::Permanent, signal, items);
                    tracing::error!(exporter = %self.id, items, error = %error.message, "Export failed and will not be retried; dropping data.");
                    return Attempt::Finished;
                }
            };
            let wait = throttle.unwrap_or_else(|| backoff.next_wait());
            let limit = self.retry.max_elapsed_time;
            if !limit.is_zero() && started.elapsed() + wait > limit {
                self.metrics.dropped(DropReason::RetriesExhausted, signal, items);
                tracing::error!(exporter = %self.id, items, error = %error.message, "Export still failing after max_elapsed_time; dropping data.");
                return Attempt::Finished;
            }
            tracing::info!(exporter = %self.id, items, error = %error.message, wait = ?wait, "Export failed; will retry.");
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.hard_stop.cancelled() => return Attempt::Interrupted(payload),
            }
        }
    }
}
