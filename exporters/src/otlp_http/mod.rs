//! The `otlp_http` exporter (alias `otlphttp`): OTLP over HTTP, protobuf or
//! JSON bodies, compressed with gzip or zstd.
//!
//! As the OTLP specification says, 429, 502, 503 and 504 are retried
//! (honouring `Retry-After`), as are connection failures; other statuses are
//! permanent failures.

mod config;

use flowtel_core::export::BuildError;
use std::{io::Write as _, time::Duration};

use async_trait::async_trait;
use flowtel_core::{
    Payload, Signal,
    component::{ExportError, ExportOutcome, Exporter},
    export::{
        Compression, TlsClientConfig, encode_json, encode_protobuf, install_crypto_provider,
        outcome_of_protobuf_response,
    },
};
use reqwest::{StatusCode, header};

pub use config::{Encoding, OtlpHttpConfig};

/// The `otlp_http` exporter.
pub struct OtlpHttpExporter {
    client: reqwest::Client,
    urls: [Option<reqwest::Url>; 3],
    encoding: Encoding,
    compression: Compression,
}

impl OtlpHttpExporter {
    /// Builds the HTTP client.
    pub fn new(config: &OtlpHttpConfig) -> Result<Self, BuildError> {
        install_crypto_provider();
        let mut headers = header::HeaderMap::new();
        for (name, value) in &config.headers {
            let invalid = |why: String| BuildError::Header { name: name.clone(), why };
            let name = header::HeaderName::from_bytes(name.as_bytes()).map_err(|err| invalid(err.to_string()))?;
            let value = header::HeaderValue::from_str(value).map_err(|err| invalid(err.to_string()))?;
            headers.insert(name, value);
        }
        let mut builder = reqwest::Client::builder().default_headers(headers).timeout(config.timeout);
        builder = tls(builder, &config.tls)?;
        let client = builder.build().map_err(|err| BuildError::HttpClient(err.to_string()))?;
        let url = |signal| config.url(signal).transpose();
        Ok(OtlpHttpExporter {
            client,
            urls: [url(Signal::Logs)?, url(Signal::Metrics)?, url(Signal::Traces)?],
            encoding: config.encoding,
            compression: config.compression,
        })
    }
}

fn tls(mut builder: reqwest::ClientBuilder, tls: &TlsClientConfig) -> Result<reqwest::ClientBuilder, BuildError> {
    if let Some(ca_file) = &tls.ca_file {
        let pem = TlsClientConfig::read("ca_file", ca_file)?;
        let certificate = reqwest::Certificate::from_pem(&pem)
            .map_err(|err| BuildError::Tls { setting: "tls::ca_file", why: err.to_string() })?;
        builder = builder.tls_certs_only([certificate]);
    }
    if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
        let mut pem = TlsClientConfig::read("cert_file", cert)?;
        pem.extend(TlsClientConfig::read("key_file", key)?);
        let identity = reqwest::Identity::from_pem(&pem)
            .map_err(|err| BuildError::Tls { setting: "tls::cert_file", why: err.to_string() })?;
        builder = builder.identity(identity);
    }
    Ok(builder)
}

/// Compresses a body as configured; returns the `Content-Encoding` to send.
fn compress(compression: Compression, body: Vec<u8>) -> std::io::Result<(Vec<u8>, Option<&'static str>)> {
    match compression {
        Compression::None => Ok((body, None)),
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(&body)?;
            Ok((encoder.finish()?, Some("gzip")))
        }
        Compression::Zstd => Ok((zstd::encode_all(body.as_slice(), 1)?, Some("zstd"))),
    }
}

#[async_trait]
impl Exporter for OtlpHttpExporter {
    async fn export(&self, payload: &Payload) -> Result<ExportOutcome, ExportError> {
        let signal = payload.signal();
        let Some(url) = &self.urls[signal as usize] else {
            return Err(ExportError::permanent(format!("no endpoint is configured for {signal}")));
        };
        let (body, content_type) = match self.encoding {
            Encoding::Proto => (encode_protobuf(payload), "application/x-protobuf"),
            Encoding::Json => (
                encode_json(payload).map_err(|err| ExportError::permanent(format!("cannot encode JSON: {err}")))?,
                "application/json",
            ),
        };
        let (body, content_encoding) = compress(self.compression, body)
            .map_err(|err| ExportError::permanent(format!("cannot compress: {err}")))?;
        let mut builder = self.client.post(url.clone()).header(header::CONTENT_TYPE, content_type).body(body);
        if let Some(content_encoding) = content_encoding {
            builder = builder.header(header::CONTENT_ENCODING, content_encoding);
        }
        let response =
            builder.send().await.map_err(|err| ExportError::retryable(format!("POST {url}: {err}"), None))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = read_limited(response, MAX_RESPONSE_BYTES).await;
        if status.is_success() {
            return Ok(match self.encoding {
                Encoding::Proto => outcome_of_protobuf_response(signal, &body),
                Encoding::Json => ExportOutcome::default(),
            });
        }
        let message = format!("POST {url}: HTTP {status}: {}", String::from_utf8_lossy(&body[..body.len().min(512)]));
        Err(match status {
            StatusCode::TOO_MANY_REQUESTS
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT => ExportError::retryable(message, retry_after),
            StatusCode::PAYLOAD_TOO_LARGE => ExportError::too_large(message),
            _ => ExportError::permanent(message),
        })
    }

    fn takes_encoded(&self) -> bool {
        self.encoding == Encoding::Proto
    }
}

/// The most of a response body read: a backend cannot make flowtel hold
/// more than this per export.
const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// The first `limit` bytes of a response's body (what a failed read left out is ignored).
async fn read_limited(mut response: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        body.extend_from_slice(&chunk[..chunk.len().min(limit - body.len())]);
        if body.len() == limit {
            break;
        }
    }
    body
}
