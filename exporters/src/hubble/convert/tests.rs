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
    assert_eq!(flow.source.unwrap().identity, 0, "a pod's end is not the node's");
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
