//! The HTTP endpoint for flowtel's own metrics and health.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use super::MetricsRegistry;
use crate::{config::HostPort, exposition::Format};

/// Liveness and readiness, as `/healthz` and `/readyz` report them.
#[derive(Clone, Default)]
pub struct Health {
    ready: Arc<AtomicBool>,
}

impl Health {
    /// Marks flowtel ready (every component started) or not (shutting down).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Whether flowtel is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct ServerState {
    registry: Arc<MetricsRegistry>,
    health: Health,
}

/// Serves `/metrics` (Prometheus text, or OpenMetrics when asked), `/healthz`,
/// `/readyz` and the `/debug/<page>` pages components and the binary add.
pub struct TelemetryServer {
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
    /// The address actually bound (useful with port 0).
    pub local_addr: std::net::SocketAddr,
}

impl TelemetryServer {
    /// Binds `address` and starts serving.
    pub async fn start(address: &HostPort, registry: Arc<MetricsRegistry>, health: Health) -> std::io::Result<Self> {
        let addrs = address.resolve().await?;
        let listener = TcpListener::bind(addrs.as_slice()).await?;
        let local_addr = listener.local_addr()?;
        let app = Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .route("/debug", get(debug_index))
            .route("/debug/pprof/profile", get(cpu_profile))
            .route("/debug/{page}", get(debug_page))
            .with_state(ServerState { registry, health });
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(stopped.cancelled_owned());
            if let Err(err) = serve.await {
                tracing::error!(error = %err, "Telemetry server failed.");
            }
        });
        tracing::info!(address = %local_addr, "Serving own metrics on /metrics, health on /healthz and /readyz.");
        Ok(TelemetryServer { stop, task: Some(task), local_addr })
    }

    /// Stops serving. Safe to call twice.
    pub async fn shutdown(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

async fn metrics(State(state): State<ServerState>, headers: http::HeaderMap) -> impl IntoResponse {
    let accept = headers.get(http::header::ACCEPT).and_then(|value| value.to_str().ok());
    let format = Format::negotiate(accept, true);
    ([(http::header::CONTENT_TYPE, format.content_type())], state.registry.render(format))
}

fn json(value: &serde_json::Value) -> axum::response::Response {
    let text = serde_json::to_string_pretty(value).unwrap_or_default() + "\n";
    ([(http::header::CONTENT_TYPE, "application/json")], text).into_response()
}

async fn debug_index(State(state): State<ServerState>) -> impl IntoResponse {
    json(&serde_json::json!({"pages": state.registry.debug_pages()}))
}

/// `/debug/pprof/profile?seconds=N` (30 when absent, as in Go).
async fn cpu_profile(uri: http::Uri) -> axum::response::Response {
    let seconds = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("seconds="))
        .map_or(Some(30), |text| text.parse().ok());
    let Some(seconds) = seconds else {
        return (StatusCode::BAD_REQUEST, "seconds must be a whole number\n").into_response();
    };
    match super::profile::cpu_profile(seconds).await {
        Ok(profile) => ([(http::header::CONTENT_TYPE, "application/octet-stream")], profile).into_response(),
        Err(err @ super::profile::ProfileError::Busy) => (StatusCode::CONFLICT, format!("{err}\n")).into_response(),
        Err(err @ super::profile::ProfileError::BadDuration) => {
            (StatusCode::BAD_REQUEST, format!("{err}\n")).into_response()
        }
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{err}\n")).into_response(),
    }
}

async fn debug_page(
    State(state): State<ServerState>,
    axum::extract::Path(page): axum::extract::Path<String>,
) -> axum::response::Response {
    // Pages gather state under components' locks: off the async workers.
    let registry = state.registry.clone();
    let rendered = tokio::task::spawn_blocking(move || registry.debug_page(&page)).await.ok().flatten();
    match rendered {
        Some(value) => json(&value),
        None => (StatusCode::NOT_FOUND, "no such debug page; /debug lists them\n").into_response(),
    }
}

async fn readyz(State(state): State<ServerState>) -> impl IntoResponse {
    if state.health.is_ready() { (StatusCode::OK, "ready\n") } else { (StatusCode::SERVICE_UNAVAILABLE, "not ready\n") }
}
