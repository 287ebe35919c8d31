use std::{path::Path, sync::Arc};

use bytesize::ByteSize;
use flowtel_core::{
    ComponentId,
    component::{Extension, ExtensionContext},
    self_telemetry::MetricsRegistry,
    storage::{DurableQueue, StorageError},
};

use super::*;

fn config(dir: &Path) -> FileStorageConfig {
    FileStorageConfig { directory: dir.to_path_buf(), max_size: ByteSize::mib(1), ..FileStorageConfig::default() }
}

async fn started(config: FileStorageConfig) -> (FileStorage, Arc<MetricsRegistry>) {
    let storage = FileStorage::new(config);
    let registry = Arc::new(MetricsRegistry::new());
    let id: ComponentId = "file_storage".parse().unwrap();
    storage.start(ExtensionContext { id, metrics: registry.clone() }).await.unwrap();
    (storage, registry)
}

fn open(storage: &FileStorage, registry: &MetricsRegistry) -> Arc<dyn DurableQueue> {
    storage.storage().unwrap().open_queue("exporter_otlp_grpc", registry).unwrap()
}

fn record(n: u32) -> Vec<u8> {
    format!("batch {n:04} ").repeat(20).into_bytes()
}

/// Pops everything, marking it done; the batch numbers.
fn drain(queue: &dyn DurableQueue) -> Vec<u32> {
    let mut seen = Vec::new();
    while let Some(stored) = queue.pop() {
        let text = String::from_utf8(stored.bytes).unwrap();
        seen.push(text[6..10].parse().unwrap());
        queue.done(stored.id);
    }
    seen
}

fn counter(registry: &MetricsRegistry, name: &str, reason: Option<&str>) -> u64 {
    registry
        .samples()
        .iter()
        .filter(|s| s.name == name && reason.is_none_or(|r| s.labels.iter().any(|(k, v)| k == "reason" && v == r)))
        .map(|s| s.value as u64)
        .sum()
}

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("exporter_otlp_grpc"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn what_was_not_done_comes_back_after_a_restart_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (storage, registry) = started(config(dir.path())).await;
    let queue = open(&storage, &registry);
    for n in 0..10 {
        queue.push(&record(n), 3).unwrap();
    }
    assert_eq!(queue.usage().items, 30);
    // Three sent, one handed out and not finished (a crash mid-send).
    for _ in 0..3 {
        let stored = queue.pop().unwrap();
        queue.done(stored.id);
    }
    let _in_flight = queue.pop().unwrap();
    drop(queue);
    storage.shutdown().await;

    let (storage, registry) = started(config(dir.path())).await;
    let queue = open(&storage, &registry);
    assert_eq!(queue.usage().records, 7);
    queue.push(&record(10), 3).unwrap();
    assert_eq!(drain(queue.as_ref()), (3..=10).collect::<Vec<_>>());
    assert_eq!(queue.usage(), flowtel_core::storage::QueueUsage::default());
}

#[tokio::test]
async fn a_second_process_cannot_use_the_same_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (_first, _) = started(config(dir.path())).await;
    let second = FileStorage::new(config(dir.path()));
    let id: ComponentId = "file_storage/b".parse().unwrap();
    let err = second.start(ExtensionContext { id, metrics: Arc::new(MetricsRegistry::new()) }).await.unwrap_err();
    assert!(err.to_string().contains("in use by another flowtel process"), "{err}");
}

#[tokio::test]
async fn a_missing_directory_is_an_error_unless_created() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("a/b");
    let storage = FileStorage::new(config(&missing));
    let id: ComponentId = "file_storage".parse().unwrap();
    let err = storage.start(ExtensionContext { id: id.clone(), metrics: Arc::new(MetricsRegistry::new()) }).await;
    assert!(err.unwrap_err().to_string().contains("create_directory: true"));
    let storage = FileStorage::new(FileStorageConfig { create_directory: true, ..config(&missing) });
    storage.start(ExtensionContext { id, metrics: Arc::new(MetricsRegistry::new()) }).await.unwrap();
    assert!(missing.is_dir());
}

#[tokio::test]
async fn damaged_and_cut_off_batches_are_skipped_and_counted_and_the_rest_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let (storage, registry) = started(config(dir.path())).await;
    let queue = open(&storage, &registry);
    for n in 0..6 {
        queue.push(&record(n), 2).unwrap();
    }
    drop(queue);
    storage.shutdown().await;

    let file = segments(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    let frame = bytes.len() / 6;
    bytes[frame + 40] ^= 0xff; // batch 1's payload
    bytes[2 * frame + 5] ^= 0xff; // batch 2's header
    bytes.truncate(bytes.len() - 7); // batch 5 cut off
    std::fs::write(&file, &bytes).unwrap();

    let (storage, registry) = started(config(dir.path())).await;
    let queue = open(&storage, &registry);
    assert_eq!(drain(queue.as_ref()), vec![0, 3, 4]);
    assert_eq!(counter(&registry, "flowtel_file_storage_lost_items_total", Some("corrupt")), 2);
    assert_eq!(counter(&registry, "flowtel_file_storage_lost_items_total", Some("truncated")), 2);
    assert_eq!(counter(&registry, "flowtel_file_storage_skipped_bytes_total", None), frame as u64);
}

#[tokio::test]
async fn the_size_bound_refuses_what_does_not_fit_and_sent_files_give_room_back() {
    let dir = tempfile::tempdir().unwrap();
    let (storage, registry) = started(config(dir.path())).await;
    let queue = open(&storage, &registry);
    let big = vec![7u8; 100 * 1024];
    let mut stored = 0;
    let full = loop {
        match queue.push(&big, 1) {
            Ok(()) => stored += 1,
            Err(err) => break err,
        }
    };
    assert!(matches!(full, StorageError::Full { limit } if limit == 1 << 20), "{full}");
    assert_eq!(stored, 10, "1 MiB holds ten 100 KiB batches and their headers");
    assert!(segments(dir.path()).len() >= 10, "one 64 KiB segment per batch");
    for _ in 0..stored {
        let record = queue.pop().unwrap();
        queue.done(record.id);
    }
    assert!(segments(dir.path()).len() <= 2, "sent segments are deleted: {:?}", segments(dir.path()));
    queue.push(&big, 1).unwrap();
}

#[tokio::test]
async fn compaction_on_start_rewrites_what_is_left_into_fresh_files() {
    let dir = tempfile::tempdir().unwrap();
    let (storage, registry) = started(config(dir.path())).await;
    let queue = open(&storage, &registry);
    for n in 0..4 {
        queue.push(&record(n), 1).unwrap();
    }
    let first = queue.pop().unwrap();
    queue.done(first.id);
    drop(queue);
    storage.shutdown().await;
    let before = segments(dir.path());

    let compacting =
        FileStorageConfig { compaction: CompactionConfig { on_start: true, on_rebound: true }, ..config(dir.path()) };
    let (storage, registry) = started(compacting).await;
    let queue = open(&storage, &registry);
    let after = segments(dir.path());
    assert!(after.iter().all(|file| !before.contains(file)), "{before:?} → {after:?}");
    assert_eq!(drain(queue.as_ref()), vec![1, 2, 3]);
}
