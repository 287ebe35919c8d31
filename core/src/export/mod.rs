//! Settings shared by the network exporters (`otlp_grpc`, `otlp_http`), with
//! the OpenTelemetry Collector's names and defaults: `sending_queue`,
//! `retry_on_failure`, `tls` and `compression`.

mod request;
mod retry;
mod tls;

use std::{collections::BTreeMap, num::NonZeroUsize};

use serde::Deserialize;

pub use request::{JsonRequest, encode_json, encode_protobuf, outcome_of_protobuf_response};
pub use retry::{Backoff, RetryConfig};
pub use tls::{Pem, TlsClientConfig, check_pem, install_crypto_provider};

use crate::config::Validate;

/// `sending_queue`: the bounded queue in front of an exporter.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// With `false` the pipeline waits for each export (no queue to absorb an outage).
    pub enabled: bool,
    /// How many exports run at once.
    pub num_consumers: NonZeroUsize,
    /// How many batches the queue holds before it is full.
    pub queue_size: NonZeroUsize,
    /// When full, make the pipeline wait (pushing back on receivers) instead
    /// of dropping the new batch (which is counted).
    pub block_on_overflow: bool,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            enabled: true,
            num_consumers: NonZeroUsize::new(10).unwrap_or(NonZeroUsize::MIN),
            queue_size: NonZeroUsize::new(1000).unwrap_or(NonZeroUsize::MIN),
            block_on_overflow: false,
        }
    }
}

impl QueueConfig {
    /// The queue for an exporter that writes locally (debug, file): one
    /// consumer keeps its output in order.
    pub fn local() -> Self {
        QueueConfig { num_consumers: NonZeroUsize::MIN, ..Self::default() }
    }
}

impl Validate for QueueConfig {}

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
