//! The `prometheus` exporter: serves the metrics of its pipelines on
//! `/metrics` for Prometheus to scrape, as the collector's does: names and
//! units translated (`network.flow.bytes` → `network_flow_bytes_total`),
//! delta sums and histograms accumulated to cumulative, a `target_info`
//! series per resource, OpenMetrics with exemplars when enabled and asked
//! for. See the README.

mod config;
mod state;
mod translate;

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Instant,
};

use async_trait::async_trait;
use axum::{Router, extract::State as AxumState, response::IntoResponse, routing::get};
use flowtel_core::{
    ComponentKind, Payload,
    component::{ComponentError, ExportError, ExportOutcome, Exporter, ExporterContext},
    exposition::{self, Format},
    self_telemetry::Counter,
};
use tokio_util::sync::CancellationToken;

pub use config::{PrometheusConfig, ResourceToTelemetry};
use state::{Refusal, State};

/// The `prometheus` exporter.
pub struct PrometheusExporter {
    shared: Arc<Shared>,
    server: Mutex<Option<(CancellationToken, tokio::task::JoinHandle<()>)>>,
}

/// What the exporter and its scrape handler share.
struct Shared {
    config: PrometheusConfig,
    state: Mutex<State>,
    /// `flowtel_prometheus_dropped_points_total` by reason, set at start.
    dropped: std::sync::OnceLock<[Counter; 3]>,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The scrape: series idle past `metric_expiration` are gone first.
    fn scrape(&self, format: Format) -> String {
        let families = {
            let mut state = self.state();
            state.expire(self.config.metric_expiration, Instant::now());
            state.families(self.config.send_timestamps)
        };
        let const_labels: Vec<(String, String)> =
            self.config.const_labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        exposition::encode(format, families, &const_labels)
    }
}

impl PrometheusExporter {
    /// An exporter with the given (validated) config.
    pub fn new(config: &PrometheusConfig) -> Self {
        PrometheusExporter {
            shared: Arc::new(Shared {
                config: config.clone(),
                state: Mutex::new(State::new()),
                dropped: std::sync::OnceLock::new(),
            }),
            server: Mutex::new(None),
        }
    }

    /// The text a scrape in `format` gets now.
    pub fn scrape(&self, format: Format) -> String {
        self.shared.scrape(format)
    }
}

async fn metrics(AxumState(shared): AxumState<Arc<Shared>>, headers: http::HeaderMap) -> impl IntoResponse {
    let accept = headers.get(http::header::ACCEPT).and_then(|value| value.to_str().ok());
    let format = Format::negotiate(accept, shared.config.enable_open_metrics);
    let body = tokio::task::spawn_blocking(move || shared.scrape(format)).await.unwrap_or_default();
    ([(http::header::CONTENT_TYPE, format.content_type())], body)
}

#[async_trait]
impl Exporter for PrometheusExporter {
    async fn start(&self, ctx: ExporterContext) -> Result<(), ComponentError> {
        let error = |message: String| ComponentError::new(ComponentKind::Exporter, &ctx.id, message);
        let id = ctx.id.to_string();
        let counter = |reason: &str| {
            ctx.metrics.counter(
                "flowtel_prometheus_dropped_points_total",
                "Data points the prometheus exporter could not expose: unsupported_type (exponential histograms, summaries), conflict (a name taken by another type or other buckets), max_series.",
                &[("exporter", id.as_str()), ("reason", reason)],
            )
        };
        let _ = self.shared.dropped.set([counter("unsupported_type"), counter("conflict"), counter("max_series")]);
        let shared = self.shared.clone();
        ctx.metrics.observed_gauge(
            "flowtel_prometheus_series",
            "Series the prometheus exporter exposes.",
            &[("exporter", id.as_str())],
            move || shared.state().series() as i64,
        );

        let endpoint = &self.shared.config.endpoint;
        let addresses = endpoint.resolve().await.map_err(|e| error(format!("endpoint {endpoint}: {e}")))?;
        let listener = std::net::TcpListener::bind(addresses.as_slice())
            .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
            .map_err(|e| error(format!("cannot listen on {endpoint}: {e}")))?;
        let local = listener.local_addr().map_err(|e| error(e.to_string()))?;
        let app = Router::new().route("/metrics", get(metrics)).with_state(self.shared.clone());
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = match &self.shared.config.tls {
            None => {
                let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| error(e.to_string()))?;
                tokio::spawn(async move {
                    if let Err(err) = axum::serve(listener, app).with_graceful_shutdown(stopped.cancelled_owned()).await
                    {
                        tracing::error!(error = %err, "The prometheus exporter's server failed.");
                    }
                })
            }
            Some(tls) => {
                let config = tls.rustls_config().map_err(error)?;
                let rustls = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config));
                let server =
                    axum_server::tls_rustls::from_tcp_rustls(listener, rustls).map_err(|e| error(e.to_string()))?;
                tokio::spawn(async move {
                    // Stopping drops the server: the listener and connections close.
                    tokio::select! {
                        result = server.serve(app.into_make_service()) => if let Err(err) = result {
                            tracing::error!(error = %err, "The prometheus exporter's server failed.");
                        },
                        () = stopped.cancelled() => {}
                    }
                })
            }
        };
        let scheme = if self.shared.config.tls.is_some() { "https" } else { "http" };
        tracing::info!(exporter = %ctx.id, address = %local, scheme, "Serving metrics for Prometheus on /metrics.");
        *self.server.lock().unwrap_or_else(PoisonError::into_inner) = Some((stop, task));
        Ok(())
    }

    async fn export(&self, payload: &Payload) -> Result<ExportOutcome, ExportError> {
        let Payload::Metrics(resources) = payload else { return Ok(ExportOutcome::default()) };
        let refused = {
            let mut state = self.shared.state();
            if state.series() >= self.shared.config.max_series {
                state.expire(self.shared.config.metric_expiration, Instant::now());
            }
            state.add(&self.shared.config, resources, Instant::now())
        };
        if let Some(counters) = self.shared.dropped.get() {
            for (reason, points) in refused {
                let index = match reason {
                    Refusal::UnsupportedType => 0,
                    Refusal::Conflict => 1,
                    Refusal::MaxSeries => 2,
                };
                counters[index].add(points);
            }
        }
        Ok(ExportOutcome::default())
    }

    async fn shutdown(&self) {
        let server = self.server.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some((stop, task)) = server {
            stop.cancel();
            let _ = task.await;
        }
    }
}

#[cfg(test)]
mod tests;
