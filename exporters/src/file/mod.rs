//! The `file` exporter: each batch as one line of OTLP/JSON (an export
//! request, as OTLP/HTTP would carry it), rotated by size.
//!
//! Rotation renames `path` to `path.1`, shifting older files up to
//! `path.<max_backups>` and deleting the oldest.

use std::{
    path::PathBuf,
    sync::{Mutex, PoisonError},
};

use async_trait::async_trait;
use flowtel_core::{
    Payload,
    component::{ExportError, ExportOutcome, Exporter},
    config::Validate,
    export::{BuildError, RotatingFile, RotationConfig, encode_json, validate_output},
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

impl Validate for FileConfig {
    fn validate(&self) -> Vec<(String, String)> {
        validate_output(&self.path, self.rotation.as_ref())
    }
}

/// The `file` exporter.
pub struct FileExporter {
    file: Mutex<RotatingFile>,
}

impl FileExporter {
    /// Opens (appending to) the configured file.
    pub fn new(config: &FileConfig) -> Result<Self, BuildError> {
        Ok(FileExporter { file: Mutex::new(RotatingFile::open(&config.path, config.rotation.as_ref())?) })
    }
}

#[async_trait]
impl Exporter for FileExporter {
    async fn export(&self, payload: &Payload) -> Result<ExportOutcome, ExportError> {
        let mut line =
            encode_json(payload).map_err(|err| ExportError::permanent(format!("cannot encode OTLP/JSON: {err}")))?;
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        let written = if file.is_full_for(line.len()) { file.rotate() } else { Ok(()) };
        written
            .and_then(|()| file.append(&line))
            .map_err(|err| ExportError::permanent(format!("cannot write {}: {err}", file.path().display())))?;
        Ok(ExportOutcome::default())
    }

    async fn shutdown(&self) {
        self.file.lock().unwrap_or_else(PoisonError::into_inner).sync();
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
        let exporter = FileExporter::new(&FileConfig { path: path.clone(), rotation: None }).expect("open");
        exporter.file.lock().expect("file").limit(10, 1);
        exporter.export(&payload(1)).await.expect("write");
        exporter.export(&payload(1)).await.expect("write");
        assert_eq!(std::fs::read_to_string(&path).expect("read").lines().count(), 1);
        assert_eq!(std::fs::read_to_string(format!("{}.1", path.display())).expect("backup").lines().count(), 1);
    }
}
