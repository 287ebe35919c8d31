//! The `otlp_grpc` exporter (alias `otlp`): OTLP over gRPC to any backend.
//!
//! Failures are classified as the OTLP specification says: `UNAVAILABLE`,
//! `CANCELLED`, `DEADLINE_EXCEEDED`, `ABORTED`, `OUT_OF_RANGE` and
//! `DATA_LOSS` are retried, `RESOURCE_EXHAUSTED` only when the server sent a
//! `RetryInfo` (whose delay is honoured); everything else is permanent.
//! A refusal of the request's size (`RESOURCE_EXHAUSTED` or `OUT_OF_RANGE`
//! saying the message is too large, as gRPC servers word it) is neither:
//! the batch is sent again in halves, since it can never fit whole.

mod config;

use flowtel_core::export::BuildError;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Buf as _, BufMut as _, Bytes};
use flowtel_core::{
    Payload, Signal,
    component::{ExportError, ExportOutcome, Exporter, error_chain},
    export::{Compression, TlsClientConfig, encode_protobuf, install_crypto_provider, outcome_of_protobuf_response},
};
use http::uri::PathAndQuery;
use prost::Message as _;
use tonic::{
    Code, Status,
    client::Grpc,
    codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder},
    metadata::{MetadataKey, MetadataMap, MetadataValue},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};

pub use config::OtlpGrpcConfig;

/// The largest response read from a backend.
const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// The `otlp_grpc` exporter.
pub struct OtlpGrpcExporter {
    client: Grpc<Channel>,
    metadata: MetadataMap,
    timeout: Duration,
}

/// The `Export` method of each signal's service.
fn export_path(signal: Signal) -> PathAndQuery {
    PathAndQuery::from_static(match signal {
        Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    })
}

impl OtlpGrpcExporter {
    /// Builds the client; connections are made on first use, so a backend
    /// that is down at startup is retried like one that goes down later.
    pub fn new(config: &OtlpGrpcConfig) -> Result<Self, BuildError> {
        install_crypto_provider();
        let uri = config.uri()?;
        let use_tls = uri.scheme_str() == Some("https");
        let mut endpoint = Endpoint::from(uri).timeout(config.timeout).connect_timeout(config.timeout);
        if use_tls {
            endpoint = endpoint
                .tls_config(tls_config(&config.tls)?)
                .map_err(|err| BuildError::Tls { setting: "tls", why: err.to_string() })?;
        }
        let channel = endpoint.connect_lazy();
        let mut metadata = MetadataMap::new();
        for (name, value) in &config.headers {
            let invalid = |why: String| BuildError::Header { name: name.clone(), why };
            let key = MetadataKey::from_bytes(name.as_bytes()).map_err(|err| invalid(err.to_string()))?;
            let value = MetadataValue::try_from(value.as_str()).map_err(|err| invalid(err.to_string()))?;
            metadata.insert(key, value);
        }
        let encoding = match config.compression {
            Compression::Gzip => Some(CompressionEncoding::Gzip),
            Compression::Zstd => Some(CompressionEncoding::Zstd),
            Compression::None => None,
        };
        // A response is an (empty or partial-success) status: a backend cannot make it large.
        let mut client = Grpc::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES);
        if let Some(encoding) = encoding {
            client = client.send_compressed(encoding).accept_compressed(encoding);
        }
        Ok(OtlpGrpcExporter { client, metadata, timeout: config.timeout })
    }
}

/// Sends an already encoded request; hands back the response's bytes.
#[derive(Clone, Copy, Default)]
struct EncodedCodec;

struct EncodedEncoder;
struct BytesDecoder;

impl Codec for EncodedCodec {
    type Encode = Vec<u8>;
    type Decode = Bytes;
    type Encoder = EncodedEncoder;
    type Decoder = BytesDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        EncodedEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        BytesDecoder
    }
}

impl Encoder for EncodedEncoder {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for BytesDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

fn tls_config(tls: &TlsClientConfig) -> Result<ClientTlsConfig, BuildError> {
    let mut config = ClientTlsConfig::new();
    match &tls.ca_file {
        Some(ca_file) => {
            config = config.ca_certificate(Certificate::from_pem(TlsClientConfig::read("ca_file", ca_file)?))
        }
        None => config = config.with_native_roots(),
    }
    if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
        config = config.identity(Identity::from_pem(
            TlsClientConfig::read("cert_file", cert)?,
            TlsClientConfig::read("key_file", key)?,
        ));
    }
    if let Some(name) = &tls.server_name_override {
        config = config.domain_name(name.clone());
    }
    Ok(config)
}

#[async_trait]
impl Exporter for OtlpGrpcExporter {
    async fn export(&self, payload: &Payload) -> Result<ExportOutcome, ExportError> {
        let signal = payload.signal();
        let mut request = tonic::Request::new(encode_protobuf(payload));
        *request.metadata_mut() = self.metadata.clone();
        request.set_timeout(self.timeout);
        let mut client = self.client.clone();
        client.ready().await.map_err(|err| ExportError::retryable(format!("gRPC connection: {err}"), None))?;
        let response = client.unary(request, export_path(signal), EncodedCodec).await.map_err(|s| classify(&s))?;
        Ok(outcome_of_protobuf_response(signal, response.get_ref()))
    }

    fn takes_encoded(&self) -> bool {
        true
    }
}

/// Maps a gRPC status to a retryable or permanent failure.
fn classify(status: &Status) -> ExportError {
    let mut message = format!("gRPC {:?}: {}", status.code(), status.message());
    // A status made from a connection or TLS failure (tonic reports these as
    // UNKNOWN or CANCELLED) never reached the server: retry it, as gRPC's
    // own UNAVAILABLE would be.
    if let Some(source) = std::error::Error::source(status) {
        message = format!("{message}: {}", error_chain(source));
        if source.downcast_ref::<tonic::transport::Error>().is_some() {
            return ExportError::retryable(message, None);
        }
    }
    if is_size_refusal(status) {
        return ExportError::too_large(message);
    }
    match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => ExportError::retryable(message, retry_delay(status)),
        Code::ResourceExhausted => match retry_delay(status) {
            Some(delay) => ExportError::retryable(message, Some(delay)),
            None => ExportError::permanent(message),
        },
        _ => ExportError::permanent(message),
    }
}

/// Whether the server refused the request for its size: gRPC servers
/// answer `RESOURCE_EXHAUSTED` (grpc-go, the collector) or `OUT_OF_RANGE`
/// (tonic) with a message saying the message is larger than their limit.
fn is_size_refusal(status: &Status) -> bool {
    let message = status.message().to_ascii_lowercase();
    matches!(status.code(), Code::ResourceExhausted | Code::OutOfRange)
        && retry_delay(status).is_none()
        && (message.contains("larger than") || message.contains("too large"))
}

/// `google.rpc.Status`, as carried in `grpc-status-details-bin`.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<wire::Any>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, prost::Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<wire::ProtoDuration>,
}

mod wire {
    /// `google.protobuf.Any`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Any {
        #[prost(string, tag = "1")]
        pub(super) type_url: String,
        #[prost(bytes = "vec", tag = "2")]
        pub(super) value: Vec<u8>,
    }

    /// `google.protobuf.Duration`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct ProtoDuration {
        #[prost(int64, tag = "1")]
        pub(super) seconds: i64,
        #[prost(int32, tag = "2")]
        pub(super) nanos: i32,
    }
}

const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// The delay a server asked for in a `RetryInfo` detail, if any.
fn retry_delay(status: &Status) -> Option<Duration> {
    let details = RpcStatus::decode(status.details()).ok()?;
    let info = details.details.iter().find(|d| d.type_url == RETRY_INFO_TYPE)?;
    let delay = RetryInfo::decode(info.value.as_slice()).ok()?.retry_delay?;
    let seconds = u64::try_from(delay.seconds).ok()?;
    let nanos = u32::try_from(delay.nanos).ok()?;
    Some(Duration::new(seconds, nanos))
}

#[cfg(test)]
mod tests {
    use flowtel_core::component::ExportErrorKind;

    use super::*;

    #[test]
    fn codes_are_classified_as_the_spec_says() {
        for code in [Code::Unavailable, Code::DeadlineExceeded, Code::Aborted, Code::DataLoss] {
            assert!(matches!(classify(&Status::new(code, "")).kind, ExportErrorKind::Retryable { throttle: None }));
        }
        for code in [Code::InvalidArgument, Code::Unauthenticated, Code::ResourceExhausted, Code::Unimplemented] {
            assert_eq!(classify(&Status::new(code, "")).kind, ExportErrorKind::Permanent);
        }
    }

    #[test]
    fn a_refusal_of_the_size_splits_the_batch() {
        for status in [
            Status::resource_exhausted("grpc: received message larger than max (5000000 vs. 4194304)"),
            Status::out_of_range(
                "Error, decoded message length too large: found 5000000 bytes, the limit is: 4194304 bytes",
            ),
            Status::resource_exhausted(
                "the request is larger than max_recv_msg_size_mib (4 MiB); send smaller batches",
            ),
        ] {
            assert_eq!(classify(&status).kind, ExportErrorKind::TooLarge, "{status:?}");
        }
        assert!(matches!(classify(&Status::out_of_range("seek past end")).kind, ExportErrorKind::Retryable { .. }));
    }

    #[test]
    fn resource_exhausted_with_retry_info_is_retried_after_the_delay() {
        let info = RetryInfo { retry_delay: Some(wire::ProtoDuration { seconds: 2, nanos: 500 }) };
        let details = RpcStatus {
            code: Code::ResourceExhausted as i32,
            message: "slow down".into(),
            details: vec![wire::Any { type_url: RETRY_INFO_TYPE.into(), value: info.encode_to_vec() }],
        };
        let status = Status::with_details(Code::ResourceExhausted, "slow down", details.encode_to_vec().into());
        assert_eq!(classify(&status).kind, ExportErrorKind::Retryable { throttle: Some(Duration::new(2, 500)) });
    }
}
