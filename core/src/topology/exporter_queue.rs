//! The bounded sending queue in front of each exporter, its consumers, and
//! the retry loop. Every item that leaves without being sent is counted in
//! `flowtel_exporter_dropped_items_total` with its reason.
//!
//! The bound is room in the queue's unit (bytes, items or batches): a batch
//! takes its room when it is queued and gives it back when a consumer is
//! done with it (sent, or dropped after its retries), so batches being sent
//! or retried count against the bound as much as those waiting.

use std::sync::Arc;

use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    task::JoinHandle,
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use crate::{
    component::{ComponentId, ExportErrorKind, Exporter},
    export::{Backoff, QueueConfig, RetryConfig, Sizer},
    payload::{Payload, Signal},
    self_telemetry::{MetricsRegistry, SignalCounters},
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
#[derive(Clone, Copy)]
enum DropReason {
    QueueFull,
    Permanent,
    RetriesExhausted,
    RejectedByBackend,
    Shutdown,
}

impl DropReason {
    const ALL: [DropReason; 5] = [
        DropReason::QueueFull,
        DropReason::Permanent,
        DropReason::RetriesExhausted,
        DropReason::RejectedByBackend,
        DropReason::Shutdown,
    ];

    fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::Permanent => "permanent_error",
            DropReason::RetriesExhausted => "retries_exhausted",
            DropReason::RejectedByBackend => "rejected_by_backend",
            DropReason::Shutdown => "shutdown",
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
    fn new(registry: &MetricsRegistry, id: &str) -> Self {
        let labels = [("exporter", id)];
        ExporterMetrics {
            sent: SignalCounters::new(
                registry,
                "flowtel_exporter_sent_items_total",
                "Items the backend accepted.",
                &labels,
            ),
            send_failed: SignalCounters::new(
                registry,
                "flowtel_exporter_send_failed_items_total",
                "Items in failed export attempts (retried or dropped).",
                &labels,
            ),
            dropped: DropReason::ALL
                .iter()
                .map(|reason| {
                    SignalCounters::new(
                        registry,
                        "flowtel_exporter_dropped_items_total",
                        "Items that left an exporter without being sent, by reason.",
                        &[("exporter", id), ("reason", reason.as_str())],
                    )
                })
                .collect(),
        }
    }

    fn dropped(&self, reason: DropReason, signal: Signal, items: usize) {
        self.dropped[reason as usize].get(signal).add(items as u64);
    }
}

/// The pipelines' side of an exporter queue.
#[derive(Clone)]
pub(crate) struct ExporterInlet {
    id: Arc<str>,
    sender: async_channel::Sender<Queued>,
    room: Arc<Semaphore>,
    measure: Measure,
    block_on_overflow: bool,
    metrics: ExporterMetrics,
}

impl ExporterInlet {
    /// Queues a payload; when the queue is full it waits or drops (counted).
    pub(crate) async fn enqueue(&self, payload: Payload) {
        let signal = payload.signal();
        let items = payload.item_count();
        let wanted = self.measure.room_of(&payload);
        let room = if self.block_on_overflow {
            self.room.clone().acquire_many_owned(wanted).await.map_err(|_| DropReason::Shutdown)
        } else {
            self.room.clone().try_acquire_many_owned(wanted).map_err(|_| DropReason::QueueFull)
        };
        let queued = room
            .and_then(|room| self.sender.try_send(Queued { payload, _room: room }).map_err(|_| DropReason::Shutdown));
        if let Err(reason) = queued {
            self.metrics.dropped(reason, signal, items);
            match reason {
                DropReason::QueueFull => {
                    tracing::warn!(exporter = %self.id, items, "Sending queue is full; dropping data.")
                }
                _ => tracing::warn!(exporter = %self.id, items, "The exporter has stopped; dropping data."),
            }
        }
    }
}

/// An exporter with its queue and consumer tasks.
pub(crate) struct ExporterQueue {
    id: ComponentId,
    exporter: Arc<dyn Exporter>,
    sender: async_channel::Sender<Queued>,
    workers: Vec<JoinHandle<()>>,
    hard_stop: CancellationToken,
    inlet: ExporterInlet,
}

impl ExporterQueue {
    /// Creates the queue and starts its consumers.
    pub(crate) fn start(
        id: ComponentId,
        exporter: Arc<dyn Exporter>,
        queue: &QueueConfig,
        retry: &RetryConfig,
        registry: &MetricsRegistry,
    ) -> Self {
        let id_text = id.to_string();
        let (measure, consumers, block) = if queue.enabled {
            let (sizer, size) = queue.bound();
            (Measure::new(sizer, size), queue.num_consumers.get(), queue.block_on_overflow)
        } else {
            (Measure::new(Sizer::Requests, 1), 1, true)
        };
        // The room bounds the queue; the channel only orders what has room.
        let (sender, receiver) = async_channel::unbounded();
        let room = Arc::new(Semaphore::new(measure.capacity as usize));
        let labels = [("exporter", id_text.as_str()), ("unit", measure.sizer.as_str())];
        registry
            .gauge(
                "flowtel_exporter_queue_capacity",
                "The sending queue's bound, in its sizer's unit (bytes, items or requests).",
                &labels,
            )
            .set(measure.in_sizer_unit(u64::from(measure.capacity)));
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
        let metrics = ExporterMetrics::new(registry, &id_text);
        let hard_stop = CancellationToken::new();
        let worker = Worker {
            id: Arc::from(id_text.as_str()),
            exporter: exporter.clone(),
            retry: retry.clone(),
            metrics: metrics.clone(),
            hard_stop: hard_stop.clone(),
        };
        let workers = (0..consumers).map(|_| tokio::spawn(worker.clone().run(receiver.clone()))).collect();
        let inlet = ExporterInlet {
            id: Arc::from(id_text.as_str()),
            sender: sender.clone(),
            room,
            measure,
            block_on_overflow: block,
            metrics,
        };
        ExporterQueue { id, exporter, sender, workers, hard_stop, inlet }
    }

    pub(crate) fn inlet(&self) -> ExporterInlet {
        self.inlet.clone()
    }

    /// Stops at once: what waits for room in the queue, or in it, or in a
    /// consumer's retries, is dropped and counted (reason `shutdown`).
    pub(crate) fn stop_now(&self) {
        self.inlet.room.close();
        self.hard_stop.cancel();
    }

    /// Items this exporter dropped because flowtel was stopping.
    pub(crate) fn dropped_at_shutdown(&self) -> u64 {
        let counters = &self.inlet.metrics.dropped[DropReason::Shutdown as usize];
        [Signal::Logs, Signal::Metrics, Signal::Traces].iter().map(|signal| counters.get(*signal).get()).sum()
    }

    /// Lets the consumers drain the queue until `deadline`, then drops (and
    /// counts) what is left, and shuts the exporter down.
    pub(crate) async fn shutdown(&mut self, deadline: Instant) {
        self.sender.close();
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
}

impl Worker {
    async fn run(self, receiver: async_channel::Receiver<Queued>) {
        while let Ok(Queued { payload, _room }) = receiver.recv().await {
            if self.hard_stop.is_cancelled() {
                self.metrics.dropped(DropReason::Shutdown, payload.signal(), payload.item_count());
                continue;
            }
            self.send(payload).await;
        }
    }

    /// Sends one payload, retrying retryable failures as configured; a
    /// payload the backend refuses for its size is sent again in halves.
    async fn send(&self, payload: Payload) {
        let mut pending = vec![payload];
        while let Some(payload) = pending.pop() {
            if let Some(mut too_large) = self.send_one(payload).await {
                let items = too_large.item_count();
                let front = too_large.split_front(items / 2);
                pending.push(too_large);
                pending.push(front);
            }
        }
    }

    /// One payload, with its retries; hands it back when the backend refuses
    /// it for its size and it can be split.
    async fn send_one(&self, payload: Payload) -> Option<Payload> {
        let signal = payload.signal();
        let items = payload.item_count();
        let started = Instant::now();
        let mut backoff = Backoff::new(&self.retry);
        loop {
            let attempt = tokio::select! {
                result = self.exporter.export(&payload) => result,
                () = self.hard_stop.cancelled() => {
                    self.metrics.dropped(DropReason::Shutdown, signal, items);
                    return None;
                }
            };
            let error = match attempt {
                Ok(outcome) => {
                    let rejected = (outcome.rejected_items as usize).min(items);
                    self.metrics.sent.get(signal).add((items - rejected) as u64);
                    if rejected > 0 {
                        self.metrics.dropped(DropReason::RejectedByBackend, signal, rejected);
                        tracing::warn!(exporter = %self.id, rejected, message = outcome.message.as_deref().unwrap_or(""), "Backend rejected part of a batch.");
                    }
                    return None;
                }
                Err(error) => error,
            };
            self.metrics.send_failed.get(signal).add(items as u64);
            let throttle = match error.kind {
                ExportErrorKind::TooLarge if items > 1 => {
                    tracing::info!(exporter = %self.id, items, error = %error.message, "Backend refused the batch for its size; sending it in halves.");
                    return Some(payload);
                }
                ExportErrorKind::Retryable { throttle } if self.retry.enabled => throttle,
                ExportErrorKind::Retryable { .. } | ExportErrorKind::Permanent | ExportErrorKind::TooLarge => {
                    self.metrics.dropped(DropReason::Permanent, signal, items);
                    tracing::error!(exporter = %self.id, items, error = %error.message, "Export failed and will not be retried; dropping data.");
                    return None;
                }
            };
            let wait = throttle.unwrap_or_else(|| backoff.next_wait());
            let limit = self.retry.max_elapsed_time;
            if !limit.is_zero() && started.elapsed() + wait > limit {
                self.metrics.dropped(DropReason::RetriesExhausted, signal, items);
                tracing::error!(exporter = %self.id, items, error = %error.message, "Export still failing after max_elapsed_time; dropping data.");
                return None;
            }
            tracing::info!(exporter = %self.id, items, error = %error.message, wait = ?wait, "Export failed; will retry.");
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.hard_stop.cancelled() => {
                    self.metrics.dropped(DropReason::Shutdown, signal, items);
                    return None;
                }
            }
        }
    }
}
