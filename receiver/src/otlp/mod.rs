//! The `otlp` receiver: OTLP/gRPC (default 127.0.0.1:4317) and OTLP/HTTP
//! (default 127.0.0.1:4318, protobuf and JSON, gzip or zstd) for logs,
//! metrics and traces.
//!
//! Status codes follow the OTLP specification: a malformed request gets gRPC
//! `INVALID_ARGUMENT` / HTTP 400 (not retryable); a full pipeline gets
//! `UNAVAILABLE` / HTTP 503 with `Retry-After` (retryable). Both are counted.

mod config;
mod grpc;
mod http;
mod signal;

use async_trait::async_trait;
use flowtel_core::{
    ComponentId, ComponentKind, Signal,
    component::{ComponentError, Receiver, ReceiverContext},
    self_telemetry::{MetricsRegistry, ReceiverItems, SignalCounters},
    topology::{PushError, ReceiverOutput},
};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

pub use config::{GrpcConfig, HttpConfig, OtlpReceiverConfig, ProtocolsConfig};
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

/// Hands decoded requests to the pipelines and counts what happened to them.
#[derive(Clone)]
pub(crate) struct Intake {
    output: ReceiverOutput,
    items: ReceiverItems,
    malformed: SignalCounters,
}

/// Why a request was not taken.
pub(crate) enum Refusal {
    /// The body is not a valid OTLP message.
    Malformed(String),
    /// Try again later.
    Unavailable(PushError),
}

impl Intake {
    fn new(id: &ComponentId, transport: &str, output: ReceiverOutput, registry: &MetricsRegistry) -> Self {
        let id = id.to_string();
        let labels = [("receiver", id.as_str()), ("transport", transport)];
        Intake {
            output,
            items: ReceiverItems::new(registry, &id, transport),
            malformed: SignalCounters::new(
                registry,
                "flowtel_receiver_malformed_requests_total",
                "Requests refused because they were not valid OTLP.",
                &labels,
            ),
        }
    }

    pub(crate) fn accepts(&self, signal: Signal) -> bool {
        self.output.accepts(signal)
    }

    /// Counts a request that could not be decoded.
    pub(crate) fn malformed<S: OtlpSignal>(&self, reason: impl std::fmt::Display) -> Refusal {
        self.malformed.get(S::SIGNAL).inc();
        tracing::debug!(signal = %S::SIGNAL, reason = %reason, "Refused a malformed OTLP request.");
        Refusal::Malformed(format!("malformed OTLP {} request: {reason}", S::SIGNAL))
    }

    /// Hands a decoded request from the peer at `peer` to the pipelines.
    pub(crate) async fn accept<S: OtlpSignal>(
        &self,
        request: S::Request,
        peer: Option<std::net::SocketAddr>,
    ) -> Result<(), Refusal> {
        let payload = S::into_payload(request);
        let items = payload.item_count() as u64;
        let client = flowtel_core::payload::Client { address: peer.map(|p| p.ip().to_canonical()) };
        match self.output.push_from(payload, client).await {
            Ok(()) => {
                self.items.accepted.get(S::SIGNAL).add(items);
                Ok(())
            }
            Err(err) => {
                self.items.refused.get(S::SIGNAL).add(items);
                Err(Refusal::Unavailable(err))
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
        if let Some(grpc) = &self.config.protocols.grpc {
            let listener = bind(&ctx.id, "gRPC", &grpc.endpoint).await?;
            let intake = Intake::new(&ctx.id, "grpc", ctx.output.clone(), &ctx.metrics);
            tracing::info!(receiver = %ctx.id, endpoint = %listener.local_addr().map_err(|e| ComponentError::new(ComponentKind::Receiver, &ctx.id, e))?, "Serving OTLP/gRPC.");
            self.servers.push(grpc::serve(listener, grpc, intake, self.stop.clone()));
        }
        if let Some(http) = &self.config.protocols.http {
            let listener = bind(&ctx.id, "HTTP", &http.endpoint).await?;
            let intake = Intake::new(&ctx.id, "http", ctx.output.clone(), &ctx.metrics);
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
