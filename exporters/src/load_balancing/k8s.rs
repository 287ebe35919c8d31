//! The `k8s` resolver: the ready endpoints of a Service, watched on the API
//! server — its EndpointSlices (`discovery.k8s.io/v1`), or its Endpoints
//! where the server serves no EndpointSlice v1 (before Kubernetes 1.21).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use flowtel_core::{kube_client, self_telemetry::LogLimiter};
use futures::StreamExt as _;
use k8s_openapi::api::{core::v1::Endpoints, discovery::v1::EndpointSlice};
use kube::{
    Api, ResourceExt as _,
    api::ListParams,
    runtime::{WatchStreamExt as _, watcher},
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{
    config::K8sResolver,
    resolver::{self, RETRY_AFTER, Resolutions, endpoints_on},
};

/// Where the namespace of the pod flowtel runs in is written.
const POD_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// `(name, namespace)` of the Service `name.namespace` or `name`.
fn service_and_namespace(service: &str) -> (String, String) {
    match service.split_once('.') {
        Some((name, namespace)) => (name.to_owned(), namespace.to_owned()),
        None => {
            let namespace = std::fs::read_to_string(POD_NAMESPACE_FILE)
                .map(|text| text.trim().to_owned())
                .ok()
                .filter(|text| !text.is_empty())
                .unwrap_or_else(|| "default".to_owned());
            (service.to_owned(), namespace)
        }
    }
}

/// What one object (a slice, or the Endpoints) says is ready.
type Ready = BTreeSet<String>;

/// The ready backends of an EndpointSlice.
fn slice_backends(slice: &EndpointSlice, config: &K8sResolver, service: &str, namespace: &str) -> Ready {
    let mut found = Ready::new();
    for endpoint in &slice.endpoints {
        if endpoint.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
            continue;
        }
        match endpoint.hostname.as_deref().filter(|_| config.return_hostnames) {
            Some(host) => {
                found.extend(config.ports.iter().map(|port| format!("{host}.{service}.{namespace}:{port}")));
            }
            None => {
                let addresses: Vec<IpAddr> = endpoint.addresses.iter().filter_map(|a| a.parse().ok()).collect();
                found.extend(endpoints_on(&addresses, &config.ports));
            }
        }
    }
    found
}

/// The ready backends of an Endpoints object.
fn endpoints_backends(endpoints: &Endpoints, config: &K8sResolver, service: &str, namespace: &str) -> Ready {
    let mut found = Ready::new();
    for address in endpoints.subsets.iter().flatten().flat_map(|s| s.addresses.iter().flatten()) {
        match address.hostname.as_deref().filter(|_| config.return_hostnames) {
            Some(host) => {
                found.extend(config.ports.iter().map(|port| format!("{host}.{service}.{namespace}:{port}")));
            }
            None => {
                let addresses: Vec<IpAddr> = address.ip.parse().ok().into_iter().collect();
                found.extend(endpoints_on(&addresses, &config.ports));
            }
        }
    }
    found
}

/// Publishes the union of what every object says.
fn publish(backends: &watch::Sender<Vec<String>>, objects: &BTreeMap<String, Ready>) {
    resolver::publish(backends, objects.values().flatten().cloned().collect());
}

/// Follows the watch of `api` until it ends or `stop`, keeping each
/// object's ready backends.
async fn follow<K>(
    api: Api<K>,
    selector: watcher::Config,
    ready_of: impl Fn(&K) -> Ready,
    backends: &watch::Sender<Vec<String>>,
    resolutions: &Resolutions,
    stop: &CancellationToken,
) where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let warning = LogLimiter::default();
    let mut objects: BTreeMap<String, Ready> = BTreeMap::new();
    let mut listing: BTreeMap<String, Ready> = BTreeMap::new();
    let events = watcher(api, selector).default_backoff();
    futures::pin_mut!(events);
    loop {
        let event = tokio::select! {
            event = events.next() => event,
            () = stop.cancelled() => return,
        };
        match event {
            None => return,
            Some(Ok(watcher::Event::Apply(object))) => {
                objects.insert(object.name_any(), ready_of(&object));
                publish(backends, &objects);
            }
            Some(Ok(watcher::Event::Delete(object))) => {
                objects.remove(&object.name_any());
                publish(backends, &objects);
            }
            Some(Ok(watcher::Event::Init)) => listing.clear(),
            Some(Ok(watcher::Event::InitApply(object))) => {
                listing.insert(object.name_any(), ready_of(&object));
            }
            Some(Ok(watcher::Event::InitDone)) => {
                objects = std::mem::take(&mut listing);
                resolutions.record(true);
                publish(backends, &objects);
            }
            Some(Err(error)) => {
                resolutions.record(false);
                if warning.due() {
                    tracing::warn!(%error, "Watching the load_balancing exporter's Service failed; keeping the last backends and retrying.");
                }
            }
        }
    }
}

/// Watches the Service's ready endpoints until `stop`, publishing them.
pub(super) async fn watch(
    config: K8sResolver,
    backends: &watch::Sender<Vec<String>>,
    resolutions: &Resolutions,
    stop: &CancellationToken,
) {
    let (service, namespace) = service_and_namespace(&config.service);
    let warning = LogLimiter::default();
    let client = loop {
        match kube_client::client(config.auth_type, config.kubeconfig.as_deref(), config.context.as_deref()).await {
            Ok(client) => break client,
            Err(error) => {
                resolutions.record(false);
                if warning.due() {
                    tracing::error!(%error, "The load_balancing exporter's k8s resolver cannot reach the API server; retrying.");
                }
                tokio::select! {
                    () = tokio::time::sleep(RETRY_AFTER) => {}
                    () = stop.cancelled() => return,
                }
            }
        }
    };
    let by_label = format!("kubernetes.io/service-name={service}");
    let (slices, endpoints) = (
        Api::<EndpointSlice>::namespaced(client.clone(), &namespace),
        Api::<Endpoints>::namespaced(client, &namespace),
    );
    let one = ListParams::default().labels(&by_label).limit(1);
    let probe = tokio::time::timeout(config.timeout, slices.list(&one)).await;
    let served = !matches!(probe, Ok(Err(kube::Error::Api(status))) if status.code == 404);
    tracing::info!(service = %service, namespace = %namespace, via = if served { "EndpointSlices" } else { "Endpoints" }, "Watching the load_balancing exporter's backends.");
    if served {
        let selector = watcher::Config::default().labels(&by_label);
        follow(slices, selector, |s| slice_backends(s, &config, &service, &namespace), backends, resolutions, stop)
            .await;
    } else {
        let selector = watcher::Config::default().fields(&format!("metadata.name={service}"));
        follow(
            endpoints,
            selector,
            |e| endpoints_backends(e, &config, &service, &namespace),
            backends,
            resolutions,
            stop,
        )
        .await;
    }
}
