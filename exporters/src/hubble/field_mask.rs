//! `GetFlowsRequest.field_mask`: a flow with only the named fields, as
//! Hubble sends it. Paths use the proto field names (`time`, `verdict`,
//! `source.pod_name`, `IP.source`, `l4.TCP`); an unknown path is an
//! `INVALID_ARGUMENT` naming it.

use super::proto::flow::{Endpoint, Flow, Ip, Layer4, NetworkInterface, layer4::Protocol};

/// A checked field mask.
#[derive(Clone, Debug, Default)]
pub struct FieldMask {
    paths: Vec<Vec<String>>,
}

const TOP_LEVEL: [&str; 24] = [
    "time",
    "uuid",
    "verdict",
    "drop_reason",
    "ethernet",
    "IP",
    "l4",
    "source",
    "destination",
    "Type",
    "node_name",
    "source_names",
    "destination_names",
    "reply",
    "event_type",
    "source_service",
    "destination_service",
    "traffic_direction",
    "trace_observation_point",
    "drop_reason_desc",
    "is_reply",
    "interface",
    "trace_context",
    "Summary",
];

const ENDPOINT: [&str; 6] = ["ID", "identity", "namespace", "labels", "pod_name", "workloads"];
const IP: [&str; 4] = ["source", "destination", "ipVersion", "encrypted"];
const L4: [&str; 5] = ["TCP", "UDP", "ICMPv4", "ICMPv6", "SCTP"];
const NAMED: [&str; 2] = ["name", "namespace"];
const INTERFACE: [&str; 2] = ["index", "name"];

impl FieldMask {
    /// Checks the paths; an empty list masks nothing.
    pub fn new(paths: &[String]) -> Result<Self, String> {
        let mut checked = Vec::new();
        for path in paths {
            let parts: Vec<String> = path.split('.').map(str::to_owned).collect();
            let known = match parts.as_slice() {
                [top] => TOP_LEVEL.contains(&top.as_str()),
                [top, field] => match top.as_str() {
                    "source" | "destination" => ENDPOINT.contains(&field.as_str()),
                    "IP" => IP.contains(&field.as_str()),
                    "l4" => L4.contains(&field.as_str()),
                    "source_service" | "destination_service" => NAMED.contains(&field.as_str()),
                    "interface" => INTERFACE.contains(&field.as_str()),
                    _ => false,
                },
                _ => false,
            };
            if !known {
                return Err(format!("field_mask: unknown path `{path}`"));
            }
            checked.push(parts);
        }
        Ok(FieldMask { paths: checked })
    }

    /// Whether the mask keeps everything.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The flow with only the masked fields.
    pub fn apply(&self, flow: &Flow) -> Flow {
        if self.paths.is_empty() {
            return flow.clone();
        }
        let mut out = Flow::default();
        for path in &self.paths {
            match path.as_slice() {
                [top] => copy_top(&mut out, flow, top),
                [top, field] => match top.as_str() {
                    "source" => copy_endpoint(out.source.get_or_insert_default(), flow.source.as_ref(), field),
                    "destination" => {
                        copy_endpoint(out.destination.get_or_insert_default(), flow.destination.as_ref(), field)
                    }
                    "IP" => copy_ip(out.ip.get_or_insert_default(), flow.ip.as_ref(), field),
                    "l4" => copy_l4(&mut out.l4, flow.l4.as_ref(), field),
                    "source_service" | "destination_service" => {
                        let (to, from) = if top == "source_service" {
                            (&mut out.source_service, flow.source_service.as_ref())
                        } else {
                            (&mut out.destination_service, flow.destination_service.as_ref())
                        };
                        if let Some(from) = from {
                            let to = to.get_or_insert_default();
                            if field == "name" {
                                to.name.clone_from(&from.name);
                            } else {
                                to.namespace.clone_from(&from.namespace);
                            }
                        }
                    }
                    "interface" => {
                        copy_interface(out.interface.get_or_insert_default(), flow.interface.as_ref(), field)
                    }
                    _ => {}
                },
                _ => {}
            }
        }
        out
    }
}

fn copy_top(out: &mut Flow, flow: &Flow, field: &str) {
    match field {
        "time" => out.time = flow.time,
        "uuid" => out.uuid.clone_from(&flow.uuid),
        "verdict" => out.verdict = flow.verdict,
        "drop_reason" => out.drop_reason = flow.drop_reason,
        "ethernet" => out.ethernet.clone_from(&flow.ethernet),
        "IP" => out.ip.clone_from(&flow.ip),
        "l4" => out.l4 = flow.l4,
        "source" => out.source.clone_from(&flow.source),
        "destination" => out.destination.clone_from(&flow.destination),
        "Type" => out.r#type = flow.r#type,
        "node_name" => out.node_name.clone_from(&flow.node_name),
        "source_names" => out.source_names.clone_from(&flow.source_names),
        "destination_names" => out.destination_names.clone_from(&flow.destination_names),
        "reply" => out.reply = flow.reply,
        "event_type" => out.event_type = flow.event_type,
        "source_service" => out.source_service.clone_from(&flow.source_service),
        "destination_service" => out.destination_service.clone_from(&flow.destination_service),
        "traffic_direction" => out.traffic_direction = flow.traffic_direction,
        "trace_observation_point" => out.trace_observation_point = flow.trace_observation_point,
        "drop_reason_desc" => out.drop_reason_desc = flow.drop_reason_desc,
        "is_reply" => out.is_reply = flow.is_reply,
        "interface" => out.interface.clone_from(&flow.interface),
        "trace_context" => out.trace_context.clone_from(&flow.trace_context),
        "Summary" => out.summary.clone_from(&flow.summary),
        _ => {}
    }
}

fn copy_endpoint(to: &mut Endpoint, from: Option<&Endpoint>, field: &str) {
    let Some(from) = from else { return };
    match field {
        "ID" => to.id = from.id,
        "identity" => to.identity = from.identity,
        "namespace" => to.namespace.clone_from(&from.namespace),
        "labels" => to.labels.clone_from(&from.labels),
        "pod_name" => to.pod_name.clone_from(&from.pod_name),
        "workloads" => to.workloads.clone_from(&from.workloads),
        _ => {}
    }
}

fn copy_ip(to: &mut Ip, from: Option<&Ip>, field: &str) {
    let Some(from) = from else { return };
    match field {
        "source" => to.source.clone_from(&from.source),
        "destination" => to.destination.clone_from(&from.destination),
        "ipVersion" => to.ip_version = from.ip_version,
        "encrypted" => to.encrypted = from.encrypted,
        _ => {}
    }
}

fn copy_l4(to: &mut Option<Layer4>, from: Option<&Layer4>, field: &str) {
    let Some(protocol) = from.and_then(|l4| l4.protocol) else { return };
    let wanted = matches!(
        (field, protocol),
        ("TCP", Protocol::Tcp(_))
            | ("UDP", Protocol::Udp(_))
            | ("ICMPv4", Protocol::IcmPv4(_))
            | ("ICMPv6", Protocol::IcmPv6(_))
            | ("SCTP", Protocol::Sctp(_))
    );
    if wanted {
        *to = Some(Layer4 { protocol: Some(protocol) });
    }
}

fn copy_interface(to: &mut NetworkInterface, from: Option<&NetworkInterface>, field: &str) {
    let Some(from) = from else { return };
    if field == "index" {
        to.index = from.index;
    } else {
        to.name.clone_from(&from.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hubble::proto::flow::{Tcp, Verdict};

    fn flow() -> Flow {
        Flow {
            verdict: Verdict::Forwarded as i32,
            node_name: "node-1".into(),
            source: Some(Endpoint { namespace: "web".into(), pod_name: "front-1".into(), ..Endpoint::default() }),
            ip: Some(Ip { source: "10.0.0.1".into(), destination: "10.0.0.2".into(), ip_version: 1, encrypted: false }),
            l4: Some(Layer4 {
                protocol: Some(Protocol::Tcp(Tcp { source_port: 1, destination_port: 2, flags: None })),
            }),
            ..Flow::default()
        }
    }

    #[test]
    fn keeps_only_the_named_fields() {
        let mask =
            FieldMask::new(&["verdict".into(), "source.pod_name".into(), "IP.destination".into(), "l4.TCP".into()])
                .unwrap();
        let masked = mask.apply(&flow());
        assert_eq!(masked.verdict, Verdict::Forwarded as i32);
        assert!(masked.node_name.is_empty());
        let source = masked.source.unwrap();
        assert_eq!((source.pod_name.as_str(), source.namespace.as_str()), ("front-1", ""));
        let ip = masked.ip.unwrap();
        assert_eq!((ip.source.as_str(), ip.destination.as_str()), ("", "10.0.0.2"));
        assert_eq!(masked.l4, flow().l4);
        assert!(FieldMask::new(&["l4.UDP".into()]).unwrap().apply(&flow()).l4.is_none(), "not a UDP flow");
    }

    #[test]
    fn an_empty_mask_keeps_everything_and_unknown_paths_are_refused() {
        assert_eq!(FieldMask::new(&[]).unwrap().apply(&flow()), flow());
        for bad in ["nope", "source.nope", "IP.source.more", "time.seconds"] {
            let err = FieldMask::new(&[bad.into()]).unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
    }
}
