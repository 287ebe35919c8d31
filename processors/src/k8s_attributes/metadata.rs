//! What flowtel knows of the cluster: the watched objects, reduced to what
//! enrichment needs, and the IP index over them. Watchers write it, the
//! processor reads it; it is a plain value, so it is tested without a server.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
};

use k8s_openapi::{
    api::{
        apps::v1::ReplicaSet,
        core::v1::{Namespace, Node, Pod, Service},
    },
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};

/// A namespaced object's `namespace/name`.
pub type ObjectKey = (String, String);

/// The part of a pod enrichment uses.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodInfo {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.uid`.
    pub uid: String,
    /// `spec.nodeName`.
    pub node: Option<String>,
    /// `spec.hostname`, else the pod's name.
    pub hostname: String,
    /// `status.startTime`, RFC 3339.
    pub start_time: Option<String>,
    /// Its containers (init containers last).
    pub containers: Vec<ContainerInfo>,
    /// `status.podIPs` (or `status.podIP`).
    pub ips: Vec<IpAddr>,
    /// `spec.hostNetwork`: its IPs are its node's.
    pub host_network: bool,
    /// Finished pods give their IP back to the cluster.
    pub finished: bool,
    /// The controlling owner, as written on the pod.
    pub owner: Option<Owner>,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
}

/// One container of a pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerInfo {
    /// `spec.containers[].name`.
    pub name: String,
    /// `spec.containers[].image`, as written (`registry/repo:tag`).
    pub image: String,
    /// `status.containerStatuses[].containerID` without the `runtime://`
    /// prefix, once it runs.
    pub id: Option<String>,
    /// `spec.containers[].ports[].containerPort`: the ports it serves.
    pub ports: Vec<u16>,
}

/// An owner reference: kind, name and uid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// `Deployment`, `ReplicaSet`, `DaemonSet`, …
    pub kind: String,
    /// The owner's name.
    pub name: String,
    /// The owner's uid.
    pub uid: String,
}

/// A service: its selector and its cluster IPs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceInfo {
    /// `metadata.name`.
    pub name: String,
    /// `spec.selector` (empty: selects nothing).
    pub selector: BTreeMap<String, String>,
    /// `spec.clusterIPs` (or `spec.clusterIP`), without `None`.
    pub cluster_ips: Vec<IpAddr>,
}

/// Labels and annotations of a node or namespace, and a node's addresses.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabelledInfo {
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
    /// A node's `status.addresses` that are IPs.
    pub addresses: Vec<IpAddr>,
}

/// What an address belongs to.
#[derive(Clone, Debug, PartialEq)]
pub enum Endpoint<'a> {
    /// A pod with its own IP.
    Pod(&'a PodInfo),
    /// A node: one of its addresses, or a host-network pod's.
    Node(&'a str),
    /// A service's cluster IP.
    Service {
        /// The service's namespace.
        namespace: &'a str,
        /// The service's name.
        name: &'a str,
    },
}

/// The kinds of objects watched, for metrics and sync state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Pods.
    Pod,
    /// ReplicaSets (to find a pod's Deployment).
    ReplicaSet,
    /// Services.
    Service,
    /// Nodes.
    Node,
    /// Namespaces.
    Namespace,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 5] = [Kind::Pod, Kind::ReplicaSet, Kind::Service, Kind::Node, Kind::Namespace];

    /// The resource name, as in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Pod => "pods",
            Kind::ReplicaSet => "replicasets",
            Kind::Service => "services",
            Kind::Node => "nodes",
            Kind::Namespace => "namespaces",
        }
    }
}

/// The cluster as last seen.
#[derive(Debug, Default)]
pub struct Metadata {
    pods: HashMap<ObjectKey, PodInfo>,
    pods_by_uid: HashMap<String, ObjectKey>,
    pods_by_container: HashMap<String, ObjectKey>,
    replica_sets: HashMap<ObjectKey, Option<Owner>>,
    services: HashMap<ObjectKey, ServiceInfo>,
    nodes: HashMap<String, LabelledInfo>,
    namespaces: HashMap<String, LabelledInfo>,
    pod_by_ip: HashMap<IpAddr, ObjectKey>,
    node_by_ip: HashMap<IpAddr, String>,
    service_by_ip: HashMap<IpAddr, ObjectKey>,
    /// Counts changes that can alter an enrichment (a pod's status update
    /// that changes none of the fields kept does not count).
    generation: u64,
    /// Names of pods never described (`exclude.pods`).
    excluded_pods: Vec<regex::Regex>,
}

fn key(meta: &ObjectMeta) -> ObjectKey {
    (meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default())
}

fn controller(owners: Option<&Vec<OwnerReference>>) -> Option<Owner> {
    let owners = owners?;
    let owner = owners.iter().find(|o| o.controller == Some(true)).or_else(|| owners.first())?;
    Some(Owner { kind: owner.kind.clone(), name: owner.name.clone(), uid: owner.uid.clone() })
}

fn ips<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for ip in values.into_iter().filter_map(|v| v.parse::<IpAddr>().ok()) {
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

/// A pod's containers with their ids, from spec and status (a status
/// without its spec entry still counts).
fn containers(pod: &Pod) -> Vec<ContainerInfo> {
    let spec = pod.spec.as_ref();
    let mut containers: Vec<ContainerInfo> = spec
        .into_iter()
        .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
        .map(|c| ContainerInfo {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            id: None,
            ports: c.ports.iter().flatten().filter_map(|p| u16::try_from(p.container_port).ok()).collect(),
        })
        .collect();
    let statuses = pod
        .status
        .as_ref()
        .into_iter()
        .flat_map(|s| s.container_statuses.iter().flatten().chain(s.init_container_statuses.iter().flatten()));
    for status in statuses {
        let id = status
            .container_id
            .as_deref()
            .map(|id| id.split_once("://").map_or(id, |(_, id)| id).to_owned())
            .filter(|id| !id.is_empty());
        match containers.iter_mut().find(|c| c.name == status.name) {
            Some(container) => container.id = id,
            None => containers.push(ContainerInfo {
                name: status.name.clone(),
                image: status.image.clone(),
                id,
                ports: Vec::new(),
            }),
        }
    }
    containers
}

impl PodInfo {
    /// The container with this id.
    pub fn container_by_id(&self, id: &str) -> Option<&ContainerInfo> {
        self.containers.iter().find(|c| c.id.as_deref() == Some(id))
    }

    /// The container with this name.
    pub fn container_by_name(&self, name: &str) -> Option<&ContainerInfo> {
        self.containers.iter().find(|c| c.name == name)
    }

    /// The one container that declares `port`.
    pub fn container_serving(&self, port: u16) -> Option<&ContainerInfo> {
        let mut serving = self.containers.iter().filter(|c| c.ports.contains(&port));
        let first = serving.next()?;
        serving.next().is_none().then_some(first)
    }

    /// Its one container, when it has exactly one.
    pub fn only_container(&self) -> Option<&ContainerInfo> {
        match self.containers.as_slice() {
            [only] => Some(only),
            _ => None,
        }
    }

    /// The fields of a pod object.
    pub fn from_object(pod: &Pod) -> PodInfo {
        let (namespace, name) = key(&pod.metadata);
        let spec = pod.spec.as_ref();
        let status = pod.status.as_ref();
        let listed = status.and_then(|s| s.pod_ips.as_ref()).map(|list| list.iter().map(|p| p.ip.as_str()));
        let ips = match listed {
            Some(list) => ips(list.chain(status.and_then(|s| s.pod_ip.as_deref()))),
            None => ips(status.and_then(|s| s.pod_ip.as_deref())),
        };
        let phase = status.and_then(|s| s.phase.as_deref());
        PodInfo {
            name,
            namespace,
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            containers: containers(pod),
            hostname: spec.and_then(|s| s.hostname.clone()).unwrap_or_else(|| key(&pod.metadata).1),
            start_time: status.and_then(|s| s.start_time.as_ref()).map(|t| t.0.to_string()),
            node: spec.and_then(|s| s.node_name.clone()),
            ips,
            host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
            finished: matches!(phase, Some("Succeeded" | "Failed")),
            owner: controller(pod.metadata.owner_references.as_ref()),
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            annotations: pod.metadata.annotations.clone().unwrap_or_default(),
        }
    }
}

impl Metadata {
    /// Pods whose name matches one of these are not kept (`exclude.pods`).
    pub fn exclude_pods(&mut self, patterns: Vec<regex::Regex>) {
        self.excluded_pods = patterns;
    }

    /// Adds or replaces a pod.
    pub fn apply_pod(&mut self, pod: PodInfo) {
        let key = (pod.namespace.clone(), pod.name.clone());
        if self.excluded_pods.iter().any(|pattern| pattern.is_match(&pod.name)) {
            self.remove_pod(&key);
            return;
        }
        if self.pods.get(&key) == Some(&pod) {
            return;
        }
        self.remove_pod(&key);
        self.generation += 1;
        if !pod.finished {
            for ip in &pod.ips {
                if pod.host_network {
                    if let Some(node) = &pod.node {
                        self.node_by_ip.entry(*ip).or_insert_with(|| node.clone());
                    }
                } else {
                    // The newest pod with an IP owns it: an IP is reused only
                    // after its pod is gone or finished.
                    self.pod_by_ip.insert(*ip, key.clone());
                }
            }
        }
        if !pod.uid.is_empty() {
            self.pods_by_uid.insert(pod.uid.clone(), key.clone());
        }
        for id in pod.containers.iter().filter_map(|c| c.id.as_ref()) {
            self.pods_by_container.insert(id.clone(), key.clone());
        }
        self.pods.insert(key, pod);
    }

    /// Forgets a pod.
    pub fn remove_pod(&mut self, key: &ObjectKey) {
        let Some(old) = self.pods.remove(key) else { return };
        self.generation += 1;
        self.pods_by_uid.remove(&old.uid);
        for id in old.containers.iter().filter_map(|c| c.id.as_ref()) {
            self.pods_by_container.remove(id);
        }
        for ip in &old.ips {
            if self.pod_by_ip.get(ip) == Some(key) {
                self.pod_by_ip.remove(ip);
                // Another live pod may still hold the address (a finished one
                // does not): it owns it now.
                let heir = self
                    .pods
                    .iter()
                    .find(|(_, p)| !p.finished && !p.host_network && p.ips.contains(ip))
                    .map(|(k, _)| k.clone());
                if let Some(heir) = heir {
                    self.pod_by_ip.insert(*ip, heir);
                }
            }
        }
        if old.host_network {
            self.reindex_nodes();
        }
    }

    /// Adds or replaces a ReplicaSet (only its owner matters).
    pub fn apply_replica_set(&mut self, replica_set: &ReplicaSet) {
        let owner = controller(replica_set.metadata.owner_references.as_ref());
        if self.replica_sets.insert(key(&replica_set.metadata), owner.clone()) != Some(owner) {
            self.generation += 1;
        }
    }

    /// Forgets a ReplicaSet.
    pub fn remove_replica_set(&mut self, key: &ObjectKey) {
        if self.replica_sets.remove(key).is_some() {
            self.generation += 1;
        }
    }

    /// Adds or replaces a service.
    pub fn apply_service(&mut self, service: &Service) {
        let key = key(&service.metadata);
        let spec = service.spec.as_ref();
        let listed = spec.and_then(|s| s.cluster_ips.as_ref()).map(|l| l.iter().map(String::as_str));
        let cluster_ips = match listed {
            Some(list) => ips(list.chain(spec.and_then(|s| s.cluster_ip.as_deref()))),
            None => ips(spec.and_then(|s| s.cluster_ip.as_deref())),
        };
        let info = ServiceInfo {
            name: key.1.clone(),
            selector: spec.and_then(|s| s.selector.clone()).unwrap_or_default(),
            cluster_ips,
        };
        if self.services.get(&key) == Some(&info) {
            return;
        }
        self.remove_service(&key);
        self.generation += 1;
        for ip in &info.cluster_ips {
            self.service_by_ip.insert(*ip, key.clone());
        }
        self.services.insert(key, info);
    }

    /// Forgets a service.
    pub fn remove_service(&mut self, key: &ObjectKey) {
        if let Some(old) = self.services.remove(key) {
            self.generation += 1;
            for ip in old.cluster_ips {
                if self.service_by_ip.get(&ip) == Some(key) {
                    self.service_by_ip.remove(&ip);
                }
            }
        }
    }

    /// Adds or replaces a node.
    pub fn apply_node(&mut self, node: &Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let addresses = node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .map(|list| ips(list.iter().map(|a| a.address.as_str())))
            .unwrap_or_default();
        let info = LabelledInfo {
            uid: node.metadata.uid.clone().unwrap_or_default(),
            labels: node.metadata.labels.clone().unwrap_or_default(),
            annotations: node.metadata.annotations.clone().unwrap_or_default(),
            addresses,
        };
        if self.nodes.get(&name) != Some(&info) {
            self.nodes.insert(name, info);
            self.reindex_nodes();
        }
    }

    /// Forgets a node.
    pub fn remove_node(&mut self, name: &str) {
        if self.nodes.remove(name).is_some() {
            self.reindex_nodes();
        }
    }

    /// Adds or replaces a namespace.
    pub fn apply_namespace(&mut self, namespace: &Namespace) {
        let info = LabelledInfo {
            uid: namespace.metadata.uid.clone().unwrap_or_default(),
            labels: namespace.metadata.labels.clone().unwrap_or_default(),
            annotations: namespace.metadata.annotations.clone().unwrap_or_default(),
            addresses: Vec::new(),
        };
        if self.namespaces.insert(namespace.metadata.name.clone().unwrap_or_default(), info.clone()) != Some(info) {
            self.generation += 1;
        }
    }

    /// Forgets a namespace.
    pub fn remove_namespace(&mut self, name: &str) {
        if self.namespaces.remove(name).is_some() {
            self.generation += 1;
        }
    }

    /// Replaces every object of `kind` with a fresh listing (after a watch
    /// restarted): what the listing lacks is gone.
    pub fn retain(&mut self, kind: Kind, listed: &std::collections::HashSet<ObjectKey>) {
        match kind {
            Kind::Pod => {
                let gone: Vec<ObjectKey> = self.pods.keys().filter(|k| !listed.contains(*k)).cloned().collect();
                for key in gone {
                    self.remove_pod(&key);
                }
            }
            Kind::ReplicaSet => {
                let before = self.replica_sets.len();
                self.replica_sets.retain(|k, _| listed.contains(k));
                if self.replica_sets.len() != before {
                    self.generation += 1;
                }
            }
            Kind::Service => {
                let gone: Vec<ObjectKey> = self.services.keys().filter(|k| !listed.contains(*k)).cloned().collect();
                for key in gone {
                    self.remove_service(&key);
                }
            }
            Kind::Node => {
                self.nodes.retain(|name, _| listed.contains(&(String::new(), name.clone())));
                self.reindex_nodes();
            }
            Kind::Namespace => {
                let before = self.namespaces.len();
                self.namespaces.retain(|name, _| listed.contains(&(String::new(), name.clone())));
                if self.namespaces.len() != before {
                    self.generation += 1;
                }
            }
        }
    }

    /// How many objects of `kind` are known.
    pub fn count(&self, kind: Kind) -> usize {
        match kind {
            Kind::Pod => self.pods.len(),
            Kind::ReplicaSet => self.replica_sets.len(),
            Kind::Service => self.services.len(),
            Kind::Node => self.nodes.len(),
            Kind::Namespace => self.namespaces.len(),
        }
    }

    /// What `/debug/k8s` shows: the counts of each kind, every pod with its
    /// addresses, node and workload, and every service with its addresses.
    pub fn debug_view(&self) -> serde_json::Value {
        let mut pods: Vec<serde_json::Value> = self
            .pods
            .values()
            .map(|pod| {
                let workload = self.workload(pod);
                serde_json::json!({
                    "namespace": pod.namespace,
                    "name": pod.name,
                    "ips": pod.ips.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "node": pod.node,
                    "host_network": pod.host_network,
                    "workload": workload.map(|o| format!("{}/{}", o.kind, o.name)),
                    "service": self.service_of(pod),
                    "containers": pod.containers.iter().map(|c| &c.name).collect::<Vec<_>>(),
                })
            })
            .collect();
        pods.sort_by_key(|pod| (pod["namespace"].to_string(), pod["name"].to_string()));
        let mut services: Vec<serde_json::Value> = self
            .services
            .iter()
            .map(|((namespace, _), service)| {
                serde_json::json!({
                    "namespace": namespace,
                    "name": service.name,
                    "cluster_ips": service.cluster_ips.iter().map(ToString::to_string).collect::<Vec<_>>(),
                })
            })
            .collect();
        services.sort_by_key(|service| (service["namespace"].to_string(), service["name"].to_string()));
        let counts: serde_json::Map<String, serde_json::Value> =
            Kind::ALL.iter().map(|kind| (kind.as_str().to_owned(), self.count(*kind).into())).collect();
        serde_json::json!({"objects": counts, "generation": self.generation, "pods": pods, "services": services})
    }

    /// How many changes that can alter an enrichment were made so far.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn reindex_nodes(&mut self) {
        self.generation += 1;
        self.node_by_ip.clear();
        for (name, node) in &self.nodes {
            for ip in &node.addresses {
                self.node_by_ip.insert(*ip, name.clone());
            }
        }
        for pod in self.pods.values().filter(|p| p.host_network && !p.finished) {
            if let Some(node) = &pod.node {
                for ip in &pod.ips {
                    self.node_by_ip.entry(*ip).or_insert_with(|| node.clone());
                }
            }
        }
    }

    /// What `ip` belongs to: a pod's own IP first, then a node's (which
    /// host-network pods share), then a service's cluster IP.
    pub fn resolve(&self, ip: IpAddr) -> Option<Endpoint<'_>> {
        let ip = ip.to_canonical();
        if let Some(pod) = self.pod_by_ip.get(&ip).and_then(|key| self.pods.get(key)) {
            return Some(Endpoint::Pod(pod));
        }
        if let Some(node) = self.node_by_ip.get(&ip) {
            return Some(Endpoint::Node(node));
        }
        let (namespace, name) = self.service_by_ip.get(&ip)?;
        Some(Endpoint::Service { namespace, name })
    }

    /// The pod with this uid.
    pub fn pod_by_uid(&self, uid: &str) -> Option<&PodInfo> {
        self.pods.get(self.pods_by_uid.get(uid)?)
    }

    /// The pod running the container with this id.
    pub fn pod_by_container(&self, id: &str) -> Option<&PodInfo> {
        self.pods.get(self.pods_by_container.get(id)?)
    }

    /// The pod `namespace/name`.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<&PodInfo> {
        self.pods.get(&(namespace.to_owned(), name.to_owned()))
    }

    /// The workload that runs a pod: a ReplicaSet is followed to its
    /// Deployment; otherwise the pod's own controller.
    pub fn workload(&self, pod: &PodInfo) -> Option<Owner> {
        let owner = pod.owner.as_ref()?;
        if owner.kind == "ReplicaSet"
            && let Some(Some(deployment)) = self.replica_sets.get(&(pod.namespace.clone(), owner.name.clone()))
            && deployment.kind == "Deployment"
        {
            return Some(deployment.clone());
        }
        Some(owner.clone())
    }

    /// The first service (by name) of the pod's namespace whose selector
    /// matches the pod's labels.
    pub fn service_of(&self, pod: &PodInfo) -> Option<&str> {
        self.services
            .iter()
            .filter(|((namespace, _), service)| {
                *namespace == pod.namespace
                    && !service.selector.is_empty()
                    && service.selector.iter().all(|(k, v)| pod.labels.get(k) == Some(v))
            })
            .map(|(_, service)| service.name.as_str())
            .min()
    }

    /// A node's labels and annotations.
    pub fn node(&self, name: &str) -> Option<&LabelledInfo> {
        self.nodes.get(name)
    }

    /// The cluster's uid, as the collector defines it: the uid of the
    /// `kube-system` namespace.
    pub fn cluster_uid(&self) -> Option<&str> {
        self.namespaces.get("kube-system").map(|n| n.uid.as_str()).filter(|uid| !uid.is_empty())
    }

    /// A namespace's labels and annotations.
    pub fn namespace(&self, name: &str) -> Option<&LabelledInfo> {
        self.namespaces.get(name)
    }
}
