//! The `otlp` receiver: OTLP/gRPC (default 127.0.0.1:4317) and OTLP/HTTP
//! (default 127.0.0.1:4318, protobuf and JSON, gzip or zstd) for logs,
//! metrics and traces.
//!
//! Status codes follow the OTLP specification: a malformed request gets gRPC
//! `INVALID_ARGUMENT` / HTTP 400 (not retryable); a request larger than the
//! configured limit `RESOURCE_EXHAUSTED` without retry information / 413
//! (not retryable: it can never fit); full pipelines or a full memory budget
//! ([`budget`]) `UNAVAILABLE` / 503 with `Retry-After` (retryable). Items
//! with trace or span ids of the wrong length are removed and the sender
//! told in a partial success. Everything refused is counted.

mod budget;
mod config;
mod grpc;
mod http;
mod signal;

use async_trait::async_trait;
use bytes::Bytes;
use flowtel_core::{
    ComponentId, ComponentKind, Payload, Signal,
    component::{ComponentError, Receiver, ReceiverContext},
    intake::{RECEIVER_PUSH_WAIT, ReceiverOutput},
    payload::Encoded,
    self_telemetry::{Counter, MetricsRegistry, ReceiverItems, SignalCounters},
};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use self::budget::{NoRoom, RequestBudget, Reservation};
pub use budget::IN_FLIGHT_BYTES;
pub use config::{GrpcConfig, HttpConfig, OtlpReceiverConfig, ProtocolsConfig};
pub use http::{DecodeError, decode_body};
use signal::OtlpSignal;

/// The `otlp` receiver.
pub struct OtlpReceiver {
    config: OtlpReceiverConfig,
    stop: CancellationToken,
    servers: Vec<JoinHandle<()>>,
}

impl OtlpReceiver {
    /// A receiver with the given (validated) config.
    pub fn new(config: OtlpReceiverConfig) -> Self {
        OtlpReceiver { config, stop: CancellationToken::new(), servers: Vec::new() }
    }
}

/// Why whole requests were refused, as counted in
/// `flowtel_receiver_refused_requests_total`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum RefusedRequest {
    /// Larger than the configured limit.
    TooLarge,
    /// The memory budget for requests in flight had no room.
    Busy,
    /// Neither protobuf nor JSON.
    UnsupportedMediaType,
    /// A path or method no signal is served on.
    NotServed,
}

impl RefusedRequest {
    const ALL: [RefusedRequest; 4] = [
        RefusedRequest::TooLarge,
        RefusedRequest::Busy,
        RefusedRequest::UnsupportedMediaType,
        RefusedRequest::NotServed,
    ];

    fn as_str(self) -> &'static str {
        match self {
            RefusedRequest::TooLarge => "too_large",
            RefusedRequest::Busy => "busy",
            RefusedRequest::UnsupportedMediaType => "unsupported_media_type",
            RefusedRequest::NotServed => "not_served",
        }
    }
}

/// Hands decoded requests to the pipelines and counts what happened to them.
#[derive(Clone)]
pub(crate) struct Intake {
    output: ReceiverOutput,
    budget: RequestBudget,
    items: ReceiverItems,
    malformed: SignalCounters,
    malformed_ids: SignalCounters,
    refused_requests: Vec<Counter>,
}

/// Why a request was not taken.
pub(crate) enum Refusal {
    /// The body is not a valid OTLP message.
    Malformed(String),
    /// Larger than allowed; retrying cannot help.
    TooLarge(String),
    /// Try again later.
    Unavailable(String),
}

/// A request the pipelines took, maybe without some of its items.
pub(crate) struct Accepted {
    /// Items removed for malformed trace or span ids.
    pub(crate) rejected: u64,
    /// Why, for the sender (empty when nothing was removed).
    pub(crate) message: String,
}

impl Intake {
    fn new(
        id: &ComponentId,
        transport: &str,
        output: ReceiverOutput,
        budget: RequestBudget,
        registry: &MetricsRegistry,
    ) -> Self {
        let id = id.to_string();
        let labels = [("receiver", id.as_str()), ("transport", transport)];
        Intake {
            output,
            budget,
            items: ReceiverItems::new(registry, &id, transport),
            malformed: SignalCounters::new(
                registry,
                "flowtel_receiver_malformed_requests_total",
                "Requests refused because they were not valid OTLP.",
                &labels,
            ),
            malformed_ids: SignalCounters::new(
                registry,
                "flowtel_receiver_malformed_id_items_total",
                "Items removed because a trace or span id had a length OTLP does not allow (the sender was told in a partial success).",
                &labels,
            ),
            refused_requests: RefusedRequest::ALL
                .iter()
                .map(|reason| {
                    registry.counter(
                        "flowtel_receiver_refused_requests_total",
                        "Whole requests refused before decoding, by reason.",
                        &[("receiver", id.as_str()), ("transport", transport), ("reason", reason.as_str())],
                    )
                })
                .collect(),
        }
    }

    pub(crate) fn accepts(&self, signal: Signal) -> bool {
        self.output.accepts(signal)
    }

    /// Keeps a request in its encoding when every pipeline of its signal
    /// takes it so and it passes the check ([`Encoded::check`]); the bytes
    /// back, to be decoded, otherwise.
    pub(crate) fn keep_encoded(&self, signal: Signal, message: Bytes) -> Result<Encoded, Bytes> {
        if !self.output.takes_encoded(signal) {
            return Err(message);
        }
        Encoded::check(signal, Vec::from(message), IN_FLIGHT_BYTES as usize).map_err(Bytes::from)
    }

    /// Counts a request refused as a whole.
    pub(crate) fn refused(&self, reason: RefusedRequest) {
        self.refused_requests[reason as usize].inc();
    }

    /// Counts a request that could not be decoded.
    pub(crate) fn malformed<S: OtlpSignal>(&self, reason: impl std::fmt::Display) -> Refusal {
        self.malformed.get(S::SIGNAL).inc();
        tracing::debug!(signal = %S::SIGNAL, reason = %reason, "Refused a malformed OTLP request.");
        Refusal::Malformed(format!("malformed OTLP {} request: {reason}", S::SIGNAL))
    }

    /// Counts a request larger than `limit` bytes.
    pub(crate) fn too_large(&self, what: &str, limit: impl std::fmt::Display) -> Refusal {
        self.refused(RefusedRequest::TooLarge);
        Refusal::TooLarge(format!("{what} is larger than {limit}; send smaller batches"))
    }

    /// Reserves memory for a request of `bytes` (on the wire), waiting a
    /// moment for room.
    pub(crate) async fn reserve(&self, bytes: u64) -> Result<Reservation, Refusal> {
        self.budget.reserve(bytes, RECEIVER_PUSH_WAIT).await.map_err(|_| self.no_room(NoRoom::Busy))
    }

    /// The refusal of a request the memory budget had no room for.
    pub(crate) fn no_room(&self, why: NoRoom) -> Refusal {
        match why {
            NoRoom::Busy => {
                self.refused(RefusedRequest::Busy);
                Refusal::Unavailable(
                    "flowtel is reading as many requests as its memory budget allows; retry later".into(),
                )
            }
            NoRoom::TooLarge => {
                self.too_large("the decoded request", format!("the receiver's memory budget ({IN_FLIGHT_BYTES} bytes)"))
            }
        }
    }

    /// Hands a decoded request from the peer at `peer` to the pipelines.
    pub(crate) async fn accept<S: OtlpSignal>(
        &self,
        request: S::Request,
        peer: Option<std::net::SocketAddr>,
    ) -> Result<Accepted, Refusal> {
        let mut payload = S::into_payload(request);
        let (rejected, message) = match payload.remove_malformed_ids() {
            Some(found) => {
                self.malformed_ids.get(S::SIGNAL).add(found.items);
                tracing::debug!(signal = %S::SIGNAL, items = found.items, first = %found.first, "Removed items with malformed ids.");
                (found.items, format!("{} {} removed: {}", found.items, S::SIGNAL.item_name(), found.first))
            }
            None => (0, String::new()),
        };
        self.push(payload, peer).await.map(|()| Accepted { rejected, message })
    }

    /// Hands a request kept in its encoding to the pipelines.
    pub(crate) async fn accept_encoded(
        &self,
        encoded: Encoded,
        peer: Option<std::net::SocketAddr>,
    ) -> Result<Accepted, Refusal> {
        self.push(Payload::Encoded(encoded), peer).await.map(|()| Accepted { rejected: 0, message: String::new() })
    }

    async fn push(&self, payload: Payload, peer: Option<std::net::SocketAddr>) -> Result<(), Refusal> {
        let (signal, items) = (payload.signal(), payload.item_count() as u64);
        let client = flowtel_core::payload::Client { address: peer.map(|p| p.ip().to_canonical()) };
        match self.output.push_stored(payload, client).await {
            Ok(()) => {
                self.items.accepted.get(signal).add(items);
                Ok(())
            }
            Err(err) => {
                self.items.refused.get(signal).add(items);
                Err(Refusal::Unavailable(err.to_string()))
            }
        }
    }
}

async fn bind(
    id: &ComponentId,
    protocol: &str,
    endpoint: &flowtel_core::config::HostPort,
) -> Result<TcpListener, ComponentError> {
    let error = |err: std::io::Error| {
        ComponentError::new(
            ComponentKind::Receiver,
            id,
            format!("cannot listen for OTLP/{protocol} on {endpoint}: {err}"),
        )
    };
    let addrs = endpoint.resolve().await.map_err(error)?;
    TcpListener::bind(addrs.as_slice()).await.map_err(error)
}

#[async_trait]
impl Receiver for OtlpReceiver {
    async fn start(&mut self, ctx: ReceiverContext) -> Result<(), ComponentError> {
        let budget = RequestBudget::new(IN_FLIGHT_BYTES);
        if let Some(grpc) = &self.config.protocols.grpc {
            let listener = bind(&ctx.id, "gRPC", &grpc.endpoint).await?;
            let intake = Intake::new(&ctx.id, "grpc", ctx.output.clone(), budget.clone(), &ctx.metrics);
            tracing::info!(receiver = %ctx.id, endpoint = %listener.local_addr().map_err(|e| ComponentError::new(ComponentKind::Receiver, &ctx.id, e))?, "Serving OTLP/gRPC.");
            self.servers.push(grpc::serve(listener, grpc, intake, self.stop.clone()));
        }
        if let Some(http) = &self.config.protocols.http {
            let listener = bind(&ctx.id, "HTTP", &http.endpoint).await?;
            let intake = Intake::new(&ctx.id, "http", ctx.output.clone(), budget.clone(), &ctx.metrics);
            tracing::info!(receiver = %ctx.id, endpoint = %listener.local_addr().map_err(|e| ComponentError::new(ComponentKind::Receiver, &ctx.id, e))?, "Serving OTLP/HTTP.");
            self.servers.push(http::serve(listener, http, intake, self.stop.clone()));
        }
        Ok(())
    }

    async fn shutdown(&mut self) {
        self.stop.cancel();
        for server in self.servers.drain(..) {
            let _ = server.await;
        }
    }
}
