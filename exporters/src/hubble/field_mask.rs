//! `GetFlowsRequest.field_mask`: a flow with only the named fields, as
//! Hubble sends it. Paths use the proto field names (`time`, `verdict`,
//! `source.pod_name`, `IP.source`, `l4.TCP.flags`).
//!
//! A path is checked against the whole of Cilium's `Flow` message (the
//! [`schema`]), not only the fields flowtel fills, so a client's mask naming
//! `l7` or `source.cluster_name` (the `hubble` CLI's default mask does) is
//! accepted, and those fields stay empty as they would on a flow without
//! them. A path no Cilium version knows is an `INVALID_ARGUMENT` naming it,
//! as from Hubble.

mod schema;

pub use schema::PathError;

use std::collections::BTreeMap;

use prost_types::Timestamp;

use super::proto::flow::{
    CiliumEventType, Endpoint, Ethernet, Flow, IcmPv4, IcmPv6, Ip, Layer4, NetworkInterface, Sctp, Service, Tcp,
    TcpFlags, TraceContext, TraceParent, Udp, Workload, layer4::Protocol,
};

/// Paths a mask may hold.
pub const MAX_PATHS: usize = 256;

/// What a mask keeps of one message: everything, or some of its fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
enum Keep {
    #[default]
    All,
    Fields(BTreeMap<String, Keep>),
}

impl Keep {
    /// Adds a path below this node; a shorter path that covers it wins.
    fn add(&mut self, path: &[&str]) {
        let Some((first, rest)) = path.split_first() else {
            *self = Keep::All;
            return;
        };
        let Keep::Fields(fields) = self else { return };
        match fields.get_mut(*first) {
            Some(Keep::All) => {}
            Some(child) if rest.is_empty() => *child = Keep::All,
            Some(child) => child.add(rest),
            None => {
                let mut child = Keep::Fields(BTreeMap::new());
                child.add(rest);
                fields.insert((*first).to_owned(), child);
            }
        }
    }
}

/// A field mask flowtel refuses.
#[derive(Debug, thiserror::Error)]
pub enum FieldMaskError {
    /// More paths than [`MAX_PATHS`].
    #[error("field_mask: {0} paths; at most {MAX_PATHS} are allowed")]
    TooManyPaths(usize),
    /// A path that names no field of `flow.Flow`.
    #[error("field_mask: unknown path '{path}': {why}")]
    UnknownPath {
        /// As sent.
        path: String,
        /// Where it went wrong.
        why: schema::PathError,
    },
}

/// A checked field mask.
#[derive(Clone, Debug, Default)]
pub struct FieldMask {
    keep: Option<Keep>,
}

impl FieldMask {
    /// Checks the paths; an empty list masks nothing.
    pub fn new(paths: &[String]) -> Result<Self, FieldMaskError> {
        if paths.len() > MAX_PATHS {
            return Err(FieldMaskError::TooManyPaths(paths.len()));
        }
        if paths.is_empty() {
            return Ok(FieldMask { keep: None });
        }
        let mut keep = Keep::Fields(BTreeMap::new());
        for path in paths {
            let parts: Vec<&str> = path.split('.').collect();
            schema::check(&parts).map_err(|why| FieldMaskError::UnknownPath { path: path.clone(), why })?;
            keep.add(&parts);
        }
        Ok(FieldMask { keep: Some(keep) })
    }

    /// Whether the mask keeps everything.
    pub fn is_empty(&self) -> bool {
        self.keep.is_none()
    }

    /// The flow with only the masked fields.
    pub fn apply(&self, flow: &Flow) -> Flow {
        match &self.keep {
            None | Some(Keep::All) => flow.clone(),
            Some(Keep::Fields(fields)) => flow.masked(fields),
        }
    }
}

/// A message whose fields a mask can pick.
trait Masked: Default {
    /// A copy with only the fields `keep` names.
    fn masked(&self, keep: &BTreeMap<String, Keep>) -> Self;
}

/// One field's value under a mask node: leaves are copied whole, messages masked.
trait MaskedField {
    fn masked_field(&self, keep: &Keep) -> Self;
}

impl<T: Masked + Clone> MaskedField for Option<T> {
    fn masked_field(&self, keep: &Keep) -> Self {
        match keep {
            Keep::All => self.clone(),
            Keep::Fields(fields) => self.as_ref().map(|message| message.masked(fields)),
        }
    }
}

/// Leaves: a mask can only keep them whole (the schema refuses deeper paths).
macro_rules! leaf_fields {
    ($($t:ty),*) => {$(
        impl MaskedField for $t {
            fn masked_field(&self, _keep: &Keep) -> Self {
                self.clone()
            }
        }
    )*};
}
leaf_fields!(String, u32, u64, i32, i64, bool, Vec<String>, Vec<Workload>);

/// `google.protobuf.BoolValue` (`is_reply`): its one field is `value`.
impl MaskedField for Option<bool> {
    fn masked_field(&self, _keep: &Keep) -> Self {
        *self
    }
}

/// `Masked` for a message: each proto field name with the struct field it fills.
macro_rules! masked {
    ($message:ty { $($name:literal => $field:ident),* $(,)? }) => {
        impl Masked for $message {
            fn masked(&self, keep: &BTreeMap<String, Keep>) -> Self {
                let mut out = <$message>::default();
                for (name, node) in keep {
                    match name.as_str() {
                        $($name => out.$field = self.$field.masked_field(node),)*
                        // Fields of Cilium's API that flowtel never fills.
                        _ => {}
                    }
                }
                out
            }
        }
    };
}

masked!(Flow {
    "time" => time,
    "uuid" => uuid,
    "verdict" => verdict,
    "drop_reason" => drop_reason,
    "ethernet" => ethernet,
    "IP" => ip,
    "l4" => l4,
    "source" => source,
    "destination" => destination,
    "Type" => r#type,
    "node_name" => node_name,
    "source_names" => source_names,
    "destination_names" => destination_names,
    "reply" => reply,
    "event_type" => event_type,
    "source_service" => source_service,
    "destination_service" => destination_service,
    "traffic_direction" => traffic_direction,
    "trace_observation_point" => trace_observation_point,
    "drop_reason_desc" => drop_reason_desc,
    "is_reply" => is_reply,
    "interface" => interface,
    "trace_context" => trace_context,
    "Summary" => summary,
});
masked!(Timestamp { "seconds" => seconds, "nanos" => nanos });
masked!(Endpoint {
    "ID" => id,
    "identity" => identity,
    "namespace" => namespace,
    "labels" => labels,
    "pod_name" => pod_name,
    "workloads" => workloads,
});
masked!(Ip { "source" => source, "destination" => destination, "ipVersion" => ip_version, "encrypted" => encrypted });
masked!(Ethernet { "source" => source, "destination" => destination });
masked!(Tcp { "source_port" => source_port, "destination_port" => destination_port, "flags" => flags });
masked!(TcpFlags {
    "FIN" => fin, "SYN" => syn, "RST" => rst, "PSH" => psh, "ACK" => ack,
    "URG" => urg, "ECE" => ece, "CWR" => cwr, "NS" => ns,
});
masked!(Udp { "source_port" => source_port, "destination_port" => destination_port });
masked!(Sctp { "source_port" => source_port, "destination_port" => destination_port });
masked!(IcmPv4 { "type" => r#type, "code" => code });
masked!(IcmPv6 { "type" => r#type, "code" => code });
masked!(Service { "name" => name, "namespace" => namespace });
masked!(CiliumEventType { "type" => r#type, "sub_type" => sub_type });
masked!(NetworkInterface { "index" => index, "name" => name });
masked!(TraceContext { "parent" => parent });
masked!(TraceParent { "trace_id" => trace_id });

/// `l4` is a oneof: a path names one of its cases.
impl Masked for Layer4 {
    fn masked(&self, keep: &BTreeMap<String, Keep>) -> Self {
        let protocol = self.protocol.as_ref().and_then(|protocol| match protocol {
            Protocol::Tcp(m) => keep.get("TCP").map(|k| Protocol::Tcp(mask_message(m, k))),
            Protocol::Udp(m) => keep.get("UDP").map(|k| Protocol::Udp(mask_message(m, k))),
            Protocol::IcmPv4(m) => keep.get("ICMPv4").map(|k| Protocol::IcmPv4(mask_message(m, k))),
            Protocol::IcmPv6(m) => keep.get("ICMPv6").map(|k| Protocol::IcmPv6(mask_message(m, k))),
            Protocol::Sctp(m) => keep.get("SCTP").map(|k| Protocol::Sctp(mask_message(m, k))),
        });
        Layer4 { protocol }
    }
}

fn mask_message<T: Masked + Clone>(message: &T, keep: &Keep) -> T {
    match keep {
        Keep::All => message.clone(),
        Keep::Fields(fields) => message.masked(fields),
    }
}

#[cfg(test)]
mod tests;
