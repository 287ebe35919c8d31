//! `exporters::otlp_http` config, with the collector's names and defaults.

use flowtel_core::export::BuildError;
use std::{collections::BTreeMap, time::Duration};

use flowtel_core::{
    Signal,
    config::Validate,
    export::{Compression, QueueConfig, RetryConfig, TlsClientConfig, validate_client_settings},
};
use serde::Deserialize;

/// `exporters::otlp_http` (alias `otlphttp`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OtlpHttpConfig {
    /// Base URL; `/v1/logs`, `/v1/metrics` and `/v1/traces` are appended.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Full URL for logs, instead of `endpoint` + `/v1/logs`.
    #[serde(default)]
    pub logs_endpoint: Option<String>,
    /// Full URL for metrics, instead of `endpoint` + `/v1/metrics`.
    #[serde(default)]
    pub metrics_endpoint: Option<String>,
    /// Full URL for traces, instead of `endpoint` + `/v1/traces`.
    #[serde(default)]
    pub traces_endpoint: Option<String>,
    /// Body encoding: `proto` (default) or `json`.
    #[serde(default)]
    pub encoding: Encoding,
    /// TLS settings, used with `https://` URLs.
    #[serde(default)]
    pub tls: TlsClientConfig,
    /// Extra HTTP headers sent with every request.
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

/// OTLP/HTTP body encodings.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// `application/x-protobuf`.
    #[default]
    Proto,
    /// `application/json` (OTLP/JSON).
    Json,
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

impl OtlpHttpConfig {
    /// The URL that receives `signal`, if one is configured.
    pub fn url(&self, signal: Signal) -> Option<Result<reqwest::Url, BuildError>> {
        let explicit = match signal {
            Signal::Logs => &self.logs_endpoint,
            Signal::Metrics => &self.metrics_endpoint,
            Signal::Traces => &self.traces_endpoint,
        };
        let text = match (explicit, &self.endpoint) {
            (Some(url), _) => url.clone(),
            (None, Some(base)) => format!("{}/v1/{}", base.trim_end_matches('/'), signal.as_str()),
            (None, None) => return None,
        };
        Some(parse_url(&text))
    }
}

fn parse_url(text: &str) -> Result<reqwest::Url, BuildError> {
    let url = reqwest::Url::parse(text)
        .map_err(|err| BuildError::UnparsableUrl { url: text.to_owned(), why: err.to_string() })?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        _ => Err(BuildError::NotHttpUrl { url: text.to_owned() }),
    }
}

impl Validate for OtlpHttpConfig {
    fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let fields = [
            ("endpoint", &self.endpoint),
            ("logs_endpoint", &self.logs_endpoint),
            ("metrics_endpoint", &self.metrics_endpoint),
            ("traces_endpoint", &self.traces_endpoint),
        ];
        if fields.iter().all(|(_, value)| value.is_none()) {
            problems.push(("endpoint".into(), "set `endpoint` (or a per-signal `*_endpoint`)".into()));
        }
        for (field, value) in fields {
            if let Some(Err(message)) = value.as_deref().map(parse_url) {
                problems.push((field.into(), message.to_string()));
            }
        }
        if self.timeout.is_zero() {
            problems.push(("timeout".into(), "must be more than 0".into()));
        }
        for (name, value) in &self.headers {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() || http::HeaderValue::from_str(value).is_err() {
                problems.push((format!("headers::{name}"), "not a valid HTTP header".into()));
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
