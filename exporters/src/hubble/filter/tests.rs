use super::*;
use crate::hubble::proto::flow::{Ip, Layer4, Tcp, TcpFlags};

fn flow() -> Flow {
    Flow {
        verdict: Verdict::Forwarded as i32,
        node_name: "kind-worker".into(),
        ip: Some(Ip {
            source: "10.1.0.5".into(),
            destination: "10.2.0.9".into(),
            ip_version: IpVersion::IPv4 as i32,
            encrypted: false,
        }),
        l4: Some(Layer4 {
            protocol: Some(Protocol::Tcp(Tcp {
                source_port: 43000,
                destination_port: 8080,
                flags: Some(TcpFlags { syn: true, ack: true, ..TcpFlags::default() }),
            })),
        }),
        source: Some(Endpoint {
            namespace: "shop".into(),
            pod_name: "web-7c9".into(),
            labels: vec!["k8s:app=web".into(), "k8s:tier=front".into()],
            ..Endpoint::default()
        }),
        ..Flow::default()
    }
}

fn one(filter: FlowFilter) -> bool {
    Filters::new(vec![filter], Vec::new()).unwrap().allow(&flow())
}

#[test]
fn label_selectors_follow_kubernetes_syntax() {
    let selects = |selector: &str| one(FlowFilter { source_label: vec![selector.into()], ..FlowFilter::default() });
    assert!(selects("app=web"));
    assert!(selects("app==web,tier=front"));
    assert!(!selects("app=web,tier=back"));
    assert!(selects("app!=db"));
    assert!(selects("tier in (front, middle)"));
    assert!(!selects("tier notin (front)"));
    assert!(selects("app"));
    assert!(selects("!owner"));
    assert!(!selects("!app"));
    assert!(selects("k8s:app=web"), "a source prefix on the key is allowed");
    for bad in ["", "tier in front", "a b=c"] {
        let err = Filters::new(vec![FlowFilter { source_label: vec![bad.into()], ..FlowFilter::default() }], vec![]);
        assert!(err.unwrap_err().to_string().contains("whitelist[0].source_label"), "{bad}");
    }
}

#[test]
fn pods_node_names_and_ports() {
    let pod = |p: &str| one(FlowFilter { source_pod: vec![p.into()], ..FlowFilter::default() });
    assert!(pod("shop/web"));
    assert!(pod("shop/"));
    assert!(pod("web-"));
    assert!(!pod("other/web"));
    let node = |n: &str| one(FlowFilter { node_name: vec![n.into()], ..FlowFilter::default() });
    assert!(node("kind-*"));
    assert!(node("default/kind-worker"));
    assert!(node("default/"));
    assert!(!node("prod/"));
    assert!(!node("kind"));
    let port = |p: &str| one(FlowFilter { destination_port: vec![p.into()], ..FlowFilter::default() });
    assert!(port("8080"));
    assert!(!port("80"));
    let err = Filters::new(vec![], vec![FlowFilter { destination_port: vec!["http".into()], ..FlowFilter::default() }]);
    assert!(err.unwrap_err().to_string().contains("blacklist[0].destination_port: `http`"));
}

#[test]
fn protocols_flags_and_unknown_fields() {
    let protocol = |p: &str| one(FlowFilter { protocol: vec![p.into()], ..FlowFilter::default() });
    assert!(protocol("TCP"));
    assert!(!protocol("udp"));
    assert!(
        Filters::new(vec![FlowFilter { protocol: vec!["carrier-pigeon".into()], ..FlowFilter::default() }], vec![])
            .is_err()
    );
    let flags = |f: TcpFlags| one(FlowFilter { tcp_flags: vec![f], ..FlowFilter::default() });
    assert!(flags(TcpFlags { syn: true, ..TcpFlags::default() }));
    assert!(!flags(TcpFlags { fin: true, ..TcpFlags::default() }));
    assert!(!one(FlowFilter { http_method: vec!["GET".into()], ..FlowFilter::default() }), "no L7 data");
    assert!(one(FlowFilter::default()), "an empty filter matches everything");
}

#[test]
fn node_globs_stay_within_a_name_component_and_match_in_linear_time() {
    let node = |pattern: &str, name: &str| {
        let flow = Flow { node_name: name.into(), ..flow() };
        Filters::new(vec![FlowFilter { node_name: vec![pattern.into()], ..FlowFilter::default() }], vec![])
            .unwrap()
            .allow(&flow)
    };
    assert!(node("k8s*", "k8s1"));
    assert!(!node("k8s*", "k8s1.company.com"), "one star stays in one component");
    assert!(node("k8s**", "k8s1.company.com"));
    assert!(node("prod/*.company.com", "prod/node1.company.com"));
    assert!(!node("prod/*.company.com", "node1.company.com"), "a node without a cluster is in `default`");
    assert!(node("*.company.com", "prod/node1.company.com"), "no cluster in the pattern: any cluster");
    assert!(node("node.1", "node.1") && !node("node.1", "nodex1"), "a dot is literal");
    // A pattern that makes a backtracking matcher take exponential time.
    let long = "a".repeat(100_000);
    assert!(!node("*a*a*a*a*a*a*b", &long));
    assert!(!node("**a**a**a**a**a**a**b", &long));
}

#[test]
fn requests_are_bounded_in_filters_entries_and_pattern_size() {
    let many = vec![FlowFilter::default(); MAX_FILTERS + 1];
    assert!(Filters::new(many, vec![]).unwrap_err().to_string().contains("at most 64"));
    let entries = FlowFilter { source_ip: vec!["10.0.0.1".into(); MAX_ENTRIES + 1], ..FlowFilter::default() };
    assert!(Filters::new(vec![entries], vec![]).unwrap_err().to_string().contains("1025 entries"));
    let long = FlowFilter { node_name: vec!["a".repeat(MAX_PATTERN_BYTES + 1)], ..FlowFilter::default() };
    assert!(Filters::new(vec![], vec![long]).unwrap_err().to_string().contains("blacklist[0].node_name"));
    let long = FlowFilter { source_label: vec!["a".repeat(MAX_PATTERN_BYTES + 1)], ..FlowFilter::default() };
    assert!(Filters::new(vec![long], vec![]).unwrap_err().to_string().contains("whitelist[0].source_label"));
}

#[test]
fn reply_and_identity_filters_as_cilium() {
    let allows = |flow: &Flow, filter: FlowFilter| Filters::new(vec![filter], Vec::new()).unwrap().allow(flow);
    let not_reply = || FlowFilter { reply: vec![false], ..FlowFilter::default() };
    let mut unknown = flow();
    assert!(!allows(&unknown, not_reply()), "an unknown side is not known to be a request");
    unknown.verdict = Verdict::Dropped as i32;
    assert!(allows(&unknown, not_reply()), "a drop that says nothing is no reply");
    let mut answer = flow();
    answer.is_reply = Some(true);
    assert!(!allows(&answer, not_reply()));
    assert!(allows(&answer, FlowFilter { reply: vec![true], ..FlowFilter::default() }));

    let mut identified = flow();
    if let Some(source) = identified.source.as_mut() {
        source.identity = 4242;
    }
    assert!(allows(&identified, FlowFilter { source_identity: vec![4242], ..FlowFilter::default() }));
    assert!(!allows(&identified, FlowFilter { source_identity: vec![7], ..FlowFilter::default() }));
    assert!(!allows(&identified, FlowFilter { destination_identity: vec![4242], ..FlowFilter::default() }));
}
