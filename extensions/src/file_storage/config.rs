//! `file_storage`'s settings, with the collector's names where it has them.

use std::path::PathBuf;

use bytesize::ByteSize;
use flowtel_core::config::Validate;
use serde::Deserialize;

/// `extensions::file_storage`: where persistent sending queues are kept.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FileStorageConfig {
    /// The folder the queues live in, one sub-folder each. Default:
    /// `/var/lib/flowtel/file_storage`.
    pub directory: PathBuf,
    /// Create `directory` (and its parents) when missing, instead of
    /// refusing to start. Default: off, as in the collector.
    pub create_directory: bool,
    /// Flush every stored batch to the disk before the receiver answers, so
    /// it survives a power loss too, not only a crash of flowtel. Default:
    /// off (a stored batch survives `kill -9` either way).
    pub fsync: bool,
    /// The bytes on disk all the queues in this storage may take together;
    /// a batch past it is dropped and counted (`storage_full`). Default: 1 GiB.
    pub max_size: ByteSize,
    /// Delete what earlier runs left at start (the collector's `recreate`).
    pub recreate: bool,
    /// When space is given back.
    pub compaction: CompactionConfig,
}

/// `compaction`: when the space of sent batches is given back. Files whose
/// batches were all sent are deleted as soon as they are.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CompactionConfig {
    /// At start, rewrite what earlier runs left unsent into fresh files,
    /// giving back the space of sent batches and damaged parts. Default: off.
    pub on_start: bool,
    /// When a queue becomes empty, start a fresh file and delete the
    /// written one, instead of appending to it. Default: on.
    pub on_rebound: bool,
}

impl Default for FileStorageConfig {
    fn default() -> Self {
        FileStorageConfig {
            directory: PathBuf::from("/var/lib/flowtel/file_storage"),
            create_directory: false,
            fsync: false,
            max_size: ByteSize::gib(1),
            recreate: false,
            compaction: CompactionConfig::default(),
        }
    }
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig { on_start: false, on_rebound: true }
    }
}

/// The smallest `max_size`: room for a few segments.
pub(super) const MIN_MAX_SIZE: u64 = 64 * 1024;

impl Validate for FileStorageConfig {
    fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.directory.as_os_str().is_empty() {
            problems.push(("directory".into(), "must not be empty".into()));
        }
        if self.max_size.as_u64() < MIN_MAX_SIZE {
            problems.push(("max_size".into(), format!("must be at least {}", ByteSize::b(MIN_MAX_SIZE))));
        }
        problems
    }
}
