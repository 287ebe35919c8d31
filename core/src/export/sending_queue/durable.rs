//! A sending queue kept in a storage extension: batches are stored as
//! their OTLP export request (a byte for the signal, then the protobuf),
//! handed to the consumers oldest first, and forgotten once sent or
//! dropped. What a crash interrupts is sent again after the restart.

use std::sync::Arc;

use tokio::sync::{Mutex, Notify};
use tokio_util::sync::CancellationToken;

use super::DropReason;
use crate::{
    export::{Sizer, encode_protobuf},
    payload::{Payload, Signal},
    self_telemetry::LogLimiter,
    storage::{DurableQueue, QueueUsage, RecordId, StorageError, StoredRecord},
};

/// A stored queue with its bound.
pub(super) struct DurableBacklog {
    queue: Arc<dyn DurableQueue>,
    sizer: Sizer,
    capacity: u64,
    /// Woken when a batch is stored.
    stored: Notify,
    /// Woken when a batch is done, making room.
    freed: Notify,
    /// Consumers take no more batches; pushes waiting for room give up.
    closing: CancellationToken,
    /// One push at a time, so the bound is checked against what is stored.
    pushing: Mutex<()>,
    error_log: LogLimiter,
}

/// Runs a storage call where blocking is allowed.
async fn blocking<T: Send + 'static>(call: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(call).await.ok()
}

impl DurableBacklog {
    pub(super) fn new(queue: Arc<dyn DurableQueue>, sizer: Sizer, capacity: u64) -> Self {
        DurableBacklog {
            queue,
            sizer,
            capacity,
            stored: Notify::new(),
            freed: Notify::new(),
            closing: CancellationToken::new(),
            pushing: Mutex::new(()),
            error_log: LogLimiter::default(),
        }
    }

    pub(super) fn usage(&self) -> QueueUsage {
        self.queue.usage()
    }

    /// What the queue holds, in its sizer's unit.
    pub(super) fn used(&self) -> u64 {
        self.in_sizer_unit(self.queue.usage())
    }

    fn in_sizer_unit(&self, usage: QueueUsage) -> u64 {
        match self.sizer {
            Sizer::Bytes => usage.bytes,
            Sizer::Items => usage.items,
            Sizer::Requests => usage.records,
        }
    }

    /// Whether a batch fits; one larger than the whole bound fits an empty queue.
    fn fits(&self, bytes: u64, items: u64) -> bool {
        let used = self.used();
        let wanted = self.in_sizer_unit(QueueUsage { records: 1, items, bytes });
        used == 0 || used.saturating_add(wanted) <= self.capacity
    }

    /// Stores a batch, waiting for room when `block`.
    pub(super) async fn push(&self, payload: &Payload, block: bool) -> Result<(), DropReason> {
        let signal = Signal::ALL.iter().position(|s| *s == payload.signal()).unwrap_or_default();
        let mut record = Vec::with_capacity(1 + payload.heap_size());
        record.push(signal as u8);
        record.extend_from_slice(&encode_protobuf(payload));
        let items = payload.item_count() as u64;
        let _pushing = self.pushing.lock().await;
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.closing.is_cancelled() {
                return Err(DropReason::Shutdown);
            }
            if self.fits(record.len() as u64, items) {
                break;
            }
            if !block {
                return Err(DropReason::QueueFull);
            }
            tokio::select! {
                () = freed => {}
                () = self.closing.cancelled() => return Err(DropReason::Shutdown),
            }
        }
        let queue = self.queue.clone();
        let result = blocking(move || queue.push(&record, items))
            .await
            .unwrap_or_else(|| Err(StorageError::Io("the storage call panicked".into())));
        match result {
            Ok(()) => {
                self.stored.notify_waiters();
                Ok(())
            }
            Err(error) => {
                if self.error_log.due() {
                    tracing::error!(%error, "The persistent sending queue could not store a batch.");
                }
                Err(match error {
                    StorageError::Full { .. } => DropReason::StorageFull,
                    StorageError::Io(_) => DropReason::StorageError,
                })
            }
        }
    }

    /// The next stored batch, waiting for one; `None` once the queue closes
    /// or `stop` is cancelled.
    pub(super) async fn next(&self, stop: &CancellationToken) -> Option<StoredRecord> {
        loop {
            let stored = self.stored.notified();
            tokio::pin!(stored);
            stored.as_mut().enable();
            if self.closing.is_cancelled() || stop.is_cancelled() {
                return None;
            }
            let queue = self.queue.clone();
            if let Some(record) = blocking(move || queue.pop()).await.flatten() {
                return Some(record);
            }
            tokio::select! {
                () = stored => {}
                () = self.closing.cancelled() => return None,
                () = stop.cancelled() => return None,
            }
        }
    }

    /// Forgets a batch that was sent or dropped, making room.
    pub(super) async fn done(&self, id: RecordId) {
        let queue = self.queue.clone();
        blocking(move || queue.done(id)).await;
        self.freed.notify_waiters();
    }

    /// Consumers stop taking batches; pushes waiting for room give up.
    pub(super) fn close(&self) {
        self.closing.cancel();
    }
}
