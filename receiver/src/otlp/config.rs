//! `receivers::otlp` config.

use bytesize::ByteSize;
use flowtel_core::config::{HostPort, Validate};
use serde::{Deserialize, Deserializer};

/// `receivers::otlp`: OTLP over gRPC and/or HTTP.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OtlpReceiverConfig {
    /// Which protocols to serve; at least one.
    pub protocols: ProtocolsConfig,
}

/// `receivers::otlp::protocols`. A protocol named with no body (`grpc:`)
/// is served with its defaults.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProtocolsConfig {
    /// OTLP/gRPC.
    #[serde(default, deserialize_with = "present_means_enabled")]
    pub grpc: Option<GrpcConfig>,
    /// OTLP/HTTP.
    #[serde(default, deserialize_with = "present_means_enabled")]
    pub http: Option<HttpConfig>,
}

/// A key that is present, even with no value, turns the protocol on.
fn present_means_enabled<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Some(Option::<T>::deserialize(deserializer)?.unwrap_or_default()))
}

/// `receivers::otlp::protocols::grpc`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// Listen address.
    pub endpoint: HostPort,
    /// Largest request accepted, in MiB (after decompression).
    pub max_recv_msg_size_mib: u32,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig { endpoint: HostPort::new("127.0.0.1", 4317), max_recv_msg_size_mib: 4 }
    }
}

/// `receivers::otlp::protocols::http`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Listen address.
    pub endpoint: HostPort,
    /// Largest request body accepted, after decompression (e.g. `20MiB`).
    pub max_request_body_size: ByteSize,
    /// Path for logs.
    pub logs_url_path: String,
    /// Path for metrics.
    pub metrics_url_path: String,
    /// Path for traces.
    pub traces_url_path: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            endpoint: HostPort::new("127.0.0.1", 4318),
            max_request_body_size: ByteSize::mib(20),
            logs_url_path: "/v1/logs".into(),
            metrics_url_path: "/v1/metrics".into(),
            traces_url_path: "/v1/traces".into(),
        }
    }
}

impl Validate for OtlpReceiverConfig {
    fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.protocols.grpc.is_none() && self.protocols.http.is_none() {
            problems.push(("protocols".into(), "enable at least one of `grpc` and `http`".into()));
        }
        if let Some(grpc) = &self.protocols.grpc
            && grpc.max_recv_msg_size_mib == 0
        {
            problems.push(("protocols::grpc::max_recv_msg_size_mib".into(), "must be more than 0".into()));
        }
        if let Some(http) = &self.protocols.http {
            for (field, path) in [
                ("logs_url_path", &http.logs_url_path),
                ("metrics_url_path", &http.metrics_url_path),
                ("traces_url_path", &http.traces_url_path),
            ] {
                if !path.starts_with('/') {
                    problems
                        .push((format!("protocols::http::{field}"), format!("must start with '/', found {path:?}")));
                }
            }
            if http.max_request_body_size.as_u64() == 0 {
                problems.push(("protocols::http::max_request_body_size".into(), "must be more than 0".into()));
            }
        }
        if let (Some(grpc), Some(http)) = (&self.protocols.grpc, &self.protocols.http)
            && grpc.endpoint == http.endpoint
        {
            problems.push(("protocols::http::endpoint".into(), format!("{} is also the grpc endpoint", http.endpoint)));
        }
        problems
    }
}
