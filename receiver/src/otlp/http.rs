//! OTLP/HTTP: `POST` of protobuf or JSON bodies, optionally gzip- or
//! zstd-compressed, answered in the request's own encoding. Every error,
//! whatever its cause (a bad body, a body too large, an unknown path or
//! method, a content type that is neither), is a `google.rpc.Status` body,
//! as OTLP/HTTP prescribes.

use std::{
    io::{BufReader, Read as _},
    net::SocketAddr,
};

use axum::{
    Router,
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use bytes::Bytes;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use prost::Message as _;
use serde::Serialize;
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use flowtel_core::{Payload, Signal, payload::Encoded};

use super::{
    HttpConfig, IN_FLIGHT_BYTES, Intake, Refusal, RefusedRequest,
    budget::{Meter, MeteredBuf, MeteredRead, RequestBudget},
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
    let app =
        app.fallback(not_served).method_not_allowed_fallback(not_served).with_state(HttpState { intake, max_body });
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

    /// The encoding of error replies: the request's, JSON for anything
    /// that looks like JSON, else protobuf.
    fn of_reply(headers: &HeaderMap) -> Format {
        Format::from_headers(headers).unwrap_or_else(|| {
            let json = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.to_ascii_lowercase().contains("json"));
            if json { Format::Json } else { Format::Protobuf }
        })
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
const CODE_NOT_FOUND: i32 = 5;
const CODE_RESOURCE_EXHAUSTED: i32 = 8;
const CODE_UNIMPLEMENTED: i32 = 12;
const CODE_UNAVAILABLE: i32 = 14;

fn reply(status: StatusCode, format: Format, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    response
}

fn error_reply(status: StatusCode, format: Format, code: i32, message: String) -> Response {
    reply(status, format, format.encode(&RpcStatus { code, message }))
}

/// Paths and methods no signal is served on.
async fn not_served(State(state): State<HttpState>, request: Request) -> Response {
    state.intake.refused(RefusedRequest::NotServed);
    let format = Format::of_reply(request.headers());
    if request.method() == axum::http::Method::POST {
        let message = format!("nothing is served at {}", request.uri().path());
        error_reply(StatusCode::NOT_FOUND, format, CODE_NOT_FOUND, message)
    } else {
        let message = format!("{} is not allowed; OTLP/HTTP takes POST", request.method());
        let mut response = error_reply(StatusCode::METHOD_NOT_ALLOWED, format, CODE_UNIMPLEMENTED, message);
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
        response
    }
}

async fn export<S: OtlpSignal>(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let Some(format) = Format::from_headers(&parts.headers) else {
        state.intake.refused(RefusedRequest::UnsupportedMediaType);
        let message = format!("Content-Type must be {PROTOBUF} or {JSON}");
        return error_reply(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Format::of_reply(&parts.headers),
            CODE_INVALID_ARGUMENT,
            message,
        );
    };
    let limit = || format!("max_request_body_size ({} bytes)", state.max_body);
    let declared =
        parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > state.max_body as u64) {
        return refusal_reply(format, state.intake.too_large("the body", limit()));
    }
    let mut reservation = match state.intake.reserve(declared.unwrap_or(state.max_body as u64)).await {
        Ok(reservation) => reservation,
        Err(refusal) => return refusal_reply(format, refusal),
    };
    let body = match Limited::new(body, state.max_body).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) if err.is::<LengthLimitError>() => {
            return refusal_reply(format, state.intake.too_large("the body", limit()));
        }
        Err(err) => return refusal_reply(format, state.intake.malformed::<S>(format!("cannot read the body: {err}"))),
    };
    let keep = |body: Bytes| state.intake.keep_encoded(S::SIGNAL, body);
    let decoded = reservation.metered(|meter| decode::<S>(format, &parts.headers, body, state.max_body, meter, &keep));
    let request = match decoded {
        Ok(Ok(request)) => request,
        Ok(Err(Undecodable::TooLarge)) => {
            let refusal = state.intake.too_large("the decompressed body", limit());
            return refusal_reply(format, refusal);
        }
        Ok(Err(Undecodable::Malformed(reason))) => return refusal_reply(format, state.intake.malformed::<S>(reason)),
        Err(no_room) => return refusal_reply(format, state.intake.no_room(no_room)),
    };
    let result = match request {
        Read::Encoded(encoded) => state.intake.accept_encoded(encoded, Some(peer)).await,
        Read::Decoded(request) => state.intake.accept::<S>(request, Some(peer)).await,
    };
    drop(reservation);
    match result {
        Ok(accepted) => reply(StatusCode::OK, format, format.encode(&S::response(accepted.rejected, accepted.message))),
        Err(refusal) => refusal_reply(format, refusal),
    }
}

fn refusal_reply(format: Format, refusal: Refusal) -> Response {
    match refusal {
        Refusal::Malformed(message) => error_reply(StatusCode::BAD_REQUEST, format, CODE_INVALID_ARGUMENT, message),
        Refusal::TooLarge(message) => {
            error_reply(StatusCode::PAYLOAD_TOO_LARGE, format, CODE_RESOURCE_EXHAUSTED, message)
        }
        Refusal::Unavailable(message) => {
            let mut response = error_reply(StatusCode::SERVICE_UNAVAILABLE, format, CODE_UNAVAILABLE, message);
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
            response
        }
    }
}

/// Decodes an OTLP/HTTP body of `signal` as the receiver does (content type
/// and encoding from `headers`, the same limits), for fuzzing and tests.
pub fn decode_body(signal: Signal, headers: &HeaderMap, body: Bytes, limit: usize) -> Result<Payload, DecodeError> {
    fn run<S: OtlpSignal>(headers: &HeaderMap, body: Bytes, limit: usize) -> Result<Payload, DecodeError> {
        let format = Format::from_headers(headers).ok_or(DecodeError::ContentType)?;
        let mut reservation =
            RequestBudget::new(IN_FLIGHT_BYTES).try_reserve(body.len() as u64).ok_or(DecodeError::NoRoom)?;
        match reservation.metered(|meter| decode::<S>(format, headers, body, limit, meter, &Err)) {
            Ok(Ok(Read::Decoded(request))) => Ok(S::into_payload(request)),
            Ok(Ok(Read::Encoded(encoded))) => Ok(Payload::Encoded(encoded)),
            Ok(Err(Undecodable::TooLarge)) => Err(DecodeError::TooLarge),
            Ok(Err(Undecodable::Malformed(why))) => Err(DecodeError::Malformed(why)),
            Err(_) => Err(DecodeError::NoRoom),
        }
    }
    match signal {
        Signal::Logs => run::<Logs>(headers, body, limit),
        Signal::Metrics => run::<Metrics>(headers, body, limit),
        Signal::Traces => run::<Traces>(headers, body, limit),
    }
}

/// Why [`decode_body`] refused a body.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// `Content-Type` is neither OTLP protobuf nor JSON.
    #[error("unsupported content type")]
    ContentType,
    /// The receiver's request budget cannot take it.
    #[error("no room in the request budget")]
    NoRoom,
    /// Larger than the limit once decompressed.
    #[error("larger than the limit once decompressed")]
    TooLarge,
    /// Not what its headers say.
    #[error("malformed: {0}")]
    Malformed(String),
}

/// Why a body could not be decoded.
enum Undecodable {
    /// Its decompressed form is larger than the limit.
    TooLarge,
    /// It is not what its headers say.
    Malformed(String),
}

/// A request as read: kept in its encoding, or decoded.
enum Read<R> {
    Encoded(Encoded),
    Decoded(R),
}

/// Undoes `Content-Encoding` and decodes the request, reading under
/// `meter`, unless `keep` keeps a protobuf body encoded.
fn decode<S: OtlpSignal>(
    format: Format,
    headers: &HeaderMap,
    body: Bytes,
    limit: usize,
    meter: &Meter<'_>,
    keep: &dyn Fn(Bytes) -> Result<Encoded, Bytes>,
) -> Result<Read<S::Request>, Undecodable> {
    let body = decompress(headers, body, limit, meter)?;
    let malformed = |err: &dyn std::fmt::Display| Undecodable::Malformed(err.to_string());
    match format {
        Format::Protobuf => match keep(body) {
            Ok(encoded) => Ok(Read::Encoded(encoded)),
            Err(body) => S::Request::decode(MeteredBuf::new(body, meter)).map(Read::Decoded).map_err(|e| malformed(&e)),
        },
        Format::Json => serde_json::from_reader::<_, S::Request>(BufReader::new(MeteredRead::new(&body[..], meter)))
            .map(Read::Decoded)
            .map_err(|e| malformed(&e)),
    }
}

/// Undoes `Content-Encoding`, refusing output larger than `limit`.
fn decompress(headers: &HeaderMap, body: Bytes, limit: usize, meter: &Meter<'_>) -> Result<Bytes, Undecodable> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    let malformed = |why: String| Undecodable::Malformed(why);
    let reader: Box<dyn std::io::Read> = match encoding.as_str() {
        "" | "identity" => return Ok(body),
        "gzip" => Box::new(flate2::read::MultiGzDecoder::new(&body[..])),
        "deflate" => Box::new(flate2::read::ZlibDecoder::new(&body[..])),
        "zstd" => Box::new(zstd::Decoder::new(&body[..]).map_err(|err| malformed(format!("bad zstd body: {err}")))?),
        other => {
            return Err(malformed(format!("unsupported Content-Encoding {other:?}; use gzip, zstd, deflate or none")));
        }
    };
    let mut out = Vec::new();
    let read = MeteredRead::new(reader, meter)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|err| malformed(format!("cannot decompress the {encoding} body: {err}")))?;
    if read > limit {
        return Err(Undecodable::TooLarge);
    }
    Ok(Bytes::from(out))
}
