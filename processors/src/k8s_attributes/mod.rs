//! The `k8s_attributes` processor: Kubernetes metadata on what flows through.
//!
//! It watches Pods, ReplicaSets, Services, Nodes and Namespaces and keeps an
//! IP index over them ([`metadata`]). Records with a 5-tuple (flows, drops,
//! TCP events, and metric points that carry addresses) get both ends
//! described, `k8s.src.*` and `k8s.dst.*`; OTLP resources from applications
//! find their pod through `pod_association` and get the collector's resource
//! attributes (`k8s.pod.name`, …). Attributes already set are kept.

mod config;
mod enrich;
mod metadata;
mod watch;

use flowtel_core::schema::{End, attr};
use std::{
    borrow::Cow,
    collections::{HashMap, VecDeque},
    net::IpAddr,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use flowtel_core::{
    ComponentKind, Payload,
    attributes::{find_text, insert_absent},
    component::{ComponentError, Processor, ProcessorContext},
    kube_client,
    payload::Client,
};
use opentelemetry_proto::tonic::{common::v1::KeyValue, resource::v1::Resource};
use tokio::time::Instant;

pub use self::{
    config::{
        AssociationFrom, AssociationRule, AssociationSource, AuthType, ExcludeConfig, ExcludedPod, ExtractConfig,
        FieldExtract, FieldSource, FilterConfig, K8sAttributesConfig, SelectorOp, SelectorRule,
    },
    enrich::{Attributes, Extractor},
    metadata::{ContainerInfo, Endpoint, Kind, Metadata, Owner, PodInfo},
    watch::ClusterView,
};

/// How often held data checks whether the metadata has been listed.
const SYNC_POLL: Duration = Duration::from_millis(50);

/// Payloads held at most while waiting for the first listing; more pass as they are.
const MAX_HELD: usize = 1024;

/// One `k8s_attributes` config: the view and watches its pipelines share.
pub struct K8sAttributes {
    config: K8sAttributesConfig,
    view: Arc<ClusterView>,
    watches: Arc<Mutex<Option<watch::Watches>>>,
}

impl K8sAttributes {
    /// The shared part of a (validated) config; nothing runs yet.
    pub fn new(config: K8sAttributesConfig) -> Self {
        K8sAttributes { config, view: Arc::new(ClusterView::default()), watches: Arc::new(Mutex::new(None)) }
    }

    /// A processor for one pipeline.
    pub fn processor(&self) -> K8sAttributesProcessor {
        K8sAttributesProcessor {
            config: self.config.clone(),
            enricher: Enricher::new(&self.config),
            view: self.view.clone(),
            watches: self.watches.clone(),
            wait_until: None,
            held: VecDeque::new(),
        }
    }
}

/// The `k8s_attributes` processor of one pipeline.
pub struct K8sAttributesProcessor {
    config: K8sAttributesConfig,
    enricher: Enricher,
    view: Arc<ClusterView>,
    /// The config's watches, started by the first pipeline to start; they
    /// run while any of its processors exists.
    watches: Arc<Mutex<Option<watch::Watches>>>,
    /// Until when data waits for the first complete listing.
    wait_until: Option<Instant>,
    held: VecDeque<(Payload, Client)>,
}

impl K8sAttributesProcessor {
    /// A processor over a given view, for tests and benches: no API server.
    pub fn with_view(config: K8sAttributesConfig, view: Arc<ClusterView>) -> Self {
        let mut shared = K8sAttributes::new(config);
        shared.view = view;
        shared.processor()
    }

    fn waiting(&self) -> bool {
        !self.config.passthrough && self.wait_until.is_some_and(|until| Instant::now() < until) && !self.view.synced()
    }

    fn release_held(&mut self, out: &mut Vec<Payload>) {
        while let Some((payload, client)) = self.held.pop_front() {
            self.enrich_into(payload, &client, out);
        }
    }

    fn enrich_into(&mut self, mut payload: Payload, client: &Client, out: &mut Vec<Payload>) {
        if self.config.passthrough {
            if let Some(address) = client.address {
                for resource in resources_mut(&mut payload) {
                    insert_absent(&mut resource.attributes, attr::K8S_POD_IP, &address.to_string());
                }
            }
        } else {
            let enricher = &mut self.enricher;
            self.view.read(|metadata| enricher.enrich(metadata, &mut payload, client));
        }
        out.push(payload);
    }
}

const SERVICE_NAME: &str = attr::SERVICE_NAME;

/// Most addresses prebuilt: more are forgotten all at once.
const MAX_CACHED_ADDRESSES: usize = 65_536;

/// One address's (or container's) attributes as either end of a flow.
#[derive(Debug)]
struct Sides {
    src: Vec<KeyValue>,
    dst: Vec<KeyValue>,
    /// For a pod of several containers: the container's attributes for an
    /// end at a port that one of them declares.
    by_port: Vec<(u16, Sides)>,
}

impl Sides {
    /// Resource-style attributes under both ends' names.
    fn of(found: &Attributes) -> Sides {
        let side = |end: End| -> Vec<KeyValue> {
            let mut list = Vec::with_capacity(found.len());
            for (key, value) in found {
                insert_absent(&mut list, &attr::k8s_of_end(end, key), value);
            }
            list
        };
        Sides { src: side(End::Source), dst: side(End::Destination), by_port: Vec::new() }
    }

    /// The containers of a pod of several, by the ports they declare.
    fn by_port(extractor: &Extractor, pod: &PodInfo) -> Vec<(u16, Sides)> {
        if pod.only_container().is_some() {
            return Vec::new();
        }
        let mut ports: Vec<u16> = pod.containers.iter().flat_map(|c| c.ports.iter().copied()).collect();
        ports.sort_unstable();
        ports.dedup();
        ports
            .into_iter()
            .filter_map(|port| {
                let mut found = Attributes::new();
                extractor.container(pod.container_serving(port)?, &mut found);
                (!found.is_empty()).then(|| (port, Sides::of(&found)))
            })
            .collect()
    }
}

/// Adds Kubernetes attributes to payloads. Both ends' attributes are
/// built once per address and reused until the cluster view changes.
pub struct Enricher {
    extractor: Extractor,
    associations: Vec<AssociationRule>,
    /// This host's name and its node's (when the config names the node):
    /// resources from this host without a node get it.
    local: Option<(String, String)>,
    generation: u64,
    sides: HashMap<IpAddr, Option<Sides>>,
    /// Ends named by a local process's container id (of a known pod).
    containers: HashMap<String, Sides>,
}

impl Enricher {
    /// An enricher for a (validated) config.
    pub fn new(config: &K8sAttributesConfig) -> Enricher {
        Enricher {
            extractor: Extractor::new(&config.extract),
            associations: config.association_rules(),
            local: flowtel_core::linux::host_name().zip(config.node_filter()),
            generation: u64::MAX,
            sides: HashMap::new(),
            containers: HashMap::new(),
        }
    }

    /// Adds both ends' attributes to records and points with a 5-tuple, and
    /// the associated pod's attributes to each resource. When `metadata`
    /// changed since the last call, prebuilt attributes are rebuilt.
    pub fn enrich(&mut self, metadata: &Metadata, payload: &mut Payload, client: &Client) {
        if metadata.generation() != self.generation
            || self.sides.len() > MAX_CACHED_ADDRESSES
            || self.containers.len() > MAX_CACHED_ADDRESSES
        {
            self.sides.clear();
            self.containers.clear();
            self.generation = metadata.generation();
        }
        payload.for_each_record_attributes(|attributes| self.add_ends(metadata, attributes));
        for resource in resources_mut(payload) {
            if let Some((host, node)) = &self.local
                && find_text(&resource.attributes, attr::HOST_NAME).is_some_and(|h| h == host.as_str())
            {
                insert_absent(&mut resource.attributes, attr::K8S_NODE_NAME, node);
            }
            let Some(pod) = associate(metadata, &self.associations, &resource.attributes, client) else { continue };
            // The container the data came from: named by the resource, or
            // the pod's only one.
            let container = find_text(&resource.attributes, attr::CONTAINER_ID)
                .and_then(|id| pod.container_by_id(&id))
                .or_else(|| {
                    find_text(&resource.attributes, attr::K8S_CONTAINER_NAME).and_then(|n| pod.container_by_name(&n))
                })
                .or_else(|| pod.only_container());
            let mut attributes = Attributes::new();
            self.extractor.pod(metadata, pod, None, container, &mut attributes);
            self.extractor.service(metadata, pod, container, &mut attributes);
            // An SDK that was not told its name says `unknown_service…`:
            // the pod's name for it is better.
            if attributes.iter().any(|(key, _)| key == SERVICE_NAME)
                && find_text(&resource.attributes, SERVICE_NAME).is_some_and(|name| name.starts_with("unknown_service"))
            {
                resource.attributes.retain(|kv| kv.key != SERVICE_NAME);
            }
            for (key, value) in &attributes {
                insert_absent(&mut resource.attributes, key, value);
            }
        }
    }

    fn add_ends(&mut self, metadata: &Metadata, attributes: &mut Vec<KeyValue>) {
        for (address_key, container_key, is_source) in [
            (attr::SOURCE_ADDRESS, attr::SOURCE_CONTAINER_ID, true),
            (attr::DESTINATION_ADDRESS, attr::DESTINATION_CONTAINER_ID, false),
        ] {
            let Some(ip) = find_text(attributes, address_key).and_then(|a| a.parse::<IpAddr>().ok()) else { continue };
            let extractor = &self.extractor;
            // The container of a local end (from `host_attributes`) names its
            // pod even where the address is shared: a host-network pod's is
            // its node's.
            let local = local_container(attributes, container_key, is_source)
                .and_then(|id| Some((metadata.pod_by_container(&id)?, id)));
            let sides = match local {
                Some((pod, id)) => {
                    if !self.containers.contains_key(id.as_ref()) {
                        let mut found = Attributes::new();
                        extractor.pod(metadata, pod, Some(ip), pod.container_by_id(&id), &mut found);
                        self.containers.insert(id.clone().into_owned(), Sides::of(&found));
                    }
                    self.containers.get(id.as_ref())
                }
                None => self
                    .sides
                    .entry(ip)
                    .or_insert_with(|| {
                        let endpoint = metadata.resolve(ip)?;
                        let mut found = Attributes::new();
                        extractor.endpoint(metadata, &endpoint, ip, &mut found);
                        let mut sides = Sides::of(&found);
                        if let Endpoint::Pod(pod) = endpoint {
                            sides.by_port = Sides::by_port(extractor, pod);
                        }
                        Some(sides)
                    })
                    .as_ref(),
            };
            let Some(sides) = sides else { continue };
            // A pod of several containers: the one serving the end's port.
            let port_key = if is_source { attr::SOURCE_PORT } else { attr::DESTINATION_PORT };
            let container = (!sides.by_port.is_empty())
                .then(|| find_text(attributes, port_key)?.parse::<u16>().ok())
                .flatten()
                .and_then(|port| sides.by_port.iter().find(|(p, _)| *p == port))
                .map(|(_, container)| container);
            for found in std::iter::once(sides).chain(container) {
                for kv in if is_source { &found.src } else { &found.dst } {
                    if !attributes.iter().any(|existing| existing.key == kv.key) {
                        attributes.push(kv.clone());
                    }
                }
            }
        }
    }
}

/// The container id of a flow's end, when the record says it is local:
/// `source.container.id` / `destination.container.id`, or on a client's
/// `network.tcp.connection` record the connecting process's `container.id`,
/// which is the source's.
fn local_container<'a>(attributes: &'a [KeyValue], key: &str, is_source: bool) -> Option<Cow<'a, str>> {
    find_text(attributes, key).or_else(|| {
        (is_source && find_text(attributes, attr::NETWORK_TCP_SIDE).is_some_and(|side| side == "client"))
            .then(|| find_text(attributes, attr::CONTAINER_ID))
            .flatten()
    })
}

/// The pod an OTLP resource came from, by the first association rule that
/// resolves.
pub fn associate<'a>(
    metadata: &'a Metadata,
    rules: &[AssociationRule],
    resource: &[KeyValue],
    client: &Client,
) -> Option<&'a PodInfo> {
    rules.iter().find_map(|rule| {
        let mut ip = None;
        let mut uid = None;
        let mut container = None;
        let mut pod_name = None;
        let mut namespace = None;
        for source in &rule.sources {
            match (source.from, source.name.as_deref()) {
                (AssociationFrom::Connection, _) => ip = Some(client.address?),
                (AssociationFrom::ResourceAttribute, Some(name)) => {
                    let value = find_text(resource, name)?;
                    match name {
                        attr::K8S_POD_UID => uid = Some(value),
                        attr::CONTAINER_ID => container = Some(value),
                        attr::K8S_POD_NAME => pod_name = Some(value),
                        attr::K8S_NAMESPACE_NAME => namespace = Some(value),
                        _ => ip = Some(value.parse::<IpAddr>().ok()?),
                    }
                }
                (AssociationFrom::ResourceAttribute, None) => return None,
            }
        }
        let pod = if let Some(uid) = uid {
            metadata.pod_by_uid(&uid)
        } else if let Some(container) = container {
            metadata.pod_by_container(&container)
        } else if let (Some(name), Some(namespace)) = (&pod_name, &namespace) {
            metadata.pod(namespace, name)
        } else {
            match metadata.resolve(ip?)? {
                Endpoint::Pod(pod) => Some(pod),
                _ => None,
            }
        }?;
        // Every source of a rule must agree with the pod found.
        let agrees = ip.is_none_or(|ip| pod.ips.contains(&ip.to_canonical()))
            && pod_name.is_none_or(|n| n == pod.name)
            && namespace.is_none_or(|n| n == pod.namespace);
        agrees.then_some(pod)
    })
}

fn resources_mut(payload: &mut Payload) -> Vec<&mut Resource> {
    payload.decode_in_place();
    match payload {
        Payload::Encoded(_) => Vec::new(),
        Payload::Logs(r) => r.iter_mut().map(|r| r.resource.get_or_insert_with(Default::default)).collect(),
        Payload::Metrics(r) => r.iter_mut().map(|r| r.resource.get_or_insert_with(Default::default)).collect(),
        Payload::Traces(r) => r.iter_mut().map(|r| r.resource.get_or_insert_with(Default::default)).collect(),
    }
}

#[async_trait::async_trait]
impl Processor for K8sAttributesProcessor {
    async fn start(&mut self, ctx: ProcessorContext) -> Result<(), ComponentError> {
        if self.config.passthrough {
            return Ok(());
        }
        let error = |message: String| ComponentError::new(ComponentKind::Processor, &ctx.id, message);
        let started = self.watches.lock().unwrap_or_else(PoisonError::into_inner).is_some();
        if !started {
            let config = &self.config;
            let client = kube_client::client(config.auth_type, config.kubeconfig.as_deref(), config.context.as_deref())
                .await
                .map_err(|e| error(e.to_string()))?;
            let watches = watch::start(client, &self.config, self.view.clone(), &ctx.metrics);
            self.watches.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(watches);
            let view = self.view.clone();
            let id = ctx.id.to_string();
            ctx.metrics.add_debug_page("k8s", move || {
                serde_json::json!({"processor": id, "synced": view.synced(), "metadata": view.read(|m| m.debug_view())})
            });
        }
        let timeout = self.config.wait_for_metadata_timeout;
        if self.config.wait_for_metadata {
            let listed = async {
                while !self.view.synced() {
                    tokio::time::sleep(SYNC_POLL).await;
                }
            };
            if tokio::time::timeout(timeout, listed).await.is_err() {
                return Err(error(format!(
                    "Kubernetes metadata was not listed within wait_for_metadata_timeout ({}); see flowtel_k8s_watch_errors_total and the log",
                    humantime::format_duration(timeout)
                )));
            }
        }
        self.wait_until = Some(Instant::now() + timeout);
        Ok(())
    }

    fn process(&mut self, payload: Payload, out: &mut Vec<Payload>) {
        self.process_from(payload, &Client::default(), out);
    }

    fn process_from(&mut self, payload: Payload, client: &Client, out: &mut Vec<Payload>) {
        if self.waiting() && self.held.len() < MAX_HELD {
            self.held.push_back((payload, *client));
            return;
        }
        self.release_held(out);
        self.enrich_into(payload, client, out);
    }

    fn holds_data(&self) -> bool {
        !self.held.is_empty()
    }

    fn deadline(&self) -> Option<Instant> {
        if self.held.is_empty() {
            return None;
        }
        let poll = Instant::now() + SYNC_POLL;
        Some(self.wait_until.map_or(poll, |until| until.min(poll)))
    }

    fn on_deadline(&mut self, _now: Instant, out: &mut Vec<Payload>) {
        if !self.waiting() {
            if !self.view.synced() {
                tracing::warn!(
                    "Kubernetes metadata not listed within wait_for_metadata_timeout; data passes without it until it is."
                );
            }
            self.release_held(out);
        }
    }

    fn flush(&mut self, out: &mut Vec<Payload>) {
        self.release_held(out);
    }
}

#[cfg(test)]
mod tests;
