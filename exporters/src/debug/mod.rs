//! The `debug` exporter: prints what reaches it to standard output.
//!
//! - `basic`: one summary line per batch.
//! - `normal`: one readable line per log record, metric point or span.
//! - `detailed`: the whole batch as indented OTLP/JSON.

use std::io::Write as _;

use async_trait::async_trait;
use flowtel_core::{
    Payload,
    component::{ExportError, ExportOutcome, Exporter},
    config::Validate,
    export::JsonRequest,
};
use serde::Deserialize;

mod format;

/// `exporters::debug`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DebugConfig {
    /// `basic`, `normal` or `detailed`.
    pub verbosity: Verbosity,
}

impl Validate for DebugConfig {}

/// How much the debug exporter prints.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Verbosity {
    /// A count per batch.
    #[default]
    Basic,
    /// A line per item.
    Normal,
    /// Everything, as JSON.
    Detailed,
}

/// The `debug` exporter.
pub struct DebugExporter {
    verbosity: Verbosity,
}

impl DebugExporter {
    /// An exporter printing at `config.verbosity`.
    pub fn new(config: &DebugConfig) -> Self {
        DebugExporter { verbosity: config.verbosity }
    }

    /// The text printed for `payload`.
    pub fn render(&self, payload: &Payload) -> String {
        match self.verbosity {
            Verbosity::Basic => format::summary(payload),
            Verbosity::Normal => format::lines(payload),
            Verbosity::Detailed => {
                let json = serde_json::to_string_pretty(&JsonRequest::of(payload));
                format!("{}\n{}\n", format::summary(payload).trim_end(), json.unwrap_or_default())
            }
        }
    }
}

#[async_trait]
impl Exporter for DebugExporter {
    async fn export(&self, payload: &Payload) -> Result<ExportOutcome, ExportError> {
        let text = self.render(payload);
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .map_err(|err| ExportError::permanent(format!("cannot write to standard output: {err}")))?;
        Ok(ExportOutcome::default())
    }
}
