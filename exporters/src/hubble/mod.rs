//! The `hubble` exporter: serves the Hubble API (Observer and Peer, with
//! gRPC health and reflection) from flow and drop log records, so Cilium's
//! `hubble` CLI, relay and UI read flowtel's flows without Cilium.
//!
//! Records become Hubble `Flow`s ([`convert`]) in a bounded ring of the
//! newest `max_flows` ([`store`]); `GetFlows` serves the ring and follows new
//! flows through a broadcast that never makes the pipeline wait. A gateway
//! serves the flows its agents sent over OTLP with their own node names.

mod config;
pub mod convert;
pub mod field_mask;
pub mod filter;
pub mod proto;
mod server;
pub mod store;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use flowtel_core::{
    Payload,
    component::{ComponentError, ComponentKind, ExportError, ExportOutcome, Exporter, ExporterContext},
    export::TlsFileError,
    self_telemetry::Counter,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

pub use config::{HubbleConfig, ServerTls};

use self::{
    proto::{observer::observer_server::ObserverServer, peer::peer_server::PeerServer},
    server::{ObserverService, PeerService, ServerInfo},
    store::FlowStore,
};

/// The health service name Hubble clients check.
pub const HEALTH_SERVICE: &str = "hubble.server.Observer";

/// The `hubble` exporter.
pub struct HubbleExporter {
    config: HubbleConfig,
    names: convert::NodeNames,
    store: Arc<FlowStore>,
    counters: Mutex<Option<(Counter, Counter)>>,
    server: Mutex<Option<Server>>,
}

/// The running API server, on its own runtime.
struct Server {
    stop: CancellationToken,
    task: JoinHandle<()>,
    runtime: tokio::runtime::Runtime,
}

impl HubbleExporter {
    /// An exporter for `config`; the server starts with the pipelines.
    pub fn new(config: &HubbleConfig) -> Self {
        let local_host = flowtel_core::linux::host_name().unwrap_or_else(|| "flowtel".into());
        let local_node = config.node_name.clone().unwrap_or_else(|| local_host.clone());
        HubbleExporter {
            store: Arc::new(FlowStore::new(config.max_flows.get(), config.follower_buffer.get(), &local_node)),
            config: config.clone(),
            names: convert::NodeNames { local_host, local_node },
            counters: Mutex::new(None),
            server: Mutex::new(None),
        }
    }

    /// The flows served, for tests and benchmarks that feed records directly.
    pub fn store(&self) -> &Arc<FlowStore> {
        &self.store
    }

    /// Turns the flow and drop records of `payload` into flows; returns how
    /// many records were taken and how many were of other kinds.
    pub fn take(&self, payload: &Payload) -> (u64, u64) {
        let Payload::Logs(resources) = payload else { return (0, payload.item_count() as u64) };
        let mut flows = Vec::new();
        let mut skipped = 0;
        for resource in resources {
            for scope in &resource.scope_logs {
                for record in &scope.log_records {
                    match convert::flow(resource.resource.as_ref(), record, &self.names) {
                        Some(mut flow) => {
                            flow.uuid = uuid();
                            flows.push(flow);
                        }
                        None => skipped += 1,
                    }
                }
            }
        }
        let taken = flows.len() as u64;
        self.store.push(flows);
        (taken, skipped)
    }
}

/// A random (version 4) UUID, as Hubble gives every flow one.
fn uuid() -> String {
    let bits: u128 = rand::random();
    let bits = (bits & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let hex = format!("{bits:032x}");
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|source| TlsFileError::Unreadable { path: path.to_path_buf(), source })
}

#[async_trait]
impl Exporter for HubbleExporter {
    async fn start(&self, ctx: ExporterContext) -> Result<(), ComponentError> {
        let error = |message: String| ComponentError::new(ComponentKind::Exporter, &ctx.id, message);
        let id = ctx.id.to_string();
        let labels = [("exporter", id.as_str())];
        let lost = ctx.metrics.counter(
            "flowtel_hubble_follower_lost_flows_total",
            "Flows live GetFlows followers lost by falling behind (each was told with a LostEvent).",
            &labels,
        );
        let skipped = ctx.metrics.counter(
            "flowtel_hubble_skipped_records_total",
            "Log records that are not flows or drops, so have no Hubble form.",
            &labels,
        );
        *self.counters.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((lost.clone(), skipped));

        let endpoint = &self.config.endpoint;
        let address = endpoint.resolve().await.map_err(|e| error(format!("endpoint {endpoint}: {e}")))?;
        let address = *address.first().ok_or_else(|| error(format!("endpoint {endpoint} resolves to nothing")))?;
        let listener = std::net::TcpListener::bind(address)
            .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
            .map_err(|e| error(format!("cannot listen on {endpoint}: {e}")))?;
        let local = listener.local_addr().map_err(|e| error(e.to_string()))?;

        let mut builder = tonic::transport::Server::builder();
        let mut tls_server_name = None;
        if let Some(tls) = &self.config.tls {
            let unreadable = |e: TlsFileError| error(e.to_string());
            let identity =
                Identity::from_pem(read(&tls.cert_file).map_err(unreadable)?, read(&tls.key_file).map_err(unreadable)?);
            let mut settings = ServerTlsConfig::new().identity(identity);
            if let Some(ca) = &tls.client_ca_file {
                settings = settings.client_ca_root(Certificate::from_pem(read(ca).map_err(unreadable)?));
            }
            builder = builder.tls_config(settings).map_err(|e| error(format!("tls: {e}")))?;
            tls_server_name = Some(endpoint.host().to_owned());
        }
        let info = ServerInfo {
            node_name: self.names.local_node.clone(),
            address: endpoint.to_string(),
            tls_server_name,
            cluster_name: self.config.cluster_name.clone(),
        };
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<ObserverServer<ObserverService>>().await;
        health.set_service_status(HEALTH_SERVICE, tonic_health::ServingStatus::Serving).await;
        health.set_service_status("", tonic_health::ServingStatus::Serving).await;
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection().build_v1().map_err(|e| error(format!("reflection: {e}")))?;
        let reflection_v1alpha = reflection().build_v1alpha().map_err(|e| error(format!("reflection: {e}")))?;
        let observer = ObserverService { store: self.store.clone(), info: info.clone(), follower_lost: lost };
        let peer = PeerService { store: self.store.clone(), info };
        let router = builder
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(ObserverServer::new(observer))
            .add_service(PeerServer::new(peer));
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        // The API runs on a thread of its own: no client, however slow or
        // hostile its requests, can take time from the pipelines, OTLP
        // intake or flowtel's own metrics.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("flowtel-hubble")
            .enable_all()
            .build()
            .map_err(|e| error(format!("cannot start the Hubble API's thread: {e}")))?;
        let task = runtime.spawn(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => listener,
                Err(err) => {
                    tracing::error!(error = %err, "The Hubble server cannot take its socket.");
                    return;
                }
            };
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            if let Err(err) = router.serve_with_incoming_shutdown(incoming, stopped.cancelled()).await {
                tracing::error!(error = %err, "The Hubble server stopped.");
            }
        });
        *self.server.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Server { stop, task, runtime });
        tracing::info!(exporter = %ctx.id, address = %local, node = %self.names.local_node, "Serving the Hubble API.");
        Ok(())
    }

    async fn export(&self, payload: &Payload) -> Result<ExportOutcome, ExportError> {
        let (_, skipped) = self.take(payload);
        if skipped > 0
            && let Some((_, counter)) = self.counters.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref()
        {
            counter.add(skipped);
        }
        Ok(ExportOutcome::default())
    }

    async fn shutdown(&self) {
        let server = self.server.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(Server { stop, task, runtime }) = server {
            stop.cancel();
            // Followers' streams end with the server; give them a moment.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), task).await;
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_version_4() {
        let id = uuid();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
        assert_ne!(uuid(), id);
    }
}
