//! OTLP/HTTP: `POST` of protobuf or JSON bodies, optionally gzip- or
//! zstd-compressed, answered in the request's own encoding.

use std::{io::Read as _, net::SocketAddr};

use axum::{
    Router,
    extract::{ConnectInfo, DefaultBodyLimit, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use bytes::Bytes;
use prost::Message as _;
use serde::Serialize;
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use super::{
    HttpConfig, Intake, Refusal,
    signal::{Logs, Metrics, OtlpSignal, Traces},
};

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";
/// Seconds a client is asked to wait before retrying a refused request.
const RETRY_AFTER_SECONDS: &str = "1";

#[derive(Clone)]
struct HttpState {
    intake: Intake,
    max_body: usize,
}

pub(super) fn serve(
    listener: TcpListener,
    config: &HttpConfig,
    intake: Intake,
    stop: CancellationToken,
) -> JoinHandle<()> {
    let max_body = usize::try_from(config.max_request_body_size.as_u64()).unwrap_or(usize::MAX);
    let mut app = Router::new();
    if intake.accepts(Logs::SIGNAL) {
        app = app.route(&config.logs_url_path, post(export::<Logs>));
    }
    if intake.accepts(Metrics::SIGNAL) {
        app = app.route(&config.metrics_url_path, post(export::<Metrics>));
    }
    if intake.accepts(Traces::SIGNAL) {
        app = app.route(&config.traces_url_path, post(export::<Traces>));
    }
    let app = app.with_state(HttpState { intake, max_body }).layer(DefaultBodyLimit::max(max_body));
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
        {
            tracing::error!(error = %err, "OTLP/HTTP server failed.");
        }
    })
}

/// The body encodings OTLP/HTTP defines.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Protobuf,
    Json,
}

impl Format {
    fn from_headers(headers: &HeaderMap) -> Option<Format> {
        let content_type = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
        let media_type = content_type.split(';').next()?.trim();
        if media_type.eq_ignore_ascii_case(PROTOBUF) {
            Some(Format::Protobuf)
        } else if media_type.eq_ignore_ascii_case(JSON) {
            Some(Format::Json)
        } else {
            None
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => PROTOBUF,
            Format::Json => JSON,
        }
    }

    fn encode<T: prost::Message + Serialize>(self, message: &T) -> Vec<u8> {
        match self {
            Format::Protobuf => message.encode_to_vec(),
            Format::Json => serde_json::to_vec(message).unwrap_or_default(),
        }
    }
}

/// `google.rpc.Status`, the body of an OTLP/HTTP error response.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
struct RpcStatus {
    /// A `google.rpc.Code`.
    #[prost(int32, tag = "1")]
    code: i32,
    /// What went wrong.
    #[prost(string, tag = "2")]
    message: String,
}

const CODE_INVALID_ARGUMENT: i32 = 3;
const CODE_UNAVAILABLE: i32 = 14;

fn reply(status: StatusCode, format: Format, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    response
}

fn error_reply(status: StatusCode, format: Format, code: i32, message: String) -> Response {
    reply(status, format, format.encode(&RpcStatus { code, message }))
}

async fn export<S: OtlpSignal>(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(format) = Format::from_headers(&headers) else {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("Content-Type must be {PROTOBUF} or {JSON}"))
            .into_response();
    };
    let body = match decompress(&headers, body, state.max_body) {
        Ok(body) => body,
        Err(reason) => return refusal_reply(format, state.intake.malformed::<S>(reason)),
    };
    let decoded = match format {
        Format::Protobuf => S::Request::decode(body).map_err(|err| err.to_string()),
        Format::Json => serde_json::from_slice::<S::Request>(&body).map_err(|err| err.to_string()),
    };
    let result = match decoded {
        Ok(request) => state.intake.accept::<S>(request, Some(peer)).await,
        Err(reason) => Err(state.intake.malformed::<S>(reason)),
    };
    match result {
        Ok(()) => reply(StatusCode::OK, format, format.encode(&S::Response::default())),
        Err(refusal) => refusal_reply(format, refusal),
    }
}

fn refusal_reply(format: Format, refusal: Refusal) -> Response {
    match refusal {
        Refusal::Malformed(message) => error_reply(StatusCode::BAD_REQUEST, format, CODE_INVALID_ARGUMENT, message),
        Refusal::Unavailable(err) => {
            let mut response = error_reply(StatusCode::SERVICE_UNAVAILABLE, format, CODE_UNAVAILABLE, err.to_string());
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
            response
        }
    }
}

/// Undoes `Content-Encoding`, refusing output larger than `limit`.
fn decompress(headers: &HeaderMap, body: Bytes, limit: usize) -> Result<Bytes, String> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    let reader: Box<dyn std::io::Read> = match encoding.as_str() {
        "" | "identity" => return Ok(body),
        "gzip" => Box::new(flate2::read::MultiGzDecoder::new(&body[..])),
        "deflate" => Box::new(flate2::read::ZlibDecoder::new(&body[..])),
        "zstd" => Box::new(zstd::Decoder::new(&body[..]).map_err(|err| format!("bad zstd body: {err}"))?),
        other => return Err(format!("unsupported Content-Encoding {other:?}; use gzip, zstd, deflate or none")),
    };
    let mut out = Vec::new();
    let read = reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|err| format!("cannot decompress the {encoding} body: {err}"))?;
    if read > limit {
        return Err(format!("the decompressed body is larger than max_request_body_size ({limit} bytes)"));
    }
    Ok(Bytes::from(out))
}
