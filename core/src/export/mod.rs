//! Settings shared by the network exporters (`otlp_grpc`, `otlp_http`), with
//! the OpenTelemetry Collector's names and defaults: `sending_queue`,
//! `retry_on_failure`, `tls` and `compression`; and the sending queue
//! itself ([`SendingQueue`]).

mod error;
mod request;
mod retry;
mod rotating_file;
mod sending_queue;
mod tls;

use std::{collections::BTreeMap, num::NonZeroUsize};

use bytesize::ByteSize;
use serde::Deserialize;

pub use error::BuildError;
pub use request::{JsonRequest, decode_protobuf, encode_json, encode_protobuf, outcome_of_protobuf_response};
pub use retry::{Backoff, RetryConfig};
pub use rotating_file::{RotatingFile, RotationConfig, validate_output};
pub use sending_queue::{Offer, QueueInlet, QueueName, SendingQueue};
pub use tls::{Pem, ServerTls, TlsClientConfig, TlsFileError, check_pem, install_crypto_provider};

use crate::config::Validate;

/// `sending_queue`: the bounded queue in front of an exporter.
///
/// Bounded by default in bytes (the memory the queued data takes), so a
/// backend outage cannot make flowtel's memory grow past it; when it is
/// full the pipeline waits, and the receivers feeding it tell their senders
/// to retry, instead of dropping what they already took.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// With `false` the pipeline waits for each export (no queue to absorb an outage).
    pub enabled: bool,
    /// How many exports run at once.
    pub num_consumers: NonZeroUsize,
    /// What `queue_size` counts: `bytes` (the memory the queued batches
    /// take), `items` (records, data points or spans) or `requests`
    /// (batches). Default: `bytes`; `requests`, as in the collector, when
    /// `queue_size` is given without a sizer.
    pub sizer: Option<Sizer>,
    /// The bound, in the sizer's unit (`32MiB` style sizes for bytes).
    /// Default: 32 MiB (bytes), 100,000 items, 1000 requests. Batches the
    /// consumers are sending or retrying count until they are done.
    pub queue_size: Option<ByteSize>,
    /// When full, make the pipeline wait, pushing back on receivers
    /// (default), instead of dropping the new batch (which is counted).
    pub block_on_overflow: bool,
    /// A storage extension (`file_storage/NAME`, listed in
    /// `service::extensions`) that keeps the queue on disk, so what it
    /// holds survives a restart or a crash. The bound then counts encoded
    /// bytes, items or requests on disk.
    pub storage: Option<crate::ComponentId>,
}

/// The unit of a sending queue's bound.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Sizer {
    /// The memory a batch takes.
    Bytes,
    /// Log records, data points or spans.
    Items,
    /// Batches.
    Requests,
}

impl Sizer {
    /// The unit's name in flowtel's own metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Sizer::Bytes => "bytes",
            Sizer::Items => "items",
            Sizer::Requests => "requests",
        }
    }

    /// The default bound in this unit.
    fn default_size(self) -> u64 {
        match self {
            Sizer::Bytes => 32 << 20,
            Sizer::Items => 100_000,
            Sizer::Requests => 1000,
        }
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            enabled: true,
            num_consumers: NonZeroUsize::new(10).unwrap_or(NonZeroUsize::MIN),
            sizer: None,
            queue_size: None,
            block_on_overflow: true,
            storage: None,
        }
    }
}

impl QueueConfig {
    /// The queue for an exporter that writes locally (debug, file): one
    /// consumer keeps its output in order.
    pub fn local() -> Self {
        QueueConfig { num_consumers: NonZeroUsize::MIN, ..Self::default() }
    }

    /// The queue's unit and bound, defaults applied.
    pub fn bound(&self) -> (Sizer, u64) {
        let sizer = self.sizer.unwrap_or(if self.queue_size.is_some() { Sizer::Requests } else { Sizer::Bytes });
        (sizer, self.queue_size.map_or_else(|| sizer.default_size(), |size| size.as_u64()))
    }
}

impl Validate for QueueConfig {
    fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.queue_size.is_some_and(|size| size.as_u64() == 0) {
            problems.push(("queue_size".into(), "must be more than 0".into()));
        }
        if self.storage.is_some() && !self.enabled {
            problems.push(("storage".into(), "needs the queue: remove `enabled: false` or the storage".into()));
        }
        problems
    }
}

/// Headers an exporter may send with every request.
pub const MAX_HEADERS: usize = 256;
/// Bytes of an exporter's headers, names and values together.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Checks the settings every network exporter shares, with their paths.
pub fn validate_client_settings(
    tls: &TlsClientConfig,
    retry: &RetryConfig,
    queue: &QueueConfig,
    headers: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let mut problems: Vec<(String, String)> =
        [("tls", tls.validate()), ("retry_on_failure", retry.validate()), ("sending_queue", queue.validate())]
            .into_iter()
            .flat_map(|(prefix, found)| {
                found.into_iter().map(move |(field, message)| (format!("{prefix}::{field}"), message))
            })
            .collect();
    // Servers refuse header lists far smaller than these (HTTP/2 servers
    // commonly at 16 KiB), and an HTTP header map cannot hold more than
    // 24,576 entries.
    let bytes: usize = headers.iter().map(|(name, value)| name.len() + value.len()).sum();
    if headers.len() > MAX_HEADERS {
        problems.push(("headers".into(), format!("{} headers; at most {MAX_HEADERS} are allowed", headers.len())));
    } else if bytes > MAX_HEADER_BYTES {
        problems.push(("headers".into(), format!("{bytes} bytes of headers; at most {MAX_HEADER_BYTES} are allowed")));
    }
    problems
}

/// `compression`: how request bodies are compressed.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// gzip, the collector's default.
    #[default]
    Gzip,
    /// zstd.
    Zstd,
    /// No compression.
    #[serde(alias = "")]
    None,
}
