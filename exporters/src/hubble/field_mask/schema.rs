//! The field names of Cilium's `flow.Flow` message and the messages inside
//! it, across the API's versions: what a field mask path may name.
//!
//! flowtel's own proto (`exporters/proto/flow`) carries only the fields it
//! fills; this table knows the rest by name so a mask that names them (an
//! L7 or policy field, a newer endpoint field) is accepted.

/// One field of a message.
#[derive(Clone, Copy, Debug)]
pub(super) enum Field {
    /// A scalar, string, enum or bytes: a path ends here.
    Leaf,
    /// A repeated or map field: a path ends here, as protobuf field masks
    /// cannot reach inside a list.
    Repeated,
    /// A message whose fields a path may name next.
    Message(Message),
    /// A message whose fields flowtel does not track (it never fills it):
    /// any sub-path of well-formed field names is accepted.
    Opaque,
}

type Message = &'static [(&'static str, Field)];

use Field::{Leaf, Message as Msg, Opaque, Repeated};

const TIMESTAMP: Message = &[("seconds", Leaf), ("nanos", Leaf)];
const BOOL_VALUE: Message = &[("value", Leaf)];
const ANY: Message = &[("type_url", Leaf), ("value", Leaf)];
const ETHERNET: Message = &[("source", Leaf), ("destination", Leaf)];
const IP: Message = &[
    ("source", Leaf),
    ("source_xlated", Leaf),
    ("destination", Leaf),
    ("ipVersion", Leaf),
    ("encrypted", Leaf),
    ("encryptionProtocol", Leaf),
    ("decrypted", Leaf),
];
const TCP_FLAGS: Message = &[
    ("FIN", Leaf),
    ("SYN", Leaf),
    ("RST", Leaf),
    ("PSH", Leaf),
    ("ACK", Leaf),
    ("URG", Leaf),
    ("ECE", Leaf),
    ("CWR", Leaf),
    ("NS", Leaf),
];
const TCP: Message = &[("source_port", Leaf), ("destination_port", Leaf), ("flags", Msg(TCP_FLAGS))];
const PORTS: Message = &[("source_port", Leaf), ("destination_port", Leaf)];
const ICMP: Message = &[("type", Leaf), ("code", Leaf)];
const LAYER4: Message = &[
    ("TCP", Msg(TCP)),
    ("UDP", Msg(PORTS)),
    ("ICMPv4", Msg(ICMP)),
    ("ICMPv6", Msg(ICMP)),
    ("SCTP", Msg(PORTS)),
    ("VRRP", Opaque),
    ("IGMP", Opaque),
];
const ENDPOINT: Message = &[
    ("ID", Leaf),
    ("identity", Leaf),
    ("cluster_name", Leaf),
    ("namespace", Leaf),
    ("labels", Repeated),
    ("pod_name", Leaf),
    ("workloads", Repeated),
];
const DNS: Message = &[
    ("query", Leaf),
    ("ips", Repeated),
    ("ttl", Leaf),
    ("cnames", Repeated),
    ("observation_source", Leaf),
    ("rcode", Leaf),
    ("qtypes", Repeated),
    ("rrtypes", Repeated),
];
const HTTP: Message = &[("code", Leaf), ("method", Leaf), ("url", Leaf), ("protocol", Leaf), ("headers", Repeated)];
const KAFKA: Message =
    &[("error_code", Leaf), ("api_version", Leaf), ("api_key", Leaf), ("correlation_id", Leaf), ("topic", Leaf)];
const LAYER7: Message =
    &[("type", Leaf), ("latency_ns", Leaf), ("dns", Msg(DNS)), ("http", Msg(HTTP)), ("kafka", Msg(KAFKA))];
const SERVICE: Message = &[("name", Leaf), ("namespace", Leaf)];
const EVENT_TYPE: Message = &[("type", Leaf), ("sub_type", Leaf)];
const INTERFACE: Message = &[("index", Leaf), ("name", Leaf)];
const TRACE_PARENT: Message = &[("trace_id", Leaf)];
const TRACE_CONTEXT: Message = &[("parent", Msg(TRACE_PARENT))];
const FILE_INFO: Message = &[("name", Leaf), ("line", Leaf)];

/// `flow.Flow`.
pub(super) const FLOW: Message = &[
    ("time", Msg(TIMESTAMP)),
    ("uuid", Leaf),
    ("emitter", Opaque),
    ("verdict", Leaf),
    ("drop_reason", Leaf),
    ("auth_type", Leaf),
    ("ethernet", Msg(ETHERNET)),
    ("IP", Msg(IP)),
    ("l4", Msg(LAYER4)),
    ("tunnel", Opaque),
    ("source", Msg(ENDPOINT)),
    ("destination", Msg(ENDPOINT)),
    ("Type", Leaf),
    ("node_name", Leaf),
    ("node_labels", Repeated),
    ("source_names", Repeated),
    ("destination_names", Repeated),
    ("l7", Msg(LAYER7)),
    ("reply", Leaf),
    ("event_type", Msg(EVENT_TYPE)),
    ("source_service", Msg(SERVICE)),
    ("destination_service", Msg(SERVICE)),
    ("traffic_direction", Leaf),
    ("policy_match_type", Leaf),
    ("trace_observation_point", Leaf),
    ("trace_reason", Leaf),
    ("file", Msg(FILE_INFO)),
    ("drop_reason_desc", Leaf),
    ("is_reply", Msg(BOOL_VALUE)),
    ("debug_capture_point", Leaf),
    ("interface", Msg(INTERFACE)),
    ("proxy_port", Leaf),
    ("trace_context", Msg(TRACE_CONTEXT)),
    ("sock_xlate_point", Leaf),
    ("socket_cookie", Leaf),
    ("cgroup_id", Leaf),
    ("Summary", Leaf),
    ("extensions", Msg(ANY)),
    ("egress_allowed_by", Repeated),
    ("ingress_allowed_by", Repeated),
    ("egress_denied_by", Repeated),
    ("ingress_denied_by", Repeated),
    ("policy_log", Repeated),
    ("aggregate", Opaque),
    ("ip_trace_id", Opaque),
];

fn is_field_name(part: &str) -> bool {
    part.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Where a path leaves `flow.Flow`.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    /// The message there has no such field.
    #[error("no field '{0}' there")]
    NoField(String),
    /// A scalar or list field followed by more parts.
    #[error("'{0}' has no fields to name")]
    NotAMessage(String),
    /// A part that cannot be a field name.
    #[error("'{0}' is not a field name")]
    NotAName(String),
}

/// Checks a path (split on dots) against `flow.Flow`; the error says where it went wrong.
pub(super) fn check(path: &[&str]) -> Result<(), PathError> {
    let mut message = FLOW;
    let mut parts = path.iter().peekable();
    while let Some(part) = parts.next() {
        let Some((_, field)) = message.iter().find(|(name, _)| name == part) else {
            return Err(PathError::NoField((*part).to_owned()));
        };
        match field {
            Msg(next) => message = next,
            Leaf | Repeated if parts.peek().is_some() => {
                return Err(PathError::NotAMessage((*part).to_owned()));
            }
            Leaf | Repeated => {}
            Opaque => {
                return match parts.find(|part| !is_field_name(part)) {
                    Some(bad) => Err(PathError::NotAName((*bad).to_owned())),
                    None => Ok(()),
                };
            }
        }
    }
    Ok(())
}
