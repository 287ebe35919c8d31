//! `exporters::load_balancing` config, with the collector's names.

use std::time::Duration;

use flowtel_core::{
    config::{Validate, Value},
    kube_client::AuthType,
};
use serde::Deserialize;

/// `exporters::load_balancing` (alias `loadbalancing`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadBalancingConfig {
    /// What decides a backend: `traceID` (default), `service`, `resource`,
    /// `metric`, `streamID`, `attributes`, or flowtel's `flow`.
    #[serde(default)]
    pub routing_key: RoutingKey,
    /// With `routing_key: attributes`: the attributes whose values decide,
    /// looked up on the item, then on its resource.
    #[serde(default)]
    pub routing_attributes: Vec<String>,
    /// How each backend is sent to.
    pub protocol: ProtocolConfig,
    /// Where the backends come from.
    pub resolver: ResolverConfig,
}

/// `routing_key`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum RoutingKey {
    /// Spans and log records by trace id (log records without one by their
    /// flow, then their resource); metrics by resource.
    #[default]
    #[serde(rename = "traceID")]
    TraceId,
    /// By the resource's `service.name` (the resource when it has none).
    #[serde(rename = "service")]
    Service,
    /// By all of the resource's attributes.
    #[serde(rename = "resource")]
    Resource,
    /// Metrics by resource, scope and metric name.
    #[serde(rename = "metric")]
    Metric,
    /// Metric data points by their stream: resource, scope, metric name and
    /// the point's attributes.
    #[serde(rename = "streamID")]
    StreamId,
    /// By the values of `routing_attributes`.
    #[serde(rename = "attributes")]
    Attributes,
    /// Kernel records by their flow, both directions together (then by
    /// trace id, then by resource); spans by trace id.
    #[serde(rename = "flow")]
    Flow,
}

/// `protocol`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtocolConfig {
    /// The `otlp_grpc` exporter's settings for every backend (its
    /// `endpoint` is each resolved backend's); `sending_queue` and
    /// `retry_on_failure` apply per backend.
    pub otlp: Value,
}

/// `resolver`: exactly one of its keys.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResolverConfig {
    /// A fixed list of backends.
    #[serde(rename = "static")]
    pub static_list: Option<StaticResolver>,
    /// The addresses a DNS name resolves to, looked up again every `interval`.
    pub dns: Option<DnsResolver>,
    /// The ready endpoints of a Kubernetes Service, watched.
    pub k8s: Option<K8sResolver>,
}

/// `resolver::static`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StaticResolver {
    /// `host:port` of each backend (`:4317` when the port is left out).
    pub hostnames: Vec<String>,
}

/// `resolver::dns`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DnsResolver {
    /// The name to resolve (every address it has is a backend).
    pub hostname: String,
    /// The backends' port. Default: 4317.
    #[serde(default = "default_port")]
    pub port: u16,
    /// How often the name is resolved again. Default: 5s.
    #[serde(with = "humantime_serde", default = "default_interval")]
    pub interval: Duration,
    /// How long one resolution may take. Default: 1s.
    #[serde(with = "humantime_serde", default = "default_timeout")]
    pub timeout: Duration,
}

/// `resolver::k8s`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct K8sResolver {
    /// `name.namespace` of the Service (`name` alone: the namespace flowtel
    /// runs in, else `default`).
    pub service: String,
    /// The backends' ports on each ready endpoint. Default: [4317].
    #[serde(default = "default_ports")]
    pub ports: Vec<u16>,
    /// How long a request to the API server may take. Default: 1s.
    #[serde(with = "humantime_serde", default = "default_timeout")]
    pub timeout: Duration,
    /// Use endpoints' host names (`pod.service.namespace`) instead of their
    /// addresses, for backends whose TLS certificates name them.
    #[serde(default)]
    pub return_hostnames: bool,
    /// How to reach the API server: `serviceAccount` (default), `kubeConfig`
    /// or `none`, as in `k8s_attributes`.
    #[serde(default)]
    pub auth_type: AuthType,
    /// With `auth_type: kubeConfig`: the kubeconfig file (default:
    /// `$KUBECONFIG`, then `~/.kube/config`).
    #[serde(default)]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// With `auth_type: kubeConfig`: the context (default: the current one).
    #[serde(default)]
    pub context: Option<String>,
}

fn default_port() -> u16 {
    4317
}

fn default_ports() -> Vec<u16> {
    vec![4317]
}

fn default_interval() -> Duration {
    Duration::from_secs(5)
}

fn default_timeout() -> Duration {
    Duration::from_secs(1)
}

impl Validate for LoadBalancingConfig {
    fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let resolver = &self.resolver;
        let chosen = [resolver.static_list.is_some(), resolver.dns.is_some(), resolver.k8s.is_some()]
            .iter()
            .filter(|c| **c)
            .count();
        if chosen != 1 {
            problems.push(("resolver".into(), "needs exactly one of `static`, `dns` or `k8s`".into()));
        }
        if let Some(list) = &resolver.static_list
            && list.hostnames.is_empty()
        {
            problems.push(("resolver::static::hostnames".into(), "must name at least one backend".into()));
        }
        if let Some(dns) = &resolver.dns {
            if dns.hostname.is_empty() {
                problems.push(("resolver::dns::hostname".into(), "must not be empty".into()));
            }
            if dns.interval.is_zero() {
                problems.push(("resolver::dns::interval".into(), "must be more than 0".into()));
            }
            if dns.timeout.is_zero() {
                problems.push(("resolver::dns::timeout".into(), "must be more than 0".into()));
            }
        }
        if let Some(k8s) = &resolver.k8s {
            if k8s.service.is_empty() || k8s.service.split('.').count() > 2 {
                problems.push(("resolver::k8s::service".into(), "must be `name.namespace` or `name`".into()));
            }
            if k8s.ports.is_empty() {
                problems.push(("resolver::k8s::ports".into(), "must name at least one port".into()));
            }
            if k8s.kubeconfig.is_some() && k8s.auth_type != AuthType::KubeConfig {
                problems.push(("resolver::k8s::kubeconfig".into(), "is only read with `auth_type: kubeConfig`".into()));
            }
        }
        if self.routing_key == RoutingKey::Attributes && self.routing_attributes.is_empty() {
            problems.push(("routing_attributes".into(), "`routing_key: attributes` needs at least one".into()));
        }
        if self.routing_key != RoutingKey::Attributes && !self.routing_attributes.is_empty() {
            problems.push(("routing_attributes".into(), "only read with `routing_key: attributes`".into()));
        }
        problems
    }
}
