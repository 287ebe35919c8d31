//! The bounded sending queue in front of each exporter, its consumers, and
//! the retry loop. Every item that leaves without being sent is counted in
//! `flowtel_exporter_dropped_items_total` with its reason.

use std::sync::Arc;

use tokio::{task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::{
    component::{ComponentId, ExportErrorKind, Exporter},
    export::{Backoff, QueueConfig, RetryConfig},
    payload::{Payload, Signal},
    self_telemetry::{MetricsRegistry, SignalCounters},
};

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
    sender: async_channel::Sender<Payload>,
    block_on_overflow: bool,
    metrics: ExporterMetrics,
}

impl ExporterInlet {
    /// Queues a payload; when the queue is full it waits or drops (counted).
    pub(crate) async fn enqueue(&self, payload: Payload) {
        let signal = payload.signal();
        let items = payload.item_count();
        let result = if self.block_on_overflow {
            self.sender.send(payload).await.map_err(|_| ())
        } else {
            self.sender.try_send(payload).map_err(|_| ())
        };
        if result.is_err() {
            self.metrics.dropped(DropReason::QueueFull, signal, items);
            tracing::warn!(exporter = %self.id, items, "Sending queue is full; dropping data.");
        }
    }
}

/// An exporter with its queue and consumer tasks.
pub(crate) struct ExporterQueue {
    id: ComponentId,
    exporter: Arc<dyn Exporter>,
    sender: async_channel::Sender<Payload>,
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
        let (capacity, consumers, block) = if queue.enabled {
            (queue.queue_size.get(), queue.num_consumers.get(), queue.block_on_overflow)
        } else {
            (1, 1, true)
        };
        let (sender, receiver) = async_channel::bounded(capacity);
        let labels = [("exporter", id_text.as_str())];
        registry
            .gauge("flowtel_exporter_queue_capacity", "Batches the sending queue can hold.", &labels)
            .set(capacity as i64);
        let len_of = receiver.clone();
        registry.observed_gauge(
            "flowtel_exporter_queue_size",
            "Batches waiting in the sending queue.",
            &labels,
            move || len_of.len() as i64,
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
            block_on_overflow: block,
            metrics,
        };
        ExporterQueue { id, exporter, sender, workers, hard_stop, inlet }
    }

    pub(crate) fn inlet(&self) -> ExporterInlet {
        self.inlet.clone()
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
            self.hard_stop.cancel();
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
    async fn run(self, receiver: async_channel::Receiver<Payload>) {
        while let Ok(payload) = receiver.recv().await {
            if self.hard_stop.is_cancelled() {
                self.metrics.dropped(DropReason::Shutdown, payload.signal(), payload.item_count());
                continue;
            }
            self.send(payload).await;
        }
    }

    /// Sends one payload, retrying retryable failures as configured.
    async fn send(&self, payload: Payload) {
        let signal = payload.signal();
        let items = payload.item_count();
        let started = Instant::now();
        let mut backoff = Backoff::new(&self.retry);
        loop {
            let attempt = tokio::select! {
                result = self.exporter.export(&payload) => result,
                () = self.hard_stop.cancelled() => {
                    self.metrics.dropped(DropReason::Shutdown, signal, items);
                    return;
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
                    return;
                }
                Err(error) => error,
            };
            self.metrics.send_failed.get(signal).add(items as u64);
            let throttle = match error.kind {
                ExportErrorKind::Retryable { throttle } if self.retry.enabled => throttle,
                ExportErrorKind::Retryable { .. } | ExportErrorKind::Permanent => {
                    self.metrics.dropped(DropReason::Permanent, signal, items);
                    tracing::error!(exporter = %self.id, items, error = %error.message, "Export failed and will not be retried; dropping data.");
                    return;
                }
            };
            let wait = throttle.unwrap_or_else(|| backoff.next_wait());
            let limit = self.retry.max_elapsed_time;
            if !limit.is_zero() && started.elapsed() + wait > limit {
                self.metrics.dropped(DropReason::RetriesExhausted, signal, items);
                tracing::error!(exporter = %self.id, items, error = %error.message, "Export still failing after max_elapsed_time; dropping data.");
                return;
            }
            tracing::info!(exporter = %self.id, items, error = %error.message, wait = ?wait, "Export failed; will retry.");
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.hard_stop.cancelled() => {
                    self.metrics.dropped(DropReason::Shutdown, signal, items);
                    return;
                }
            }
        }
    }
}
