//! The API side: a client from the configured credentials, and one
//! list-then-watch per kind that keeps [`Metadata`] current. A watch that
//! fails reconnects with exponential backoff (and relists after a `410
//! Gone`); meanwhile the last known state stays in use.

use std::{
    collections::HashSet,
    fmt::Debug,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use flowtel_core::self_telemetry::{Counter, Gauge, MetricsRegistry};
use futures::StreamExt as _;
use k8s_openapi::{
    api::{
        apps::v1::ReplicaSet,
        core::v1::{Pod, Service},
    },
    serde::de::DeserializeOwned,
};
use kube::{
    Api, Client, Resource, ResourceExt as _,
    runtime::{WatchStreamExt as _, watcher},
};
use tokio::task::JoinHandle;

use super::{
    config::K8sAttributesConfig,
    metadata::{Kind, Metadata, ObjectKey, PodInfo},
};

/// The shared view of the cluster and whether every kind has been listed.
#[derive(Default)]
pub struct ClusterView {
    metadata: RwLock<Metadata>,
    listed: RwLock<HashSet<Kind>>,
}

impl ClusterView {
    /// Whether every kind has been listed once.
    pub fn synced(&self) -> bool {
        self.listed.read().map(|l| l.len() == Kind::ALL.len()).unwrap_or(false)
    }

    fn mark_listed(&self, kind: Kind) {
        if let Ok(mut listed) = self.listed.write() {
            listed.insert(kind);
        }
    }

    /// Changes the metadata; a poisoned lock (a panic elsewhere) still lets
    /// the view be read and written.
    pub fn update(&self, change: impl FnOnce(&mut Metadata)) {
        let mut guard = self.metadata.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        change(&mut guard);
    }

    /// Reads the metadata.
    pub fn read<T>(&self, read: impl FnOnce(&Metadata) -> T) -> T {
        let guard = self.metadata.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        read(&guard)
    }
}

/// The running watches; they stop when this is dropped.
pub struct Watches(Vec<JoinHandle<()>>);

impl Drop for Watches {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Starts one watch per kind, restricted as `filter` says.
pub fn start(
    client: Client,
    config: &K8sAttributesConfig,
    view: Arc<ClusterView>,
    registry: &MetricsRegistry,
) -> Watches {
    view.update(|m| m.exclude_pods(config.exclude.pod_patterns()));
    let namespace = config.filter.namespace.as_deref();
    let (pods, services, replica_sets) = (
        scoped::<Pod>(&client, namespace),
        scoped::<Service>(&client, namespace),
        scoped::<ReplicaSet>(&client, namespace),
    );
    let mut pod_selector = watcher::Config::default();
    let (labels, fields) = (config.pod_label_selector(), config.pod_field_selector());
    if !labels.is_empty() {
        pod_selector = pod_selector.labels(&labels);
    }
    if !fields.is_empty() {
        pod_selector = pod_selector.fields(&fields);
    }
    let tasks = vec![
        spawn(
            pods,
            pod_selector,
            Kind::Pod,
            &view,
            registry,
            |m, pod: &Pod| m.apply_pod(PodInfo::from_object(pod)),
            |m, key| {
                m.remove_pod(key);
            },
        ),
        spawn(
            replica_sets,
            watcher::Config::default(),
            Kind::ReplicaSet,
            &view,
            registry,
            Metadata::apply_replica_set,
            Metadata::remove_replica_set,
        ),
        spawn(
            services,
            watcher::Config::default(),
            Kind::Service,
            &view,
            registry,
            Metadata::apply_service,
            Metadata::remove_service,
        ),
        spawn(
            Api::all(client.clone()),
            watcher::Config::default(),
            Kind::Node,
            &view,
            registry,
            Metadata::apply_node,
            |m, key| {
                m.remove_node(&key.1);
            },
        ),
        spawn(
            Api::all(client),
            watcher::Config::default(),
            Kind::Namespace,
            &view,
            registry,
            Metadata::apply_namespace,
            |m, key| {
                m.remove_namespace(&key.1);
            },
        ),
    ];
    Watches(tasks)
}

/// An API of a namespaced kind: one namespace's objects, or all.
fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// Counters of one watch.
struct WatchMetrics {
    errors: Counter,
    relists: Counter,
    objects: Gauge,
}

fn object_key<K: Resource>(object: &K) -> ObjectKey {
    (object.namespace().unwrap_or_default(), object.name_any())
}

fn spawn<K>(
    api: Api<K>,
    selector: watcher::Config,
    kind: Kind,
    view: &Arc<ClusterView>,
    registry: &MetricsRegistry,
    apply: fn(&mut Metadata, &K),
    remove: fn(&mut Metadata, &ObjectKey),
) -> JoinHandle<()>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let labels = [("resource", kind.as_str())];
    let metrics = WatchMetrics {
        errors: registry.counter(
            "flowtel_k8s_watch_errors_total",
            "Failed Kubernetes list or watch calls (each is retried with backoff).",
            &labels,
        ),
        relists: registry.counter(
            "flowtel_k8s_relists_total",
            "Complete listings of a kind (the first, and after a watch was lost or expired).",
            &labels,
        ),
        objects: registry.gauge("flowtel_k8s_objects", "Kubernetes objects known, by kind.", &labels),
    };
    let view = view.clone();
    tokio::spawn(async move {
        let mut events = std::pin::pin!(watcher(api, selector).default_backoff());
        // Keys seen during a listing; what a relist does not show is gone.
        let mut listing: Option<HashSet<ObjectKey>> = None;
        let mut last_warning: Option<Instant> = None;
        while let Some(event) = events.next().await {
            match event {
                Ok(watcher::Event::Init) => listing = Some(HashSet::new()),
                Ok(watcher::Event::InitApply(object)) => {
                    if let Some(listing) = &mut listing {
                        listing.insert(object_key(&object));
                    }
                    view.update(|m| apply(m, &object));
                }
                Ok(watcher::Event::InitDone) => {
                    if let Some(listed) = listing.take() {
                        view.update(|m| m.retain(kind, &listed));
                    }
                    metrics.relists.inc();
                    view.mark_listed(kind);
                    tracing::debug!(resource = kind.as_str(), "Kubernetes objects listed.");
                }
                Ok(watcher::Event::Apply(object)) => view.update(|m| apply(m, &object)),
                Ok(watcher::Event::Delete(object)) => view.update(|m| remove(m, &object_key(&object))),
                Err(err) => {
                    metrics.errors.inc();
                    if last_warning.is_none_or(|at| at.elapsed() > Duration::from_secs(30)) {
                        last_warning = Some(Instant::now());
                        tracing::warn!(
                            resource = kind.as_str(),
                            error = %err,
                            "Kubernetes watch failed; retrying with backoff and keeping the last known state."
                        );
                    }
                }
            }
            metrics.objects.set(view.read(|m| m.count(kind)) as i64);
        }
    })
}
