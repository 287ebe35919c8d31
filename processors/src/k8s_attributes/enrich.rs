//! From a resolved endpoint to attributes: which metadata, labels and
//! annotations `extract` asks for, and under which names. Pure functions of
//! [`Metadata`], so they are tested without a server.

use flowtel_core::schema::attr;
use std::net::IpAddr;

use regex::Regex;

use super::{
    config::{ExtractConfig, FieldExtract, FieldSource},
    metadata::{ContainerInfo, Endpoint, Metadata, Owner, PodInfo},
};

/// One `extract.metadata` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MetadataKey {
    PodName,
    PodUid,
    PodIp,
    PodHostname,
    PodStartTime,
    Namespace,
    Node,
    NodeUid,
    OwnerKind,
    OwnerName,
    Deployment,
    DeploymentUid,
    ReplicaSet,
    ReplicaSetUid,
    DaemonSet,
    DaemonSetUid,
    StatefulSet,
    StatefulSetUid,
    Job,
    JobUid,
    CronJob,
    Service,
    ClusterUid,
    ContainerName,
    ContainerId,
    ContainerImageName,
    ContainerImageTag,
    ServiceName,
    ServiceNamespace,
    ServiceVersion,
    ServiceInstanceId,
}

/// Every `extract.metadata` name, with its entry.
const METADATA: &[(&str, MetadataKey)] = &[
    (attr::K8S_POD_NAME, MetadataKey::PodName),
    (attr::K8S_POD_UID, MetadataKey::PodUid),
    (attr::K8S_POD_IP, MetadataKey::PodIp),
    (attr::K8S_POD_HOSTNAME, MetadataKey::PodHostname),
    (attr::K8S_POD_START_TIME, MetadataKey::PodStartTime),
    (attr::K8S_NAMESPACE_NAME, MetadataKey::Namespace),
    (attr::K8S_NODE_NAME, MetadataKey::Node),
    (attr::K8S_NODE_UID, MetadataKey::NodeUid),
    (attr::K8S_OWNER_KIND, MetadataKey::OwnerKind),
    (attr::K8S_OWNER_NAME, MetadataKey::OwnerName),
    (attr::K8S_DEPLOYMENT_NAME, MetadataKey::Deployment),
    (attr::K8S_DEPLOYMENT_UID, MetadataKey::DeploymentUid),
    (attr::K8S_REPLICASET_NAME, MetadataKey::ReplicaSet),
    (attr::K8S_REPLICASET_UID, MetadataKey::ReplicaSetUid),
    (attr::K8S_DAEMONSET_NAME, MetadataKey::DaemonSet),
    (attr::K8S_DAEMONSET_UID, MetadataKey::DaemonSetUid),
    (attr::K8S_STATEFULSET_NAME, MetadataKey::StatefulSet),
    (attr::K8S_STATEFULSET_UID, MetadataKey::StatefulSetUid),
    (attr::K8S_JOB_NAME, MetadataKey::Job),
    (attr::K8S_JOB_UID, MetadataKey::JobUid),
    (attr::K8S_CRONJOB_NAME, MetadataKey::CronJob),
    (attr::K8S_SERVICE_NAME, MetadataKey::Service),
    (attr::K8S_CLUSTER_UID, MetadataKey::ClusterUid),
    (attr::K8S_CONTAINER_NAME, MetadataKey::ContainerName),
    (attr::CONTAINER_ID, MetadataKey::ContainerId),
    (attr::CONTAINER_IMAGE_NAME, MetadataKey::ContainerImageName),
    (attr::CONTAINER_IMAGE_TAG, MetadataKey::ContainerImageTag),
    (attr::SERVICE_NAME, MetadataKey::ServiceName),
    (attr::SERVICE_NAMESPACE, MetadataKey::ServiceNamespace),
    (attr::SERVICE_VERSION, MetadataKey::ServiceVersion),
    (attr::SERVICE_INSTANCE_ID, MetadataKey::ServiceInstanceId),
];

/// The annotation prefix whose keys name resource attributes.
const OTEL_ANNOTATION_PREFIX: &str = "resource.opentelemetry.io/";

/// The names `extract.metadata` may use.
pub fn metadata_names() -> impl Iterator<Item = &'static str> {
    METADATA.iter().map(|(name, _)| *name)
}

impl MetadataKey {
    fn parse(name: &str) -> Option<MetadataKey> {
        METADATA.iter().find(|(known, _)| *known == name).map(|(_, key)| *key)
    }

    fn name(self) -> &'static str {
        METADATA.iter().find(|(_, key)| *key == self).map_or("", |(name, _)| name)
    }
}

/// An image reference's name and tag: `registry:5000/shop/web:1.2@sha256:…`
/// is `registry:5000/shop/web` and `1.2`; without a tag or digest the tag
/// is `latest`, as the runtime reads it. The flag says the tag was written.
pub(super) fn image_name_and_tag(image: &str) -> (&str, Option<&str>, bool) {
    let (reference, digest) = image.split_once('@').map_or((image, None), |(r, d)| (r, Some(d)));
    let name_start = reference.rfind('/').map_or(0, |slash| slash + 1);
    match reference[name_start..].rfind(':') {
        Some(colon) => (&reference[..name_start + colon], Some(&reference[name_start + colon + 1..]), true),
        None => (reference, digest.is_none().then_some("latest"), false),
    }
}

/// A label or annotation rule, ready to match.
#[derive(Debug)]
struct FieldRule {
    from: FieldSource,
    matcher: FieldMatcher,
}

#[derive(Debug)]
enum FieldMatcher {
    Key {
        key: String,
        tag: String,
    },
    /// Every key the pattern matches; `tag`, a template of its groups, names it.
    Pattern {
        pattern: Regex,
        tag: Option<String>,
    },
}

impl FieldRule {
    fn compile(rule: &FieldExtract, kind: &str) -> Option<FieldRule> {
        let matcher = match (&rule.key, &rule.key_regex) {
            (Some(key), _) => FieldMatcher::Key {
                key: key.clone(),
                tag: rule.tag_name.clone().unwrap_or_else(|| default_tag(rule.from, kind, key)),
            },
            (None, Some(pattern)) => FieldMatcher::Pattern {
                pattern: Regex::new(&format!("^(?:{pattern})$")).ok()?,
                tag: rule.tag_name.clone(),
            },
            (None, None) => return None,
        };
        Some(FieldRule { from: rule.from, matcher })
    }

    fn extract(&self, kind: &str, values: &std::collections::BTreeMap<String, String>, out: &mut Attributes) {
        match &self.matcher {
            FieldMatcher::Key { key, tag } => {
                if let Some(value) = values.get(key) {
                    out.push((tag.clone(), value.clone()));
                }
            }
            FieldMatcher::Pattern { pattern, tag } => {
                for (key, value) in values.iter().filter(|(k, _)| pattern.is_match(k)) {
                    let name = match tag {
                        Some(template) => pattern.replace(key, template.as_str()).into_owned(),
                        None => default_tag(self.from, kind, key),
                    };
                    out.push((name, value.clone()));
                }
            }
        }
    }
}

fn default_tag(from: FieldSource, kind: &str, key: &str) -> String {
    format!("k8s.{}.{kind}.{key}", from.as_str())
}

/// Attribute names and values, as a resource would carry them (`k8s.pod.name`).
pub type Attributes = Vec<(String, String)>;

/// What `extract` asks for, compiled.
#[derive(Debug)]
pub struct Extractor {
    metadata: Vec<MetadataKey>,
    labels: Vec<FieldRule>,
    annotations: Vec<FieldRule>,
    otel_annotations: bool,
}

impl Extractor {
    /// Compiles a validated `extract` section.
    pub fn new(config: &ExtractConfig) -> Extractor {
        Extractor {
            metadata: config.metadata.iter().filter_map(|m| MetadataKey::parse(m)).collect(),
            labels: config.labels.iter().filter_map(|r| FieldRule::compile(r, "labels")).collect(),
            annotations: config.annotations.iter().filter_map(|r| FieldRule::compile(r, "annotations")).collect(),
            otel_annotations: config.otel_annotations,
        }
    }

    /// The attributes of what `ip` resolved to. A pod's container is
    /// named here only when it has one; of several, the one serving the
    /// end's port is added per record.
    pub fn endpoint(&self, metadata: &Metadata, endpoint: &Endpoint<'_>, ip: IpAddr, out: &mut Attributes) {
        match endpoint {
            Endpoint::Pod(pod) => self.pod(metadata, pod, Some(ip), pod.only_container(), out),
            Endpoint::Node(node) => {
                for key in &self.metadata {
                    let value = match key {
                        MetadataKey::Node => Some((*node).to_owned()),
                        MetadataKey::NodeUid => node_uid(metadata, node),
                        MetadataKey::ClusterUid => metadata.cluster_uid().map(str::to_owned),
                        _ => None,
                    };
                    push(out, *key, value);
                }
                self.fields(metadata, None, Some(node), out);
            }
            Endpoint::Service { namespace, name } => {
                for key in &self.metadata {
                    let value = match key {
                        MetadataKey::Service => Some((*name).to_owned()),
                        MetadataKey::Namespace => Some((*namespace).to_owned()),
                        MetadataKey::ClusterUid => metadata.cluster_uid().map(str::to_owned),
                        _ => None,
                    };
                    push(out, *key, value);
                }
                self.fields(metadata, Some(namespace), None, out);
            }
        }
    }

    /// The attributes of a pod (`ip`: the address it was found by;
    /// `container`: the one the data came from, when known).
    pub fn pod(
        &self,
        metadata: &Metadata,
        pod: &PodInfo,
        ip: Option<IpAddr>,
        container: Option<&ContainerInfo>,
        out: &mut Attributes,
    ) {
        let workload = metadata.workload(pod);
        let direct_owner = |kind: &str| pod.owner.as_ref().filter(|o| o.kind == kind);
        let name = |owner: Option<&Owner>| owner.map(|o| o.name.clone());
        let uid = |owner: Option<&Owner>| owner.map(|o| o.uid.clone()).filter(|u| !u.is_empty());
        let deployment = workload.as_ref().filter(|w| w.kind == "Deployment");
        for key in &self.metadata {
            let value = match key {
                MetadataKey::PodName => Some(pod.name.clone()),
                MetadataKey::PodUid => Some(pod.uid.clone()).filter(|u| !u.is_empty()),
                MetadataKey::PodIp => ip.or_else(|| pod.ips.first().copied()).map(|ip| ip.to_string()),
                MetadataKey::PodHostname => Some(pod.hostname.clone()).filter(|h| !h.is_empty()),
                MetadataKey::PodStartTime => pod.start_time.clone(),
                MetadataKey::Namespace => Some(pod.namespace.clone()),
                MetadataKey::Node => pod.node.clone(),
                MetadataKey::NodeUid => pod.node.as_deref().and_then(|node| node_uid(metadata, node)),
                MetadataKey::OwnerKind => workload.as_ref().map(|w| w.kind.clone()),
                MetadataKey::OwnerName => name(workload.as_ref()),
                MetadataKey::Deployment => name(deployment),
                MetadataKey::DeploymentUid => uid(deployment),
                MetadataKey::ReplicaSet => name(direct_owner("ReplicaSet")),
                MetadataKey::ReplicaSetUid => uid(direct_owner("ReplicaSet")),
                MetadataKey::DaemonSet => name(direct_owner("DaemonSet")),
                MetadataKey::DaemonSetUid => uid(direct_owner("DaemonSet")),
                MetadataKey::StatefulSet => name(direct_owner("StatefulSet")),
                MetadataKey::StatefulSetUid => uid(direct_owner("StatefulSet")),
                MetadataKey::Job => name(direct_owner("Job")),
                MetadataKey::JobUid => uid(direct_owner("Job")),
                MetadataKey::CronJob => direct_owner("Job").and_then(|job| cron_job_of(&job.name)).map(str::to_owned),
                MetadataKey::Service => metadata.service_of(pod).map(str::to_owned),
                MetadataKey::ClusterUid => metadata.cluster_uid().map(str::to_owned),
                // The container's own: see `container`.
                MetadataKey::ContainerName
                | MetadataKey::ContainerId
                | MetadataKey::ContainerImageName
                | MetadataKey::ContainerImageTag => None,
                // An application's identity: see `service`.
                MetadataKey::ServiceName
                | MetadataKey::ServiceNamespace
                | MetadataKey::ServiceVersion
                | MetadataKey::ServiceInstanceId => None,
            };
            push(out, *key, value);
        }
        if let Some(container) = container {
            self.container(container, out);
        }
        for rule in self.labels.iter().filter(|r| r.from == FieldSource::Pod) {
            rule.extract("labels", &pod.labels, out);
        }
        for rule in self.annotations.iter().filter(|r| r.from == FieldSource::Pod) {
            rule.extract("annotations", &pod.annotations, out);
        }
        self.fields(metadata, Some(&pod.namespace), pod.node.as_deref(), out);
    }

    /// A container's attributes: name, id, image name and tag.
    pub fn container(&self, container: &ContainerInfo, out: &mut Attributes) {
        let (image, tag, _) = image_name_and_tag(&container.image);
        for key in &self.metadata {
            let value = match key {
                MetadataKey::ContainerName => Some(container.name.clone()),
                MetadataKey::ContainerId => container.id.clone(),
                MetadataKey::ContainerImageName => Some(image.to_owned()).filter(|name| !name.is_empty()),
                MetadataKey::ContainerImageTag => tag.filter(|_| !image.is_empty()).map(str::to_owned),
                _ => None,
            };
            push(out, *key, value);
        }
    }

    /// An application's `service.*` resource attributes, as the semantic
    /// conventions derive them from its pod, and with `otel_annotations` its
    /// `resource.opentelemetry.io/<key>` annotations. Only resources get
    /// them: they name the application, not a flow's end, whose
    /// `k8s.src.service.name` is the Kubernetes Service.
    pub fn service(&self, metadata: &Metadata, pod: &PodInfo, container: Option<&ContainerInfo>, out: &mut Attributes) {
        let annotation = |key: &str| pod.annotations.get(&format!("{OTEL_ANNOTATION_PREFIX}{key}")).cloned();
        let label = |key: &str| pod.labels.get(key).cloned();
        for key in &self.metadata {
            let value = match key {
                MetadataKey::ServiceNamespace => {
                    annotation(attr::SERVICE_NAMESPACE).or_else(|| Some(pod.namespace.clone()))
                }
                MetadataKey::ServiceName => annotation(attr::SERVICE_NAME)
                    .or_else(|| label("app.kubernetes.io/instance"))
                    .or_else(|| label("app.kubernetes.io/name"))
                    .or_else(|| workload_name(metadata, pod))
                    .or_else(|| Some(pod.name.clone())),
                MetadataKey::ServiceVersion => {
                    annotation(attr::SERVICE_VERSION).or_else(|| label("app.kubernetes.io/version")).or_else(|| {
                        let (_, tag, written) = image_name_and_tag(&container?.image);
                        tag.filter(|_| written).map(str::to_owned)
                    })
                }
                MetadataKey::ServiceInstanceId => annotation(attr::SERVICE_INSTANCE_ID)
                    .or_else(|| container.map(|c| format!("{}.{}.{}", pod.namespace, pod.name, c.name))),
                _ => None,
            };
            push(out, *key, value);
        }
        if self.otel_annotations {
            for (key, value) in &pod.annotations {
                if let Some(name) = key.strip_prefix(OTEL_ANNOTATION_PREFIX).filter(|name| !name.is_empty()) {
                    out.push((name.to_owned(), value.clone()));
                }
            }
        }
    }

    /// Namespace and node labels and annotations.
    fn fields(&self, metadata: &Metadata, namespace: Option<&str>, node: Option<&str>, out: &mut Attributes) {
        let owners = [
            (FieldSource::Namespace, namespace.and_then(|n| metadata.namespace(n))),
            (FieldSource::Node, node.and_then(|n| metadata.node(n))),
        ];
        for (from, info) in owners {
            let Some(info) = info else { continue };
            for rule in self.labels.iter().filter(|r| r.from == from) {
                rule.extract("labels", &info.labels, out);
            }
            for rule in self.annotations.iter().filter(|r| r.from == from) {
                rule.extract("annotations", &info.annotations, out);
            }
        }
    }
}

fn push(out: &mut Attributes, key: MetadataKey, value: Option<String>) {
    if let Some(value) = value {
        out.push((key.name().into(), value));
    }
}

/// The name of the workload that runs a pod, in the semantic conventions'
/// order: Deployment, ReplicaSet, StatefulSet, DaemonSet, CronJob, Job.
fn workload_name(metadata: &Metadata, pod: &PodInfo) -> Option<String> {
    if let Some(deployment) = metadata.workload(pod).filter(|w| w.kind == "Deployment") {
        return Some(deployment.name);
    }
    let owner = pod.owner.as_ref()?;
    match owner.kind.as_str() {
        "ReplicaSet" | "StatefulSet" | "DaemonSet" => Some(owner.name.clone()),
        "Job" => Some(cron_job_of(&owner.name).unwrap_or(&owner.name).to_owned()),
        _ => None,
    }
}

fn node_uid(metadata: &Metadata, node: &str) -> Option<String> {
    metadata.node(node).map(|n| n.uid.clone()).filter(|uid| !uid.is_empty())
}

/// The CronJob that made a Job, read from the Job's name: the CronJob
/// controller names each Job `<cronjob>-<scheduled minute>`, so the owning
/// CronJob is known without watching Jobs.
fn cron_job_of(job: &str) -> Option<&str> {
    let (cron_job, minute) = job.rsplit_once('-')?;
    (!cron_job.is_empty() && !minute.is_empty() && minute.bytes().all(|b| b.is_ascii_digit())).then_some(cron_job)
}
