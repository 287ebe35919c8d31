//! The `file` exporter: each batch as one line of OTLP/JSON (an export
//! request, as OTLP/HTTP would carry it), rotated by size.
//!
//! Rotation renames `path` to `path.1`, shifting older files up to
//! `path.<max_backups>` and deleting the oldest.

use flowtel_core::export::BuildError;
use std::{
    fs::{File, OpenOptions},
    io::Write as _,
    path::{Path, PathBuf},
    sync::Mutex,
};

use async_trait::async_trait;
use flowtel_core::{
    Payload,
    component::{ExportError, ExportOutcome, Exporter},
    config::Validate,
    export::encode_json,
};
use serde::Deserialize;

/// `exporters::file`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The file to write; its directory must exist.
    pub path: PathBuf,
    /// Size-based rotation; without it the file grows without bound.
    #[serde(default)]
    pub rotation: Option<RotationConfig>,
}

/// `exporters::file::rotation`.
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

impl Validate for FileConfig {
    fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let dir = self.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !dir.is_dir() {
            problems.push(("path".into(), format!("the directory {} does not exist", dir.display())));
        }
        if let Some(rotation) = &self.rotation
            && rotation.max_megabytes == 0
        {
            problems.push(("rotation::max_megabytes".into(), "must be more than 0".into()));
        }
        problems
    }
}

struct OpenFile {
    file: File,
    size: u64,
}

/// The `file` exporter.
pub struct FileExporter {
    path: PathBuf,
    max_bytes: Option<u64>,
    max_backups: u32,
    file: Mutex<OpenFile>,
}

impl FileExporter {
    /// Opens (appending to) the configured file.
    pub fn new(config: &FileConfig) -> Result<Self, BuildError> {
        let file = open(&config.path)?;
        Ok(FileExporter {
            path: config.path.clone(),
            max_bytes: config.rotation.as_ref().map(|r| r.max_megabytes * 1024 * 1024),
            max_backups: config.rotation.as_ref().map_or(0, |r| r.max_backups),
            file: Mutex::new(file),
        })
    }

    fn rotate(&self, current: &mut OpenFile) -> std::io::Result<()> {
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
        *current = open(&self.path).map_err(std::io::Error::other)?;
        Ok(())
    }

    fn write_line(&self, line: &[u8]) -> std::io::Result<()> {
        let mut current = self.file.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(max) = self.max_bytes
            && current.size > 0
            && current.size + line.len() as u64 > max
        {
            self.rotate(&mut current)?;
        }
        current.file.write_all(line)?;
        current.size += line.len() as u64;
        Ok(())
    }
}

fn open(path: &Path) -> Result<OpenFile, BuildError> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| BuildError::OpenFile { path: path.to_path_buf(), source })?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    Ok(OpenFile { file, size })
}

#[async_trait]
impl Exporter for FileExporter {
    async fn export(&self, payload: &Payload) -> Result<ExportOutcome, ExportError> {
        let mut line =
            encode_json(payload).map_err(|err| ExportError::permanent(format!("cannot encode OTLP/JSON: {err}")))?;
        line.push(b'\n');
        self.write_line(&line)
            .map_err(|err| ExportError::permanent(format!("cannot write {}: {err}", self.path.display())))?;
        Ok(ExportOutcome::default())
    }

    async fn shutdown(&self) {
        let mut current = self.file.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = current.file.flush();
        let _ = current.file.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::{
        collector::logs::v1::ExportLogsServiceRequest,
        logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    };

    use super::*;

    fn payload(records: usize) -> Payload {
        Payload::Logs(vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord { event_name: "network.flow".into(), ..Default::default() }; records],
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    #[tokio::test]
    async fn one_json_line_per_batch_and_rotation_by_size() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out.json");
        let exporter = FileExporter::new(&FileConfig { path: path.clone(), rotation: None }).expect("open");
        exporter.export(&payload(2)).await.expect("write");
        exporter.export(&payload(3)).await.expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        let counts: Vec<usize> = text
            .lines()
            .map(|line| {
                let request: ExportLogsServiceRequest = serde_json::from_str(line).expect("OTLP/JSON line");
                request.resource_logs[0].scope_logs[0].log_records.len()
            })
            .collect();
        assert_eq!(counts, vec![2, 3]);
        assert!(text.contains("\"eventName\":\"network.flow\""), "{text}");

        // Rotation: a tiny limit forces every new line into a fresh file.
        let exporter = FileExporter {
            max_bytes: Some(10),
            max_backups: 1,
            ..FileExporter::new(&FileConfig { path: path.clone(), rotation: None }).expect("open")
        };
        exporter.export(&payload(1)).await.expect("write");
        exporter.export(&payload(1)).await.expect("write");
        assert_eq!(std::fs::read_to_string(&path).expect("read").lines().count(), 1);
        assert_eq!(std::fs::read_to_string(format!("{}.1", path.display())).expect("backup").lines().count(), 1);
    }
}
