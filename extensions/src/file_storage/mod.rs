//! The `file_storage` extension: keeps sending queues on disk, so what an
//! exporter has not sent survives a restart, `kill -9` or a crash.
//!
//! Each queue is a folder of segment files (see [`log`]) under
//! `directory`; the folder is locked while flowtel runs, so two processes
//! never share a queue.

mod config;
mod log;
#[cfg(test)]
mod tests;

use std::{
    fs::{self, File},
    sync::{Arc, Mutex, PoisonError, atomic::AtomicU64},
};

use async_trait::async_trait;
use flowtel_core::{
    ComponentKind,
    component::{ComponentError, Extension, ExtensionContext},
    self_telemetry::MetricsRegistry,
    storage::{DurableQueue, Storage, StorageError},
};

pub use self::config::{CompactionConfig, FileStorageConfig};
use self::log::{DiskBudget, LogOptions, LossCounters, SegmentLog};

/// Segments are this share of `max_size`, within the bounds below.
const SEGMENTS_PER_STORAGE: u64 = 16;
const MIN_SEGMENT: u64 = 16 * 1024;
const MAX_SEGMENT: u64 = 32 << 20;

const LOCK_FILE: &str = ".lock";

/// The `file_storage` extension.
pub struct FileStorage {
    config: FileStorageConfig,
    started: Mutex<Option<Arc<OpenStorage>>>,
}

/// A started storage: its locked folder and shared disk budget.
struct OpenStorage {
    id: String,
    config: FileStorageConfig,
    budget: Arc<DiskBudget>,
    /// Held for the lock on the folder.
    _lock: File,
}

impl FileStorage {
    /// A storage with its settings; nothing is touched before start.
    pub fn new(config: FileStorageConfig) -> Self {
        FileStorage { config, started: Mutex::new(None) }
    }
}

fn prepare_directory(config: &FileStorageConfig) -> Result<File, String> {
    let dir = &config.directory;
    if !dir.is_dir() {
        if !config.create_directory {
            return Err(format!(
                "directory {} does not exist; create it or set `create_directory: true`",
                dir.display()
            ));
        }
        fs::create_dir_all(dir).map_err(|err| format!("cannot create directory {}: {err}", dir.display()))?;
    }
    let lock_path = dir.join(LOCK_FILE);
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|err| format!("cannot write in {}: {err}", dir.display()))?;
    lock.try_lock().map_err(|_| format!("{} is in use by another flowtel process", dir.display()))?;
    if config.recreate {
        for entry in fs::read_dir(dir).map_err(|err| format!("cannot list {}: {err}", dir.display()))?.flatten() {
            if entry.path().is_dir() {
                fs::remove_dir_all(entry.path())
                    .map_err(|err| format!("cannot delete {}: {err}", entry.path().display()))?;
            }
        }
    }
    Ok(lock)
}

#[async_trait]
impl Extension for FileStorage {
    async fn start(&self, ctx: ExtensionContext) -> Result<(), ComponentError> {
        let lock = prepare_directory(&self.config)
            .map_err(|message| ComponentError::new(ComponentKind::Extension, &ctx.id, message))?;
        let id = ctx.id.to_string();
        let budget = Arc::new(DiskBudget { used: AtomicU64::new(0), limit: self.config.max_size.as_u64() });
        let labels = [("extension", id.as_str())];
        ctx.metrics
            .gauge(
                "flowtel_file_storage_capacity_bytes",
                "The bytes on disk a storage's queues may take (max_size).",
                &labels,
            )
            .set(i64::try_from(budget.limit).unwrap_or(i64::MAX));
        let observed = budget.clone();
        ctx.metrics.observed_gauge(
            "flowtel_file_storage_used_bytes",
            "The bytes on disk a storage's queues take.",
            &labels,
            move || i64::try_from(observed.used.load(std::sync::atomic::Ordering::Relaxed)).unwrap_or(i64::MAX),
        );
        tracing::info!(extension = %id, directory = %self.config.directory.display(), max_size = %self.config.max_size, fsync = self.config.fsync, "Persistent queue storage ready.");
        let open = OpenStorage { id, config: self.config.clone(), budget, _lock: lock };
        *self.started.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(open));
        Ok(())
    }

    async fn shutdown(&self) {
        self.started.lock().unwrap_or_else(PoisonError::into_inner).take();
    }

    fn storage(&self) -> Option<Arc<dyn Storage>> {
        let open = self.started.lock().unwrap_or_else(PoisonError::into_inner).clone()?;
        Some(open)
    }
}

/// A queue name as a folder name: letters, digits, `_`, `-` and `.` kept.
fn folder_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') { c } else { '_' }).collect()
}

impl Storage for OpenStorage {
    fn open_queue(&self, name: &str, registry: &MetricsRegistry) -> Result<Arc<dyn DurableQueue>, StorageError> {
        let folder = folder_name(name);
        let labels = [("extension", self.id.as_str()), ("queue", folder.as_str())];
        let lost = |reason: &str| {
            registry.counter(
                "flowtel_file_storage_lost_items_total",
                "Items of stored batches that could not be read back, by reason (corrupt, truncated).",
                &[labels[0], labels[1], ("reason", reason)],
            )
        };
        let losses = LossCounters {
            corrupt_items: lost("corrupt"),
            truncated_items: lost("truncated"),
            skipped_bytes: registry.counter(
                "flowtel_file_storage_skipped_bytes_total",
                "Damaged bytes of a queue's files skipped where no valid batch header was found.",
                &labels,
            ),
        };
        let segment_size = (self.config.max_size.as_u64() / SEGMENTS_PER_STORAGE).clamp(MIN_SEGMENT, MAX_SEGMENT);
        let options = LogOptions {
            fsync: self.config.fsync,
            segment_size,
            compact_on_start: self.config.compaction.on_start,
            compact_on_rebound: self.config.compaction.on_rebound,
        };
        let log = SegmentLog::open(self.config.directory.join(&folder), options, self.budget.clone(), losses)?;
        let usage = log.usage();
        if usage.records > 0 {
            tracing::info!(queue = %folder, items = usage.items, batches = usage.records, "Stored batches from an earlier run will be sent first.");
        }
        Ok(Arc::new(log))
    }
}
