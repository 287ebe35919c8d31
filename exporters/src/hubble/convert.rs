//! flowtel's flow and drop log records as Hubble `Flow`s. Pure functions;
//! the mapping is documented in the exporter's README.

use flowtel_core::schema::{End, attr, event};
use std::collections::BTreeMap;

use flowtel_core::attributes;
use opentelemetry_proto::tonic::{
    common::v1::{KeyValue, any_value::Value},
    logs::v1::LogRecord,
    resource::v1::Resource,
};
use prost_types::Timestamp;

use super::proto::flow::{
    CiliumEventType, DropReason, Endpoint, Flow, FlowType, IcmPv4, IcmPv6, Ip, IpVersion, Layer4, NetworkInterface,
    Sctp, Service, Tcp, TcpFlags, TraceContext, TraceObservationPoint, TraceParent, TrafficDirection, Udp, Verdict,
    Workload, layer4::Protocol,
};

/// Cilium's monitor message type of a dropped packet.
pub const EVENT_TYPE_DROP: i32 = 1;
/// Cilium's monitor message type of a traced (forwarded) packet.
pub const EVENT_TYPE_TRACE: i32 = 4;

/// A record's attributes over its resource's.
pub struct Attributes<'a> {
    resource: &'a [KeyValue],
    record: &'a [KeyValue],
}

impl<'a> Attributes<'a> {
    /// The view of one record.
    pub fn of(resource: Option<&'a Resource>, record: &'a LogRecord) -> Self {
        Attributes { resource: attributes::of_resource(resource), record: &record.attributes }
    }

    fn value(&self, key: &str) -> Option<&'a Value> {
        attributes::find(self.record, key).or_else(|| attributes::find(self.resource, key))
    }

    /// A string attribute.
    pub fn str(&self, key: &str) -> Option<&'a str> {
        match self.value(key)? {
            Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        }
    }

    /// One end's Kubernetes attribute `k8s_key` (`k8s.pod.name` read as
    /// `k8s.src.pod.name` for the source); empty when absent.
    fn of_end(&self, end: End, k8s_key: &str) -> &'a str {
        self.str(&attr::k8s_of_end(end, k8s_key)).unwrap_or_default()
    }

    /// A boolean attribute (or a string `true` / `false`).
    pub fn bool(&self, key: &str) -> Option<bool> {
        match self.value(key)? {
            Value::BoolValue(b) => Some(*b),
            Value::StringValue(s) => s.parse().ok(),
            _ => None,
        }
    }

    /// Whether any attribute's key starts with `prefix`.
    fn any_with_prefix(&self, prefix: &str) -> bool {
        self.resource.iter().chain(self.record).any(|kv| kv.key.starts_with(prefix))
    }

    /// An integer attribute (or a string holding one).
    pub fn int(&self, key: &str) -> Option<i64> {
        attributes::number(self.value(key)?).map(|n| n as i64)
    }

    /// Every `(suffix, value)` of string attributes whose key starts with
    /// `prefix`, the record's over its resource's, sorted by key.
    pub fn with_prefix(&self, prefix: &str) -> Vec<(&'a str, &'a str)> {
        let mut found: BTreeMap<&'a str, &'a str> = BTreeMap::new();
        for kv in self.resource.iter().chain(self.record) {
            if let (Some(suffix), Some(Value::StringValue(value))) =
                (kv.key.strip_prefix(prefix), kv.value.as_ref().and_then(|v| v.value.as_ref()))
            {
                found.insert(suffix, value.as_str());
            }
        }
        found.into_iter().collect()
    }
}

/// Cilium's drop reason closest in meaning to a kernel drop reason, where
/// one exists.
pub fn cilium_drop_reason(kernel: &str) -> DropReason {
    match kernel {
        "NETFILTER_DROP" | "BPF_CGROUP_EGRESS" | "TC_EGRESS" | "TC_INGRESS" => DropReason::PolicyDenied,
        "NO_SOCKET" => DropReason::SocketLookupFailed,
        "IP_CSUM" => DropReason::ErrorWhileCorrectingL3Checksum,
        "TCP_CSUM" | "UDP_CSUM" | "ICMP_CSUM" | "SKB_CSUM" => DropReason::ErrorWhileCorrectingL4Checksum,
        "PKT_TOO_SMALL" | "IP_INHDR" | "HDR_TRUNC" => DropReason::CtTruncatedOrInvalidHeader,
        "IP_NOPROTO" => DropReason::UnknownL4Protocol,
        "UNHANDLED_PROTO" => DropReason::UnsupportedL3Protocol,
        "IP_OUTNOROUTES" | "IP_INNOROUTES" => DropReason::FibLookupFailed,
        "IPV6_BAD_EXTHDR" => DropReason::InvalidIpv6ExtensionHeader,
        "IP_RPFILTER" | "IP_INVALID_SOURCE" | "IP_LOCAL_SOURCE" => DropReason::InvalidSourceIp,
        "OTHERHOST" | "IP_INVALID_DEST" => DropReason::StaleOrUnroutableIp,
        _ => DropReason::Unknown,
    }
}

fn tcp_flags(text: &str) -> TcpFlags {
    let mut flags = TcpFlags::default();
    for flag in text.split('|') {
        match flag {
            "FIN" => flags.fin = true,
            "SYN" => flags.syn = true,
            "RST" => flags.rst = true,
            "PSH" => flags.psh = true,
            "ACK" => flags.ack = true,
            "URG" => flags.urg = true,
            "ECE" => flags.ece = true,
            "CWR" => flags.cwr = true,
            _ => {}
        }
    }
    flags
}

/// Cilium's reserved identity of a node's own addresses, seen on that node.
const IDENTITY_HOST: u32 = 1;
/// Cilium's reserved identity of addresses outside the cluster.
const IDENTITY_WORLD: u32 = 2;
/// Cilium's reserved identity of another node's addresses.
const IDENTITY_REMOTE_NODE: u32 = 6;
/// The first identity Cilium allocates to workloads (below are reserved).
const FIRST_WORKLOAD_IDENTITY: u32 = 256;
/// Past the last cluster-scoped identity (Cilium: 8 bits of cluster id over 16 of identity).
const END_OF_WORKLOAD_IDENTITIES: u32 = 1 << 24;

/// A pod's identity as Cilium numbers them: one per namespace and set of
/// labels, the same for every pod of a workload and across restarts (a
/// fixed hash of the sorted labels, which include the namespace), in the
/// range Cilium allocates to workloads. Two label sets share one only by a
/// hash collision (about one pair in 16 million).
pub fn workload_identity(sorted_labels: &[String]) -> u32 {
    use std::hash::Hasher as _;
    let mut hasher = fnv::FnvHasher::default();
    for label in sorted_labels {
        hasher.write(label.as_bytes());
        hasher.write_u8(0);
    }
    let span = u64::from(END_OF_WORKLOAD_IDENTITIES - FIRST_WORKLOAD_IDENTITY);
    FIRST_WORKLOAD_IDENTITY + (hasher.finish() % span) as u32
}

/// One side's endpoint from `k8s.src.*` / `k8s.dst.*` attributes (empty
/// outside Kubernetes). A pod gets a workload identity
/// ([`workload_identity`]); an end that is a node gets Cilium's reserved
/// identity, `host` on the node that reported the flow (`node`),
/// `remote-node` elsewhere; on a record `k8s_attributes` enriched, an end
/// that is neither is `world`.
fn endpoint(attributes: &Attributes<'_>, end: End, node: &str) -> Endpoint {
    let get = |key: &str| attributes.of_end(end, key).to_owned();
    let mut labels: Vec<String> = attributes
        .with_prefix(&attr::k8s_of_end(end, attr::K8S_POD_LABELS_PREFIX))
        .into_iter()
        .map(|(key, value)| format!("k8s:{key}={value}"))
        .collect();
    let namespace = get(attr::K8S_NAMESPACE_NAME);
    if !namespace.is_empty() {
        labels.push(format!("k8s:io.kubernetes.pod.namespace={namespace}"));
    }
    let pod_name = get(attr::K8S_POD_NAME);
    let end_node = get(attr::K8S_NODE_NAME);
    let reserved = if !pod_name.is_empty() {
        None
    } else if !end_node.is_empty() {
        Some(if end_node == node { ("host", IDENTITY_HOST) } else { ("remote-node", IDENTITY_REMOTE_NODE) })
    } else if enriched_by_k8s(attributes) {
        Some(("world", IDENTITY_WORLD))
    } else {
        None
    };
    if let Some((name, _)) = reserved {
        labels.push(format!("reserved:{name}"));
    }
    labels.sort();
    let identity = match reserved {
        Some((_, id)) => id,
        None if !pod_name.is_empty() => workload_identity(&labels),
        None => 0,
    };
    let (kind, name) = (get(attr::K8S_OWNER_KIND), get(attr::K8S_OWNER_NAME));
    let workloads = match (name.is_empty(), pod_name.is_empty()) {
        (false, _) => vec![Workload { name, kind }],
        // A pod no controller owns is its own workload.
        (true, false) => vec![Workload { name: pod_name.clone(), kind: "Pod".into() }],
        (true, true) => Vec::new(),
    };
    Endpoint { identity, namespace, pod_name, labels, workloads, ..Endpoint::default() }
}

/// Whether `k8s_attributes` looked at the record's ends: then an end it
/// found neither a pod nor a node for is outside the cluster.
fn enriched_by_k8s(attributes: &Attributes<'_>) -> bool {
    [End::Source, End::Destination].into_iter().any(|end| attributes.any_with_prefix(&attr::k8s_of_end(end, "k8s.")))
}

fn service(attributes: &Attributes<'_>, end: End) -> Option<Service> {
    let name = attributes.str(&attr::k8s_of_end(end, attr::K8S_SERVICE_NAME))?;
    Some(Service { name: name.to_owned(), namespace: attributes.of_end(end, attr::K8S_NAMESPACE_NAME).to_owned() })
}

fn timestamp(unix_nanos: u64) -> Timestamp {
    Timestamp { seconds: (unix_nanos / 1_000_000_000) as i64, nanos: (unix_nanos % 1_000_000_000) as i32 }
}

fn layer4(attributes: &Attributes<'_>) -> Option<Layer4> {
    let port = |key: &str| attributes.int(key).unwrap_or(0) as u32;
    let (source_port, destination_port) = (port(attr::SOURCE_PORT), port(attr::DESTINATION_PORT));
    let (kind, code) = (port(attr::NETWORK_ICMP_TYPE), port(attr::NETWORK_ICMP_CODE));
    let protocol = match attributes.str(attr::NETWORK_TRANSPORT)? {
        "tcp" => Protocol::Tcp(Tcp {
            source_port,
            destination_port,
            flags: attributes.str(attr::NETWORK_TCP_FLAGS).map(tcp_flags),
        }),
        "udp" => Protocol::Udp(Udp { source_port, destination_port }),
        "sctp" => Protocol::Sctp(Sctp { source_port, destination_port }),
        "icmp" => Protocol::IcmPv4(IcmPv4 { r#type: kind, code }),
        "icmpv6" => Protocol::IcmPv6(IcmPv6 { r#type: kind, code }),
        _ => return None,
    };
    Some(Layer4 { protocol: Some(protocol) })
}

/// Whether the flow answers another: the record's `flow.is_reply` (the
/// `ebpf` receiver's rule, or what another agent sent). Without it, only a
/// TCP flow that saw a SYN and never an ACK is known to open a connection
/// (a record's TCP flags are the union of its packets'); otherwise unknown.
fn is_reply(attributes: &Attributes<'_>, l4: Option<&Layer4>) -> Option<bool> {
    if let Some(is_reply) = attributes.bool(attr::FLOW_IS_REPLY) {
        return Some(is_reply);
    }
    match l4?.protocol.as_ref()? {
        Protocol::Tcp(Tcp { flags: Some(flags), .. }) if flags.syn && !flags.ack => Some(false),
        _ => None,
    }
}

/// Hubble's direction, relative to the endpoint: traffic leaving a pod of
/// the flow's node is `EGRESS`, traffic reaching one `INGRESS`. `None` when
/// neither end is such a pod (then the interface's direction stands: the
/// node itself is the endpoint).
fn traffic_direction(attributes: &Attributes<'_>, node: &str) -> Option<TrafficDirection> {
    let local_pod = |end| {
        !attributes.of_end(end, attr::K8S_POD_NAME).is_empty() && attributes.of_end(end, attr::K8S_NODE_NAME) == node
    };
    if local_pod(End::Source) {
        Some(TrafficDirection::Egress)
    } else if local_pod(End::Destination) {
        Some(TrafficDirection::Ingress)
    } else {
        None
    }
}

/// How flows get their node name.
#[derive(Clone, Debug)]
pub struct NodeNames {
    /// This host's name (`host.name` of the records flowtel made here).
    pub local_host: String,
    /// The node name of this host's records.
    pub local_node: String,
}

impl NodeNames {
    /// `k8s.node.name` when the record has one; else its `host.name`,
    /// unless that is this host (then the configured node name).
    fn of(&self, attributes: &Attributes<'_>) -> String {
        if let Some(node) = attributes.str(attr::K8S_NODE_NAME).filter(|n| !n.is_empty()) {
            return node.to_owned();
        }
        match attributes.str(attr::HOST_NAME).filter(|h| !h.is_empty()) {
            Some(host) if host != self.local_host => host.to_owned(),
            _ => self.local_node.clone(),
        }
    }
}

/// The `Flow` of a `network.flow` or `network.packet.drop` record, or
/// `None` for other records.
pub fn flow(resource: Option<&Resource>, record: &LogRecord, names: &NodeNames) -> Option<Flow> {
    let dropped = match record.event_name.as_str() {
        event::FLOW => false,
        event::PACKET_DROP => true,
        _ => return None,
    };
    let attributes = Attributes::of(resource, record);
    let time = if record.time_unix_nano != 0 { record.time_unix_nano } else { record.observed_time_unix_nano };
    let ip = match (attributes.str(attr::SOURCE_ADDRESS), attributes.str(attr::DESTINATION_ADDRESS)) {
        (Some(source), Some(destination)) => Some(Ip {
            source: source.to_owned(),
            destination: destination.to_owned(),
            ip_version: match attributes.str(attr::NETWORK_TYPE) {
                Some("ipv6") => IpVersion::IPv6,
                _ => IpVersion::IPv4,
            } as i32,
            encrypted: false,
        }),
        _ => None,
    };
    let l4 = layer4(&attributes);
    let at_interface = match attributes.str(attr::NETWORK_IO_DIRECTION) {
        Some("receive") => TrafficDirection::Ingress,
        Some("transmit") => TrafficDirection::Egress,
        _ => TrafficDirection::Unknown,
    };
    let node_name = names.of(&attributes);
    let direction = traffic_direction(&attributes, &node_name).unwrap_or(at_interface);
    let mut flow = Flow {
        time: Some(timestamp(time)),
        verdict: if dropped { Verdict::Dropped } else { Verdict::Forwarded } as i32,
        ip,
        is_reply: is_reply(&attributes, l4.as_ref()),
        l4,
        source: Some(endpoint(&attributes, End::Source, &node_name)),
        destination: Some(endpoint(&attributes, End::Destination, &node_name)),
        r#type: FlowType::L3L4 as i32,
        node_name,
        event_type: Some(CiliumEventType {
            r#type: if dropped { EVENT_TYPE_DROP } else { EVENT_TYPE_TRACE },
            sub_type: 0,
        }),
        source_service: service(&attributes, End::Source),
        destination_service: service(&attributes, End::Destination),
        traffic_direction: direction as i32,
        trace_observation_point: match at_interface {
            TrafficDirection::Ingress => TraceObservationPoint::FromNetwork,
            TrafficDirection::Egress => TraceObservationPoint::ToNetwork,
            TrafficDirection::Unknown => TraceObservationPoint::UnknownPoint,
        } as i32,
        interface: attributes
            .str(attr::NETWORK_INTERFACE_NAME)
            .map(|name| NetworkInterface { index: 0, name: name.to_owned() }),
        trace_context: (!record.trace_id.is_empty())
            .then(|| TraceContext { parent: Some(TraceParent { trace_id: hex::encode(&record.trace_id) }) }),
        ..Flow::default()
    };
    flow.reply = flow.is_reply.unwrap_or(false);
    if dropped {
        let reason = attributes.str(attr::NETWORK_DROP_REASON).unwrap_or("NOT_SPECIFIED");
        let cilium = cilium_drop_reason(reason);
        flow.drop_reason_desc = cilium as i32;
        flow.drop_reason = cilium as u32;
        flow.summary = match attributes.str(attr::NETWORK_DROP_LOCATION) {
            Some(location) => format!("kernel drop reason {reason} in {location}"),
            None => format!("kernel drop reason {reason}"),
        };
    }
    Some(flow)
}

#[cfg(test)]
mod tests;
