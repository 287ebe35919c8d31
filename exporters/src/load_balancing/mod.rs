//! The `load_balancing` exporter: spreads data over several OTLP backends
//! (gateways) by a routing key with consistent hashing, so everything of
//! one trace, one service or one flow reaches the same backend, and a
//! change of backends moves only its share.
//!
//! Each backend has its own sending queue and retries (the `protocol::otlp`
//! settings). When a backend goes away, what its queue held — waiting,
//! being sent or retried — is routed again to the new owners, so nothing is
//! lost (an attempt cut short may have arrived: at least once).

mod config;
mod k8s;
mod resolver;
mod ring;
mod routing;
#[cfg(test)]
mod tests;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, PoisonError, RwLock},
    time::Duration,
};

use async_trait::async_trait;
use flowtel_core::{
    Payload,
    component::{ComponentError, ExportError, ExportOutcome, Exporter, ExporterContext},
    export::{BuildError, Offer, QueueConfig, QueueInlet, QueueName, RetryConfig, SendingQueue},
    self_telemetry::{Counter, Gauge, MetricsRegistry},
};
use tokio::{sync::watch, task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;

pub use self::config::{
    DnsResolver, K8sResolver, LoadBalancingConfig, ProtocolConfig, ResolverConfig, RoutingKey, StaticResolver,
};
use self::{resolver::Resolutions, ring::Ring, routing::Router};

/// Makes the exporter for one backend endpoint (`host:port`).
pub type BackendExporters = Arc<dyn Fn(&str) -> Result<Arc<dyn Exporter>, BuildError> + Send + Sync>;

/// How long backends' queues may drain at shutdown, after the exporter's own queue.
const BACKEND_DRAIN: Duration = Duration::from_secs(5);

/// The backends as exports see them.
#[derive(Default)]
struct Routes {
    ring: Ring,
    /// Each ring backend's queue, by the ring's index.
    inlets: Vec<QueueInlet>,
}

/// What the exporter keeps once started.
struct Running {
    name: String,
    registry: Arc<MetricsRegistry>,
    backends_gauge: Gauge,
    rerouted: Counter,
}

/// The backends and how to make one: shared by the exports and the task
/// that applies the resolver's answers.
struct Backends {
    router: Router,
    make_backend: BackendExporters,
    backend_queue: QueueConfig,
    backend_retry: RetryConfig,
    routes: RwLock<Arc<Routes>>,
    queues: tokio::sync::Mutex<BTreeMap<String, SendingQueue>>,
}

/// The `load_balancing` exporter.
pub struct LoadBalancingExporter {
    backends: Arc<Backends>,
    resolver: ResolverConfig,
    stop: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl LoadBalancingExporter {
    /// The exporter; `make_backend` builds each backend's OTLP exporter,
    /// whose queue and retries are `backend_queue` and `backend_retry`.
    pub fn new(
        config: &LoadBalancingConfig,
        make_backend: BackendExporters,
        backend_queue: QueueConfig,
        backend_retry: RetryConfig,
    ) -> Self {
        let backends = Backends {
            router: Router { key: config.routing_key, attributes: config.routing_attributes.clone() },
            make_backend,
            backend_queue,
            backend_retry,
            routes: RwLock::default(),
            queues: tokio::sync::Mutex::default(),
        };
        LoadBalancingExporter {
            backends: Arc::new(backends),
            resolver: config.resolver.clone(),
            stop: CancellationToken::new(),
            tasks: Mutex::new(Vec::new()),
        }
    }
}

/// The side that changes the backends, on the resolver's answers.
struct Balancer {
    running: Running,
    backends: Arc<Backends>,
}

impl Balancer {
    /// Makes `endpoints` the backends: new ones get a queue, the ring
    /// changes, and what the queues of removed ones held is routed again.
    async fn set_backends(&self, endpoints: &[String]) {
        let backends = &*self.backends;
        let mut queues = backends.queues.lock().await;
        for endpoint in endpoints {
            if queues.contains_key(endpoint) {
                continue;
            }
            match (backends.make_backend)(endpoint) {
                Ok(exporter) => {
                    let name = QueueName { exporter: &self.running.name, backend: Some(endpoint) };
                    let queue = SendingQueue::start(
                        name,
                        exporter,
                        &backends.backend_queue,
                        &backends.backend_retry,
                        None,
                        &self.running.registry,
                    );
                    queues.insert(endpoint.clone(), queue);
                }
                Err(error) => {
                    tracing::error!(exporter = %self.running.name, backend = %endpoint, %error, "Cannot make an exporter for a resolved backend; leaving it out.");
                }
            }
        }
        let kept: Vec<String> = endpoints.iter().filter(|e| queues.contains_key(*e)).cloned().collect();
        if kept.is_empty() {
            return;
        }
        let ring = Ring::new(&kept);
        let inlets =
            ring.backends().iter().filter_map(|endpoint| queues.get(endpoint).map(SendingQueue::inlet)).collect();
        *backends.routes.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(Routes { ring, inlets });
        let removed: Vec<String> = queues.keys().filter(|e| !kept.contains(e)).cloned().collect();
        self.running.backends_gauge.set(kept.len() as i64);
        tracing::info!(exporter = %self.running.name, backends = ?kept, removed = ?removed, "Backends changed.");
        let mut retired = Vec::new();
        for endpoint in removed {
            if let Some(mut queue) = queues.remove(&endpoint) {
                retired.extend(queue.retire().await);
            }
        }
        drop(queues);
        let items: usize = retired.iter().map(Payload::item_count).sum();
        if items > 0 {
            self.running.rerouted.add(items as u64);
            tracing::info!(exporter = %self.running.name, items, "Routing what removed backends held to their keys' new owners.");
        }
        for payload in retired {
            // The ring was just given backends, so every part finds one.
            let _ = deliver(backends, payload).await;
        }
    }
}

/// Routes `payload` and queues each part at its backend; a part offered to
/// a backend retired meanwhile is routed again. `Err` when no backend is
/// known yet.
async fn deliver(backends: &Backends, payload: Payload) -> Result<(), Payload> {
    let mut pending = vec![payload];
    while let Some(payload) = pending.pop() {
        let current = backends.routes.read().unwrap_or_else(PoisonError::into_inner).clone();
        for (backend, part) in routing::route(payload, &backends.router, &current.ring)? {
            let Some(inlet) = current.inlets.get(backend) else { continue };
            if let Offer::Retired(part) = inlet.offer(part).await {
                pending.push(part);
            }
        }
    }
    Ok(())
}

#[async_trait]
impl Exporter for LoadBalancingExporter {
    async fn start(&self, ctx: ExporterContext) -> Result<(), ComponentError> {
        let name = ctx.id.to_string();
        let labels = [("exporter", name.as_str())];
        let running = Running {
            backends_gauge: ctx.metrics.gauge(
                "flowtel_load_balancing_backends",
                "Backends a load_balancing exporter routes to.",
                &labels,
            ),
            rerouted: ctx.metrics.counter(
                "flowtel_load_balancing_rerouted_items_total",
                "Items a removed backend's queue held, routed again to their keys' new owners.",
                &labels,
            ),
            name: name.clone(),
            registry: ctx.metrics.clone(),
        };
        let balancer = Balancer { running, backends: self.backends.clone() };
        let (found, mut changes) = watch::channel(Vec::new());
        let resolutions = Resolutions::new(&ctx.metrics, &name);
        let resolving = tokio::spawn(resolver::run(self.resolver.clone(), found, resolutions, self.stop.clone()));
        let stop = self.stop.clone();
        let applying = tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { return },
                    () = stop.cancelled() => return,
                }
                let endpoints = changes.borrow_and_update().clone();
                balancer.set_backends(&endpoints).await;
            }
        });
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner).extend([resolving, applying]);
        Ok(())
    }

    async fn export(&self, payload: &Payload) -> Result<ExportOutcome, ExportError> {
        match deliver(&self.backends, payload.clone()).await {
            Ok(()) => Ok(ExportOutcome::default()),
            Err(_) => Err(ExportError::retryable("no backend resolved yet", None)),
        }
    }

    async fn shutdown(&self) {
        self.stop.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        for task in tasks {
            let _ = task.await;
        }
        let deadline = Instant::now() + BACKEND_DRAIN;
        let mut queues = self.backends.queues.lock().await;
        for queue in queues.values_mut() {
            queue.shutdown(deadline).await;
        }
    }
}
