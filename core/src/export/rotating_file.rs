//! The files the `file` and `pcap` exporters write: appended to and
//! rotated by size (`path` is renamed `path.1`, older files shift up to
//! `path.<max_backups>` and the oldest is deleted).

use std::{
    fs::{File, OpenOptions},
    io::{self, Write as _},
    path::{Path, PathBuf},
};

use serde::Deserialize;

use super::BuildError;

/// `rotation`: when an output file is rotated.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RotationConfig {
    /// Rotate before the file would grow past this many MiB.
    pub max_megabytes: u64,
    /// How many rotated files to keep.
    pub max_backups: u32,
}

impl Default for RotationConfig {
    fn default() -> Self {
        RotationConfig { max_megabytes: 100, max_backups: 100 }
    }
}

/// The problems of an output file's `path` and `rotation`.
pub fn validate_output(path: &Path, rotation: Option<&RotationConfig>) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.is_dir() {
        problems.push(("path".into(), format!("the directory {} does not exist", dir.display())));
    }
    if let Some(rotation) = rotation
        && rotation.max_megabytes == 0
    {
        problems.push(("rotation::max_megabytes".into(), "must be more than 0".into()));
    }
    problems
}

/// An open file with its size, rotated when the caller asks.
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: Option<u64>,
    max_backups: u32,
    file: File,
    size: u64,
}

impl RotatingFile {
    /// Opens `path` for appending; without `rotation` it is never rotated.
    pub fn open(path: &Path, rotation: Option<&RotationConfig>) -> Result<Self, BuildError> {
        let (file, size) = open(path).map_err(|source| BuildError::OpenFile { path: path.to_path_buf(), source })?;
        Ok(RotatingFile {
            path: path.to_path_buf(),
            max_bytes: rotation.map(|r| r.max_megabytes.saturating_mul(1024 * 1024)),
            max_backups: rotation.map_or(0, |r| r.max_backups),
            file,
            size,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `length` more bytes would take a non-empty file past its limit.
    pub fn is_full_for(&self, length: usize) -> bool {
        self.max_bytes.is_some_and(|max| self.size > 0 && self.size + length as u64 > max)
    }

    /// Moves the current file to `path.1` (the older ones up) and starts an empty one.
    pub fn rotate(&mut self) -> io::Result<()> {
        let backup = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        if self.max_backups == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            let _ = std::fs::remove_file(backup(self.max_backups));
            for n in (1..self.max_backups).rev() {
                let _ = std::fs::rename(backup(n), backup(n + 1));
            }
            std::fs::rename(&self.path, backup(1))?;
        }
        (self.file, self.size) = open(&self.path)?;
        Ok(())
    }

    /// Appends `bytes`.
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// Flushes to disk (at shutdown).
    pub fn sync(&mut self) {
        let _ = self.file.flush();
        let _ = self.file.sync_all();
    }

    /// Sets the limit in bytes (tests use tiny ones).
    pub fn limit(&mut self, max_bytes: u64, max_backups: u32) {
        self.max_bytes = Some(max_bytes);
        self.max_backups = max_backups;
    }
}

fn open(path: &Path) -> io::Result<(File, u64)> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    Ok((file, size))
}
