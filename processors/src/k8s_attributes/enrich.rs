//! From a resolved endpoint to attributes: which metadata, labels and
//! annotations `extract` asks for, and under which names. Pure functions of
//! [`Metadata`], so they are tested without a server.

use std::net::IpAddr;

use regex::Regex;

use super::{
    config::{ExtractConfig, FieldExtract, FieldSource},
    metadata::{Endpoint, Metadata, PodInfo},
};

/// One `extract.metadata` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MetadataKey {
    PodName,
    PodUid,
    PodIp,
    Namespace,
    Node,
    OwnerKind,
    OwnerName,
    Deployment,
    ReplicaSet,
    DaemonSet,
    StatefulSet,
    Job,
    CronJob,
    Service,
}

impl MetadataKey {
    fn parse(name: &str) -> Option<MetadataKey> {
        Some(match name {
            "k8s.pod.name" => MetadataKey::PodName,
            "k8s.pod.uid" => MetadataKey::PodUid,
            "k8s.pod.ip" => MetadataKey::PodIp,
            "k8s.namespace.name" => MetadataKey::Namespace,
            "k8s.node.name" => MetadataKey::Node,
            "k8s.owner.kind" => MetadataKey::OwnerKind,
            "k8s.owner.name" => MetadataKey::OwnerName,
            "k8s.deployment.name" => MetadataKey::Deployment,
            "k8s.replicaset.name" => MetadataKey::ReplicaSet,
            "k8s.daemonset.name" => MetadataKey::DaemonSet,
            "k8s.statefulset.name" => MetadataKey::StatefulSet,
            "k8s.job.name" => MetadataKey::Job,
            "k8s.cronjob.name" => MetadataKey::CronJob,
            "k8s.service.name" => MetadataKey::Service,
            _ => return None,
        })
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
    Key { key: String, tag: String },
    Pattern(Regex),
}

impl FieldRule {
    fn compile(rule: &FieldExtract, kind: &str) -> Option<FieldRule> {
        let matcher = match (&rule.key, &rule.key_regex) {
            (Some(key), _) => FieldMatcher::Key {
                key: key.clone(),
                tag: rule.tag_name.clone().unwrap_or_else(|| default_tag(rule.from, kind, key)),
            },
            (None, Some(pattern)) => FieldMatcher::Pattern(Regex::new(&format!("^(?:{pattern})$")).ok()?),
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
            FieldMatcher::Pattern(pattern) => {
                for (key, value) in values.iter().filter(|(k, _)| pattern.is_match(k)) {
                    out.push((default_tag(self.from, kind, key), value.clone()));
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
}

impl Extractor {
    /// Compiles a validated `extract` section.
    pub fn new(config: &ExtractConfig) -> Extractor {
        Extractor {
            metadata: config.metadata.iter().filter_map(|m| MetadataKey::parse(m)).collect(),
            labels: config.labels.iter().filter_map(|r| FieldRule::compile(r, "labels")).collect(),
            annotations: config.annotations.iter().filter_map(|r| FieldRule::compile(r, "annotations")).collect(),
        }
    }

    /// The attributes of what `ip` resolved to.
    pub fn endpoint(&self, metadata: &Metadata, endpoint: &Endpoint<'_>, ip: IpAddr, out: &mut Attributes) {
        match endpoint {
            Endpoint::Pod(pod) => self.pod(metadata, pod, Some(ip), out),
            Endpoint::Node(node) => {
                if self.metadata.contains(&MetadataKey::Node) {
                    out.push(("k8s.node.name".into(), (*node).to_owned()));
                }
                self.fields(metadata, None, Some(node), out);
            }
            Endpoint::Service { namespace, name } => {
                for key in &self.metadata {
                    match key {
                        MetadataKey::Service => out.push(("k8s.service.name".into(), (*name).to_owned())),
                        MetadataKey::Namespace => out.push(("k8s.namespace.name".into(), (*namespace).to_owned())),
                        _ => {}
                    }
                }
                self.fields(metadata, Some(namespace), None, out);
            }
        }
    }

    /// The attributes of a pod (`ip`: the address it was found by).
    pub fn pod(&self, metadata: &Metadata, pod: &PodInfo, ip: Option<IpAddr>, out: &mut Attributes) {
        let workload = metadata.workload(pod);
        let direct_owner = |kind: &str| pod.owner.as_ref().filter(|o| o.kind == kind).map(|o| o.name.clone());
        for key in &self.metadata {
            let value = match key {
                MetadataKey::PodName => Some(pod.name.clone()),
                MetadataKey::PodUid => Some(pod.uid.clone()).filter(|u| !u.is_empty()),
                MetadataKey::PodIp => ip.or_else(|| pod.ips.first().copied()).map(|ip| ip.to_string()),
                MetadataKey::Namespace => Some(pod.namespace.clone()),
                MetadataKey::Node => pod.node.clone(),
                MetadataKey::OwnerKind => workload.as_ref().map(|w| w.kind.clone()),
                MetadataKey::OwnerName => workload.as_ref().map(|w| w.name.clone()),
                MetadataKey::Deployment => workload.as_ref().filter(|w| w.kind == "Deployment").map(|w| w.name.clone()),
                MetadataKey::ReplicaSet => direct_owner("ReplicaSet"),
                MetadataKey::DaemonSet => direct_owner("DaemonSet"),
                MetadataKey::StatefulSet => direct_owner("StatefulSet"),
                MetadataKey::Job => direct_owner("Job"),
                MetadataKey::CronJob => direct_owner("Job").and_then(|job| cron_job_of(&job).map(str::to_owned)),
                MetadataKey::Service => metadata.service_of(pod).map(str::to_owned),
            };
            if let Some(value) = value {
                out.push((resource_name(*key).into(), value));
            }
        }
        for rule in self.labels.iter().filter(|r| r.from == FieldSource::Pod) {
            rule.extract("labels", &pod.labels, out);
        }
        for rule in self.annotations.iter().filter(|r| r.from == FieldSource::Pod) {
            rule.extract("annotations", &pod.annotations, out);
        }
        self.fields(metadata, Some(&pod.namespace), pod.node.as_deref(), out);
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

fn resource_name(key: MetadataKey) -> &'static str {
    match key {
        MetadataKey::PodName => "k8s.pod.name",
        MetadataKey::PodUid => "k8s.pod.uid",
        MetadataKey::PodIp => "k8s.pod.ip",
        MetadataKey::Namespace => "k8s.namespace.name",
        MetadataKey::Node => "k8s.node.name",
        MetadataKey::OwnerKind => "k8s.owner.kind",
        MetadataKey::OwnerName => "k8s.owner.name",
        MetadataKey::Deployment => "k8s.deployment.name",
        MetadataKey::ReplicaSet => "k8s.replicaset.name",
        MetadataKey::DaemonSet => "k8s.daemonset.name",
        MetadataKey::StatefulSet => "k8s.statefulset.name",
        MetadataKey::Job => "k8s.job.name",
        MetadataKey::CronJob => "k8s.cronjob.name",
        MetadataKey::Service => "k8s.service.name",
    }
}

/// The CronJob that made a Job, read from the Job's name: the CronJob
/// controller names each Job `<cronjob>-<scheduled minute>`, so the owning
/// CronJob is known without watching Jobs.
fn cron_job_of(job: &str) -> Option<&str> {
    let (cron_job, minute) = job.rsplit_once('-')?;
    (!cron_job.is_empty() && !minute.is_empty() && minute.bytes().all(|b| b.is_ascii_digit())).then_some(cron_job)
}

/// The name of a resource attribute for one side of a flow:
/// `k8s.pod.name` → `k8s.src.pod.name`; a custom name without the `k8s.`
/// prefix gets the whole prefix (`team` → `k8s.src.team`).
pub fn side_name(name: &str, side: &str) -> String {
    let rest = name.strip_prefix("k8s.").unwrap_or(name);
    format!("k8s.{side}.{rest}")
}
