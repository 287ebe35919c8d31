//! `exporters::otlp_grpc` config, with the collector's names and defaults.

use flowtel_core::export::BuildError;
use std::{collections::BTreeMap, time::Duration};

use flowtel_core::{
    config::Validate,
    export::{Compression, QueueConfig, RetryConfig, TlsClientConfig, validate_client_settings},
};
use serde::Deserialize;

/// `exporters::otlp_grpc` (alias `otlp`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OtlpGrpcConfig {
    /// `host:port`, or a URL with `http://` (plain text) or `https://` (TLS).
    pub endpoint: String,
    /// TLS settings; without a scheme in `endpoint`, TLS is used unless `insecure: true`.
    #[serde(default)]
    pub tls: TlsClientConfig,
    /// Extra gRPC metadata sent with every request (e.g. an API key).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `gzip` (default), `zstd` or `none`.
    #[serde(default)]
    pub compression: Compression,
    /// Deadline of one export attempt.
    #[serde(with = "humantime_serde", default = "default_timeout")]
    pub timeout: Duration,
    /// The bounded queue in front of the exporter.
    #[serde(default)]
    pub sending_queue: QueueConfig,
    /// Retries of retryable failures.
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

impl OtlpGrpcConfig {
    /// The endpoint as a URI with a scheme, TLS or not as the config says.
    pub fn uri(&self) -> Result<http::Uri, BuildError> {
        let text = if self.endpoint.contains("://") {
            self.endpoint.clone()
        } else if self.tls.insecure {
            format!("http://{}", self.endpoint)
        } else {
            format!("https://{}", self.endpoint)
        };
        let uri: http::Uri = text.parse().map_err(|err: http::uri::InvalidUri| BuildError::Unparsable {
            endpoint: self.endpoint.clone(),
            why: err.to_string(),
        })?;
        match (uri.scheme_str(), uri.host()) {
            (Some("http" | "https"), Some(host)) if !host.is_empty() => Ok(uri),
            (Some(scheme), _) if scheme != "http" && scheme != "https" => {
                Err(BuildError::Scheme { endpoint: self.endpoint.clone() })
            }
            _ => Err(BuildError::NoHost { endpoint: self.endpoint.clone() }),
        }
    }
}

impl Validate for OtlpGrpcConfig {
    fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if let Err(message) = self.uri() {
            problems.push(("endpoint".into(), message.to_string()));
        }
        if self.timeout.is_zero() {
            problems.push(("timeout".into(), "must be more than 0".into()));
        }
        for (name, value) in &self.headers {
            if tonic::metadata::MetadataKey::<tonic::metadata::Ascii>::from_bytes(name.as_bytes()).is_err() {
                problems.push((format!("headers::{name}"), "not a valid gRPC metadata name".into()));
            } else if tonic::metadata::MetadataValue::<tonic::metadata::Ascii>::try_from(value.as_str()).is_err() {
                problems.push((format!("headers::{name}"), "not a valid gRPC metadata value".into()));
            }
        }
        problems.extend(validate_client_settings(
            &self.tls,
            &self.retry_on_failure,
            &self.sending_queue,
            &self.headers,
        ));
        problems
    }
}
