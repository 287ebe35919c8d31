//! Durable storage for sending queues: what a storage extension
//! (`file_storage`) offers, and what an exporter's queue asks of it.
//!
//! A durable queue holds opaque records in the order they were pushed. A
//! record handed out by [`DurableQueue::pop`] stays stored until it is
//! marked [`DurableQueue::done`], so a crash between the two sends it
//! again after the restart: delivery is at least once.

use std::sync::Arc;

use crate::self_telemetry::MetricsRegistry;

/// Where sending queues keep their records.
pub trait Storage: Send + Sync {
    /// Opens the queue `name` (an exporter's), creating it when new. What
    /// an earlier run stored and did not finish comes out first.
    fn open_queue(&self, name: &str, registry: &MetricsRegistry) -> Result<Arc<dyn DurableQueue>, StorageError>;
}

/// Which stored record, as the queue that handed it out knows it.
pub type RecordId = u64;

/// A record handed out by [`DurableQueue::pop`].
#[derive(Debug)]
pub struct StoredRecord {
    /// What to pass to [`DurableQueue::done`].
    pub id: RecordId,
    /// Its items, as pushed.
    pub items: u64,
    /// The bytes pushed.
    pub bytes: Vec<u8>,
}

/// What a durable queue holds, records handed out and not done included.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueUsage {
    /// Records.
    pub records: u64,
    /// Items, as their pushers counted them.
    pub items: u64,
    /// Bytes of the records.
    pub bytes: u64,
}

/// A queue of records that outlives the process. Its calls do file I/O:
/// call them where blocking is allowed.
pub trait DurableQueue: Send + Sync {
    /// Stores one record of `items` items; once it returns, the record
    /// survives the process.
    fn push(&self, record: &[u8], items: u64) -> Result<(), StorageError>;

    /// The oldest record not handed out yet, if any. Records the storage
    /// cannot read back are skipped and counted by the storage itself.
    fn pop(&self) -> Option<StoredRecord>;

    /// Forgets a record handed out: sent, or dropped and counted.
    fn done(&self, id: RecordId);

    /// What the queue holds.
    fn usage(&self) -> QueueUsage;
}

/// Why a record was not stored.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The storage reached its configured size.
    #[error("the storage holds {limit} bytes, its `max_size`")]
    Full {
        /// The configured bound.
        limit: u64,
    },
    /// The file system refused (a full disk, permissions).
    #[error("{0}")]
    Io(String),
}
