use opentelemetry_proto::tonic::common::v1::AnyValue;

use super::*;

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

fn s(key: &str, value: &str) -> KeyValue {
    kv(key, Value::StringValue(value.into()))
}

fn i(key: &str, value: i64) -> KeyValue {
    kv(key, Value::IntValue(value))
}

fn names() -> NodeNames {
    NodeNames { local_host: "box-1".into(), local_node: "node-local".into() }
}

fn record(event_name: &str, attributes: Vec<KeyValue>) -> LogRecord {
    LogRecord { time_unix_nano: 1_500_000_000_250, event_name: event_name.into(), attributes, ..Default::default() }
}

#[test]
fn a_drop_record_becomes_a_dropped_flow_with_the_closest_cilium_reason() {
    let drop = record(
        "network.packet.drop",
        vec![
            s("network.type", "ipv4"),
            s("network.transport", "udp"),
            s("source.address", "10.0.0.1"),
            i("source.port", 5000),
            s("destination.address", "10.0.0.2"),
            i("destination.port", 7000),
            s("network.drop.reason", "NETFILTER_DROP"),
            s("network.drop.location", "nf_hook_slow"),
            s("network.interface.name", "veth1"),
        ],
    );
    let flow = flow(None, &drop, &names()).unwrap();
    assert_eq!(flow.verdict, Verdict::Dropped as i32);
    assert_eq!(flow.drop_reason_desc, DropReason::PolicyDenied as i32);
    assert_eq!(flow.drop_reason, DropReason::PolicyDenied as u32);
    assert_eq!(flow.summary, "kernel drop reason NETFILTER_DROP in nf_hook_slow");
    assert_eq!(flow.time, Some(Timestamp { seconds: 1500, nanos: 250 }));
    assert_eq!(flow.event_type.unwrap().r#type, EVENT_TYPE_DROP);
    assert_eq!(flow.l4.unwrap().protocol, Some(Protocol::Udp(Udp { source_port: 5000, destination_port: 7000 })));
    assert_eq!(flow.node_name, "node-local", "a record without host.name is this node's");
    assert_eq!(flow.interface.unwrap().name, "veth1");
    assert_eq!(flow.is_reply, None);
}

#[test]
fn kernel_reasons_without_a_cilium_counterpart_stay_unknown() {
    assert_eq!(cilium_drop_reason("NO_SOCKET"), DropReason::SocketLookupFailed);
    assert_eq!(cilium_drop_reason("TCP_CSUM"), DropReason::ErrorWhileCorrectingL4Checksum);
    assert_eq!(cilium_drop_reason("QUEUE_PURGE"), DropReason::Unknown);
}

#[test]
fn node_names_come_from_the_record_unless_it_is_this_host() {
    let flow_of = |resource: Vec<KeyValue>| {
        let resource = Resource { attributes: resource, ..Default::default() };
        flow(Some(&resource), &record("network.flow", vec![]), &names()).unwrap().node_name
    };
    assert_eq!(flow_of(vec![s("host.name", "box-1")]), "node-local");
    assert_eq!(flow_of(vec![s("host.name", "box-2")]), "box-2");
    assert_eq!(flow_of(vec![s("host.name", "box-2"), s("k8s.node.name", "worker-2")]), "worker-2");
}

#[test]
fn kubernetes_attributes_fill_both_endpoints_and_services() {
    let attributes = vec![
        s("network.transport", "tcp"),
        s("network.tcp.flags", "SYN"),
        s("k8s.src.namespace.name", "shop"),
        s("k8s.src.pod.name", "web-1"),
        s("k8s.src.pod.labels.app", "web"),
        s("k8s.src.owner.kind", "Deployment"),
        s("k8s.src.owner.name", "web"),
        s("k8s.dst.namespace.name", "shop"),
        s("k8s.dst.service.name", "db"),
    ];
    let flow = flow(None, &record("network.flow", attributes), &names()).unwrap();
    let source = flow.source.unwrap();
    assert_eq!((source.namespace.as_str(), source.pod_name.as_str()), ("shop", "web-1"));
    assert_eq!(source.labels, ["k8s:app=web", "k8s:io.kubernetes.pod.namespace=shop"]);
    assert_eq!(source.workloads, [Workload { name: "web".into(), kind: "Deployment".into() }]);
    assert_eq!(flow.destination_service, Some(Service { name: "db".into(), namespace: "shop".into() }));
    assert!(flow.source_service.is_none());
    assert_eq!(flow.is_reply, Some(false), "a SYN-only flow opens a connection");
    assert!(!flow.reply);
}

#[test]
fn node_ends_get_the_reserved_host_or_remote_node_identity() {
    let resource = Resource { attributes: vec![s("k8s.node.name", "node-1")], ..Default::default() };
    let attributes = vec![s("k8s.src.node.name", "node-1"), s("k8s.dst.node.name", "node-2")];
    let flow = flow(Some(&resource), &record("network.flow", attributes), &names()).unwrap();
    let (source, destination) = (flow.source.unwrap(), flow.destination.unwrap());
    assert_eq!((source.identity, source.labels), (1, vec!["reserved:host".to_owned()]));
    assert_eq!((destination.identity, destination.labels), (6, vec!["reserved:remote-node".to_owned()]));
    let pod = vec![s("k8s.src.node.name", "node-1"), s("k8s.src.pod.name", "web-1")];
    let flow = super::flow(Some(&resource), &record("network.flow", pod), &names()).unwrap();
    let source = flow.source.unwrap();
    assert!(source.identity >= 256, "a pod's end is not the node's: {}", source.identity);
    assert!(!source.labels.iter().any(|l| l.starts_with("reserved:")));
}

#[test]
fn pods_get_one_identity_per_namespace_and_labels() {
    let pod = |name: &str, namespace: &str, app: &str| {
        let attributes =
            vec![s("k8s.src.pod.name", name), s("k8s.src.namespace.name", namespace), s("k8s.src.pod.labels.app", app)];
        flow(None, &record("network.flow", attributes), &names()).unwrap().source.unwrap()
    };
    let (web_1, web_2) = (pod("web-1", "shop", "web"), pod("web-2", "shop", "web"));
    assert_eq!(web_1.identity, web_2.identity, "the same labels, the same identity");
    assert!((256..1 << 24).contains(&web_1.identity), "outside Cilium's reserved identities");
    assert_ne!(web_1.identity, pod("db-1", "shop", "db").identity);
    assert_ne!(web_1.identity, pod("web-1", "staging", "web").identity, "the namespace is part of it");
    // Stable across processes and builds: a fixed hash, written down here.
    assert_eq!(super::workload_identity(&["k8s:app=web".to_owned()]), WEB_IDENTITY);
    // A pod no controller owns is its own workload.
    assert_eq!(web_1.workloads, [Workload { name: "web-1".into(), kind: "Pod".into() }]);
}

/// The identity of the label set `k8s:app=web`, as flowtel has always numbered it.
const WEB_IDENTITY: u32 = 16_191_539;

#[test]
fn outside_the_cluster_is_world_once_k8s_attributes_looked() {
    let attributes = vec![s("k8s.src.pod.name", "web-1"), s("k8s.src.namespace.name", "shop")];
    let flow = flow(None, &record("network.flow", attributes), &names()).unwrap();
    let destination = flow.destination.unwrap();
    assert_eq!((destination.identity, destination.labels), (2, vec!["reserved:world".to_owned()]));
    // Without Kubernetes attributes nothing is known of either end.
    let bare = super::flow(None, &record("network.flow", vec![]), &names()).unwrap();
    assert_eq!(bare.destination.unwrap().identity, 0);
}

#[test]
fn is_reply_comes_from_the_record() {
    let with = |value: Option<bool>| {
        let mut attributes = vec![
            s("network.transport", "tcp"),
            i("source.port", 40000),
            i("destination.port", 40001),
            s("network.tcp.flags", "ACK|PSH"),
        ];
        if let Some(value) = value {
            attributes.push(KeyValue {
                key: "flow.is_reply".into(),
                value: Some(AnyValue { value: Some(Value::BoolValue(value)) }),
                ..Default::default()
            });
        }
        flow(None, &record("network.flow", attributes), &names()).unwrap()
    };
    let reply = with(Some(true));
    assert_eq!((reply.is_reply, reply.reply), (Some(true), true));
    let request = with(Some(false));
    assert_eq!((request.is_reply, request.reply), (Some(false), false));
    assert_eq!(with(None).is_reply, None, "mid-connection flags alone say nothing");
}

#[test]
fn other_records_have_no_flow_and_trace_ids_travel() {
    assert!(flow(None, &record("network.tcp.connection", vec![]), &names()).is_none());
    assert!(flow(None, &record("", vec![]), &names()).is_none());
    let mut traced = record("network.flow", vec![]);
    traced.trace_id = vec![0xab; 16];
    let flow = flow(None, &traced, &names()).unwrap();
    assert_eq!(flow.trace_context.unwrap().parent.unwrap().trace_id, "ab".repeat(16));
}

#[test]
fn traffic_direction_is_the_local_pods() {
    let direction = |attributes: Vec<KeyValue>| {
        let resource = Resource { attributes: vec![s("k8s.node.name", "node-1")], ..Default::default() };
        flow(Some(&resource), &record("network.flow", attributes), &names()).unwrap().traffic_direction
    };
    // Seen arriving on the host side of the pod's veth: leaving the pod.
    let leaving =
        vec![s("network.io.direction", "receive"), s("k8s.src.pod.name", "web-1"), s("k8s.src.node.name", "node-1")];
    assert_eq!(direction(leaving), TrafficDirection::Egress as i32);
    let arriving =
        vec![s("network.io.direction", "transmit"), s("k8s.dst.pod.name", "web-1"), s("k8s.dst.node.name", "node-1")];
    assert_eq!(direction(arriving), TrafficDirection::Ingress as i32);
    // A pod of another node is not this node's endpoint: the interface decides.
    let remote =
        vec![s("network.io.direction", "receive"), s("k8s.src.pod.name", "db-1"), s("k8s.src.node.name", "node-2")];
    assert_eq!(direction(remote), TrafficDirection::Ingress as i32);
}
