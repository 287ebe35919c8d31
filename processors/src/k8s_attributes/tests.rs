use std::collections::BTreeMap;

use flowtel_core::{attributes::find_text, config::Validate as _};
use k8s_openapi::{
    api::{
        apps::v1::ReplicaSet,
        core::v1::{Namespace, Node, NodeAddress, NodeStatus, Service, ServiceSpec},
    },
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, KeyValue, any_value::Value},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    resource::v1::Resource,
};

use super::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn meta(namespace: Option<&str>, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: namespace.map(Into::into),
        uid: Some(format!("uid-{name}")),
        ..Default::default()
    }
}

fn owned_by(kind: &str, name: &str) -> Option<Vec<OwnerReference>> {
    Some(vec![OwnerReference {
        kind: kind.into(),
        name: name.into(),
        controller: Some(true),
        api_version: "apps/v1".into(),
        uid: format!("uid-{name}"),
        ..Default::default()
    }])
}

fn owner(kind: &str, name: &str) -> Owner {
    Owner { kind: kind.into(), name: name.into(), uid: format!("uid-{name}") }
}

fn pod(name: &str, ip: &str, host_network: bool, owner: Option<Owner>) -> PodInfo {
    PodInfo {
        name: name.into(),
        namespace: "shop".into(),
        uid: format!("uid-{name}"),
        node: Some("node-1".into()),
        hostname: name.into(),
        start_time: Some("2026-11-01T08:00:00Z".into()),
        containers: vec![ContainerInfo {
            name: "main".into(),
            image: format!("registry.local:5000/shop/{name}:1.4"),
            id: Some(format!("c-{name}")),
            ports: vec![8080],
        }],
        ips: vec![ip.parse().expect("ip")],
        host_network,
        finished: false,
        owner,
        labels: labels(&[("app", name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-')), ("tier", "web")]),
        annotations: labels(&[("team", "payments")]),
    }
}

/// A namespace `shop` on `node-1` (10.0.0.1): pod `web-1` (10.1.0.5) of
/// Deployment `web` through ReplicaSet `web-5d9`, service `web` selecting
/// it, a host-network pod `agent` and a service `db` with a cluster IP.
fn cluster() -> Metadata {
    let mut m = Metadata::default();
    m.apply_namespace(&Namespace {
        metadata: ObjectMeta { labels: Some(labels(&[("env", "prod")])), ..meta(None, "shop") },
        ..Default::default()
    });
    m.apply_node(&Node {
        metadata: ObjectMeta { labels: Some(labels(&[("zone", "a")])), ..meta(None, "node-1") },
        status: Some(NodeStatus {
            addresses: Some(vec![
                NodeAddress { type_: "InternalIP".into(), address: "10.0.0.1".into() },
                NodeAddress { type_: "Hostname".into(), address: "node-1".into() },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    });
    m.apply_replica_set(&ReplicaSet {
        metadata: ObjectMeta { owner_references: owned_by("Deployment", "web"), ..meta(Some("shop"), "web-5d9") },
        ..Default::default()
    });
    m.apply_pod(pod("web-1", "10.1.0.5", false, Some(owner("ReplicaSet", "web-5d9"))));
    m.apply_pod(pod("agent", "10.0.0.1", true, Some(owner("DaemonSet", "agent"))));
    for (name, selector, ip) in [("web", "web", "10.96.0.10"), ("db", "db", "10.96.0.20")] {
        m.apply_service(&Service {
            metadata: meta(Some("shop"), name),
            spec: Some(ServiceSpec {
                selector: Some(labels(&[("app", selector)])),
                cluster_ip: Some(ip.into()),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    m
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(Value::StringValue(value.into())) }),
        ..Default::default()
    }
}

fn flow(src: &str, dst: &str) -> Payload {
    let record = LogRecord {
        event_name: "network.flow".into(),
        attributes: vec![kv("source.address", src), kv("destination.address", dst)],
        ..Default::default()
    };
    Payload::Logs(vec![ResourceLogs {
        scope_logs: vec![ScopeLogs { log_records: vec![record], ..Default::default() }],
        ..Default::default()
    }])
}

/// [`flow`] with more attributes on its record.
fn flow_with(src: &str, dst: &str, more: impl IntoIterator<Item = KeyValue>) -> Payload {
    let mut payload = flow(src, dst);
    if let Payload::Logs(resources) = &mut payload {
        resources[0].scope_logs[0].log_records[0].attributes.extend(more);
    }
    payload
}

fn record_attributes(payload: &Payload) -> Vec<KeyValue> {
    match payload {
        Payload::Logs(r) => r[0].scope_logs[0].log_records[0].attributes.clone(),
        _ => unreachable!(),
    }
}

fn resource_attributes(payload: &Payload) -> Vec<KeyValue> {
    match payload {
        Payload::Logs(r) => r[0].resource.clone().unwrap_or_default().attributes,
        _ => unreachable!(),
    }
}

fn enriched(m: &Metadata, config: &K8sAttributesConfig, mut payload: Payload, client: Client) -> Payload {
    Enricher::new(config).enrich(m, &mut payload, &client);
    payload
}

#[test]
fn both_ends_of_a_flow_are_described() {
    let m = cluster();
    let out = enriched(&m, &K8sAttributesConfig::default(), flow("10.1.0.5", "10.0.0.1"), Client::default());
    let a = record_attributes(&out);
    let get = |k: &str| find_text(&a, k).map(|v| v.into_owned());
    assert_eq!(get("k8s.src.pod.name").as_deref(), Some("web-1"));
    assert_eq!(get("k8s.src.pod.uid").as_deref(), Some("uid-web-1"));
    assert_eq!(get("k8s.src.namespace.name").as_deref(), Some("shop"));
    assert_eq!(get("k8s.src.node.name").as_deref(), Some("node-1"));
    assert_eq!(get("k8s.src.owner.kind").as_deref(), Some("Deployment"), "a ReplicaSet is followed to its Deployment");
    assert_eq!(get("k8s.src.owner.name").as_deref(), Some("web"));
    assert_eq!(get("k8s.src.deployment.name").as_deref(), Some("web"));
    assert_eq!(get("k8s.src.service.name").as_deref(), Some("web"));
    // The host-network pod's address is its node's.
    assert_eq!(get("k8s.dst.node.name").as_deref(), Some("node-1"));
    assert_eq!(get("k8s.dst.pod.name"), None);
    assert_eq!(get("k8s.dst.namespace.name"), None);
}

#[test]
fn a_local_processs_container_names_its_host_network_pod() {
    let m = cluster();
    // What host_attributes adds for the local end: the agent's container.
    let payload = flow_with("10.1.0.5", "10.0.0.1", [kv("destination.container.id", "c-agent")]);
    let out = enriched(&m, &K8sAttributesConfig::default(), payload, Client::default());
    let a = record_attributes(&out);
    assert_eq!(find_text(&a, "k8s.dst.pod.name").as_deref(), Some("agent"), "not only its node");
    assert_eq!(find_text(&a, "k8s.dst.owner.kind").as_deref(), Some("DaemonSet"));
    assert_eq!(find_text(&a, "k8s.dst.node.name").as_deref(), Some("node-1"));
    assert_eq!(find_text(&a, "k8s.src.pod.name").as_deref(), Some("web-1"), "the other end by its address");

    // A client's connection record: its `container.id` is the source's.
    let connection =
        flow_with("10.0.0.1", "10.1.0.5", [kv("network.tcp.side", "client"), kv("container.id", "c-agent")]);
    let out = enriched(&m, &K8sAttributesConfig::default(), connection, Client::default());
    assert_eq!(find_text(&record_attributes(&out), "k8s.src.pod.name").as_deref(), Some("agent"));

    let unknown = flow_with("10.1.0.5", "10.0.0.1", [kv("destination.container.id", "not-a-pods")]);
    let out = enriched(&m, &K8sAttributesConfig::default(), unknown, Client::default());
    let a = record_attributes(&out);
    assert_eq!(find_text(&a, "k8s.dst.pod.name"), None, "an unknown container: the address decides");
    assert_eq!(find_text(&a, "k8s.dst.node.name").as_deref(), Some("node-1"));
}

#[test]
fn cluster_ips_name_their_service_and_unknown_addresses_add_nothing() {
    let m = cluster();
    let out = enriched(&m, &K8sAttributesConfig::default(), flow("192.0.2.7", "10.96.0.20"), Client::default());
    let a = record_attributes(&out);
    assert_eq!(find_text(&a, "k8s.dst.service.name").as_deref(), Some("db"));
    assert_eq!(find_text(&a, "k8s.dst.namespace.name").as_deref(), Some("shop"));
    assert_eq!(a.len(), 4, "nothing for the unknown source: {a:?}");
}

#[test]
fn attributes_already_set_are_kept() {
    let m = cluster();
    let payload = flow_with("10.1.0.5", "10.0.0.1", [kv("k8s.src.pod.name", "from-the-agent")]);
    let out = enriched(&m, &K8sAttributesConfig::default(), payload, Client::default());
    let a = record_attributes(&out);
    assert_eq!(a.iter().filter(|kv| kv.key == "k8s.src.pod.name").count(), 1);
    assert_eq!(find_text(&a, "k8s.src.pod.name").as_deref(), Some("from-the-agent"));
}

#[test]
fn a_replaced_pod_takes_over_and_a_deleted_one_is_forgotten() {
    let mut m = cluster();
    let web1 = ("shop".to_owned(), "web-1".to_owned());
    m.remove_pod(&web1);
    assert_eq!(m.resolve("10.1.0.5".parse().expect("ip")), None);
    m.apply_pod(pod("web-2", "10.1.0.9", false, Some(owner("ReplicaSet", "web-5d9"))));
    let Some(Endpoint::Pod(found)) = m.resolve("10.1.0.9".parse().expect("ip")) else { panic!("web-2 by its IP") };
    assert_eq!(found.name, "web-2");
    // An IP reused by a new pod while the old one is finishing belongs to the new one.
    m.apply_pod(pod("job-1", "10.1.0.9", false, Some(owner("Job", "batch"))));
    let Some(Endpoint::Pod(found)) = m.resolve("10.1.0.9".parse().expect("ip")) else { panic!("job-1") };
    assert_eq!(found.name, "job-1");
    m.remove_pod(&("shop".into(), "job-1".into()));
    let Some(Endpoint::Pod(found)) = m.resolve("10.1.0.9".parse().expect("ip")) else { panic!("web-2 again") };
    assert_eq!(found.name, "web-2", "the remaining holder of the address owns it again");
}

#[test]
fn a_cron_jobs_pod_names_its_job_and_cron_job() {
    let mut m = cluster();
    m.apply_pod(pod("report-29391840-x7k", "10.1.0.20", false, Some(owner("Job", "report-29391840"))));
    m.apply_pod(pod("once-abc", "10.1.0.21", false, Some(owner("Job", "once-abc"))));
    let mut config = K8sAttributesConfig::default();
    config.extract.metadata = vec!["k8s.job.name".into(), "k8s.cronjob.name".into()];
    let out = enriched(&m, &config, flow("10.1.0.20", "10.1.0.21"), Client::default());
    let a = record_attributes(&out);
    assert_eq!(find_text(&a, "k8s.src.job.name").as_deref(), Some("report-29391840"));
    assert_eq!(find_text(&a, "k8s.src.cronjob.name").as_deref(), Some("report"));
    assert_eq!(find_text(&a, "k8s.dst.job.name").as_deref(), Some("once-abc"));
    assert_eq!(find_text(&a, "k8s.dst.cronjob.name"), None, "a Job not named by a CronJob has none");
}

#[test]
fn uids_times_and_containers_are_extracted_as_the_collector_names_them() {
    let mut m = cluster();
    m.apply_namespace(&Namespace { metadata: meta(None, "kube-system"), ..Default::default() });
    let mut two = pod("multi-1", "10.1.0.30", false, Some(owner("StatefulSet", "multi")));
    two.containers.push(ContainerInfo {
        name: "sidecar".into(),
        image: "proxy@sha256:0123".into(),
        id: Some("c-side".into()),
        ports: vec![15001],
    });
    m.apply_pod(two);
    let mut config = K8sAttributesConfig::default();
    config.extract.metadata = super::enrich::metadata_names().map(str::to_owned).collect();

    let flows = enriched(&m, &config, flow("10.1.0.5", "10.1.0.30"), Client::default());
    let a = record_attributes(&flows);
    let get = |k: &str| find_text(&a, k).map(|v| v.into_owned());
    for (key, value) in [
        ("k8s.src.deployment.uid", "uid-web"),
        ("k8s.src.replicaset.uid", "uid-web-5d9"),
        ("k8s.src.node.uid", "uid-node-1"),
        ("k8s.src.cluster.uid", "uid-kube-system"),
        ("k8s.src.pod.hostname", "web-1"),
        ("k8s.src.pod.start_time", "2026-11-01T08:00:00Z"),
        ("k8s.src.container.name", "main"),
        ("k8s.src.container.id", "c-web-1"),
        ("k8s.src.container.image.name", "registry.local:5000/shop/web-1"),
        ("k8s.src.container.image.tag", "1.4"),
        ("k8s.dst.statefulset.name", "multi"),
        ("k8s.dst.statefulset.uid", "uid-multi"),
    ] {
        assert_eq!(get(key).as_deref(), Some(value), "{key}");
    }
    assert_eq!(get("k8s.dst.container.name"), None, "no port: a flow does not say which of two containers");

    // A port one container declares names it.
    for (port, container) in [("8080", Some("main")), ("15001", Some("sidecar")), ("9999", None)] {
        let to_port = flow_with("10.1.0.5", "10.1.0.30", [kv("destination.port", port)]);
        let a = record_attributes(&enriched(&m, &config, to_port, Client::default()));
        assert_eq!(find_text(&a, "k8s.dst.container.name").as_deref(), container, "port {port}");
        assert_eq!(find_text(&a, "k8s.dst.pod.name").as_deref(), Some("multi-1"));
    }
    let from_port = flow_with("10.1.0.30", "10.1.0.5", [kv("source.port", "15001")]);
    let a = record_attributes(&enriched(&m, &config, from_port, Client::default()));
    assert_eq!(find_text(&a, "k8s.src.container.id").as_deref(), Some("c-side"), "the reply, from the sidecar");

    // An application names its container; the other attributes follow.
    let resource = vec![kv("k8s.pod.uid", "uid-multi-1"), kv("k8s.container.name", "sidecar")];
    let found = resource_attributes(&enriched(&m, &config, app_logs(resource), Client::default()));
    assert_eq!(find_text(&found, "container.id").as_deref(), Some("c-side"));
    assert_eq!(find_text(&found, "container.image.name").as_deref(), Some("proxy"));
    assert_eq!(find_text(&found, "container.image.tag"), None, "a digest, not a tag");
    let by_id = vec![kv("container.id", "c-multi-1")];
    let found = resource_attributes(&enriched(&m, &config, app_logs(by_id), Client::default()));
    assert_eq!(find_text(&found, "k8s.container.name").as_deref(), Some("main"));
    assert_eq!(find_text(&found, "k8s.pod.name").as_deref(), Some("multi-1"));
}

#[test]
fn an_applications_service_identity_follows_the_semantic_conventions() {
    let mut m = cluster();
    let mut annotated = pod("pay-1", "10.1.0.40", false, Some(owner("StatefulSet", "pay")));
    annotated.annotations.insert("resource.opentelemetry.io/service.name".into(), "payments".into());
    annotated.annotations.insert("resource.opentelemetry.io/deployment.environment.name".into(), "prod".into());
    annotated.labels.insert("app.kubernetes.io/version".into(), "3.1".into());
    m.apply_pod(annotated);
    let mut config = K8sAttributesConfig::default();
    config.extract.metadata =
        ["k8s.pod.name", "service.name", "service.namespace", "service.version", "service.instance.id"]
            .map(str::to_owned)
            .to_vec();
    config.extract.otel_annotations = true;
    let resource_of = |pod_ip: &str, own: Vec<KeyValue>| {
        let mut attributes = own;
        attributes.push(kv("k8s.pod.ip", pod_ip));
        resource_attributes(&enriched(&m, &config, app_logs(attributes), Client::default()))
    };
    let get = |a: &[KeyValue], k: &str| find_text(a, k).map(|v| v.into_owned());

    // web-1: no annotations: its Deployment's name, its namespace, its image's tag.
    let web = resource_of("10.1.0.5", vec![kv("service.name", "unknown_service:python")]);
    assert_eq!(get(&web, "service.name").as_deref(), Some("web"), "an SDK's unknown_service is replaced");
    assert_eq!(get(&web, "service.namespace").as_deref(), Some("shop"));
    assert_eq!(get(&web, "service.version").as_deref(), Some("1.4"));
    assert_eq!(get(&web, "service.instance.id").as_deref(), Some("shop.web-1.main"));

    let pay = resource_of("10.1.0.40", vec![kv("service.version", "3.2-dev")]);
    assert_eq!(get(&pay, "service.name").as_deref(), Some("payments"), "the annotation first");
    assert_eq!(get(&pay, "service.version").as_deref(), Some("3.2-dev"), "what the application says stays");
    assert_eq!(get(&pay, "deployment.environment.name").as_deref(), Some("prod"), "otel_annotations");
    assert_eq!(pay.iter().filter(|kv| kv.key == "service.name").count(), 1);

    // A flow's ends get none of them: `k8s.src.service.name` is the Kubernetes Service.
    let flows = enriched(&m, &config, flow("10.1.0.40", "10.1.0.5"), Client::default());
    let ends = record_attributes(&flows);
    assert!(ends.iter().all(|kv| !kv.key.contains("service") && !kv.key.contains("environment")), "{ends:?}");
}

#[test]
fn excluded_pods_are_not_described() {
    let mut m = cluster();
    m.exclude_pods(K8sAttributesConfig::default().exclude.pod_patterns());
    m.apply_pod(pod("jaeger-agent", "10.1.0.50", false, None));
    m.apply_pod(pod("jaeger-agent-x", "10.1.0.51", false, None));
    assert_eq!(m.resolve("10.1.0.50".parse().expect("ip")), None, "the default list, whole names");
    assert!(m.resolve("10.1.0.51".parse().expect("ip")).is_some());
    m.exclude_pods(ExcludeConfig { pods: vec![ExcludedPod { name: "web-.*".into() }] }.pod_patterns());
    m.apply_pod(pod("web-1", "10.1.0.5", false, None));
    assert_eq!(m.resolve("10.1.0.5".parse().expect("ip")), None, "an update of a now excluded pod forgets it");
}

#[test]
fn image_references_split_into_name_and_tag() {
    use super::enrich::image_name_and_tag as split;
    assert_eq!(split("nginx"), ("nginx", Some("latest"), false));
    assert_eq!(split("nginx:1.27"), ("nginx", Some("1.27"), true));
    assert_eq!(split("registry:5000/shop/web"), ("registry:5000/shop/web", Some("latest"), false));
    assert_eq!(split("registry:5000/shop/web:2@sha256:ab"), ("registry:5000/shop/web", Some("2"), true));
    assert_eq!(split("shop/web@sha256:ab"), ("shop/web", None, false));
}

#[test]
fn a_relist_forgets_what_it_does_not_show() {
    let mut m = cluster();
    let listed = [("shop".to_owned(), "agent".to_owned())].into_iter().collect();
    m.retain(Kind::Pod, &listed);
    assert_eq!(m.count(Kind::Pod), 1);
    assert_eq!(m.resolve("10.1.0.5".parse().expect("ip")), None);
    assert_eq!(m.resolve("10.0.0.1".parse().expect("ip")), Some(Endpoint::Node("node-1")));
}

#[test]
fn labels_and_annotations_are_extracted_by_key_and_pattern() {
    let m = cluster();
    let config = K8sAttributesConfig {
        extract: ExtractConfig {
            metadata: vec!["k8s.pod.name".into()],
            labels: vec![
                FieldExtract {
                    tag_name: Some("app".into()),
                    key: Some("app".into()),
                    key_regex: None,
                    from: FieldSource::Pod,
                },
                FieldExtract { tag_name: None, key: None, key_regex: Some("ti.*".into()), from: FieldSource::Pod },
                FieldExtract { tag_name: None, key: Some("env".into()), key_regex: None, from: FieldSource::Namespace },
                FieldExtract { tag_name: None, key: Some("zone".into()), key_regex: None, from: FieldSource::Node },
            ],
            annotations: vec![
                FieldExtract { tag_name: None, key: Some("team".into()), key_regex: None, from: FieldSource::Pod },
                FieldExtract {
                    tag_name: Some("owner.$1".into()),
                    key: None,
                    key_regex: Some("(te.*)".into()),
                    from: FieldSource::Pod,
                },
            ],
            otel_annotations: false,
        },
        ..Default::default()
    };
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    let out = enriched(&m, &config, flow("10.1.0.5", "10.0.0.1"), Client::default());
    let a = record_attributes(&out);
    let get = |k: &str| find_text(&a, k).map(|v| v.into_owned());
    assert_eq!(get("k8s.src.app").as_deref(), Some("web"), "a custom name gets the side prefix");
    assert_eq!(get("k8s.src.pod.labels.tier").as_deref(), Some("web"));
    assert_eq!(get("k8s.src.namespace.labels.env").as_deref(), Some("prod"));
    assert_eq!(get("k8s.src.node.labels.zone").as_deref(), Some("a"));
    assert_eq!(get("k8s.src.pod.annotations.team").as_deref(), Some("payments"));
    assert_eq!(get("k8s.src.owner.team").as_deref(), Some("payments"), "a key_regex group names the attribute");
    assert_eq!(get("k8s.dst.node.labels.zone").as_deref(), Some("a"), "a node end gets its node's labels");
    assert_eq!(get("k8s.src.namespace.name"), None, "only what `metadata` lists");
}

fn app_logs(resource: Vec<KeyValue>) -> Payload {
    Payload::Logs(vec![ResourceLogs {
        resource: Some(Resource { attributes: resource, ..Default::default() }),
        scope_logs: vec![ScopeLogs { log_records: vec![LogRecord::default()], ..Default::default() }],
        ..Default::default()
    }])
}

#[test]
fn otlp_resources_find_their_pod_by_attribute_uid_or_connection() {
    let m = cluster();
    let config = K8sAttributesConfig::default();
    let by_ip = enriched(&m, &config, app_logs(vec![kv("k8s.pod.ip", "10.1.0.5")]), Client::default());
    assert_eq!(find_text(&resource_attributes(&by_ip), "k8s.pod.name").as_deref(), Some("web-1"));
    assert_eq!(find_text(&resource_attributes(&by_ip), "k8s.deployment.name").as_deref(), Some("web"));

    let by_uid = enriched(&m, &config, app_logs(vec![kv("k8s.pod.uid", "uid-web-1")]), Client::default());
    assert_eq!(find_text(&resource_attributes(&by_uid), "k8s.namespace.name").as_deref(), Some("shop"));

    let by_container = enriched(&m, &config, app_logs(vec![kv("container.id", "c-web-1")]), Client::default());
    assert_eq!(find_text(&resource_attributes(&by_container), "k8s.pod.name").as_deref(), Some("web-1"));

    let client = Client { address: Some("10.1.0.5".parse().expect("ip")) };
    let by_connection = enriched(&m, &config, app_logs(vec![kv("service.name", "web")]), client);
    let resource = resource_attributes(&by_connection);
    assert_eq!(find_text(&resource, "k8s.pod.name").as_deref(), Some("web-1"));
    assert_eq!(find_text(&resource, "service.name").as_deref(), Some("web"), "the app's own attributes stay");

    let unknown = Client { address: Some("127.0.0.1".parse().expect("ip")) };
    let none = enriched(&m, &config, app_logs(vec![]), unknown);
    assert!(resource_attributes(&none).is_empty());
}

#[test]
fn a_rule_with_name_and_namespace_needs_both_to_match() {
    let m = cluster();
    let attribute =
        |name: &str| AssociationSource { from: AssociationFrom::ResourceAttribute, name: Some(name.into()) };
    let config = K8sAttributesConfig {
        pod_association: vec![AssociationRule {
            sources: vec![attribute("k8s.pod.name"), attribute("k8s.namespace.name")],
        }],
        ..Default::default()
    };
    let found = enriched(
        &m,
        &config,
        app_logs(vec![kv("k8s.pod.name", "web-1"), kv("k8s.namespace.name", "shop")]),
        Client::default(),
    );
    assert_eq!(find_text(&resource_attributes(&found), "k8s.pod.uid").as_deref(), Some("uid-web-1"));
    let half = enriched(&m, &config, app_logs(vec![kv("k8s.pod.name", "web-1")]), Client::default());
    assert_eq!(find_text(&resource_attributes(&half), "k8s.pod.uid"), None);
}

#[test]
fn config_errors_name_the_field() {
    let config = K8sAttributesConfig {
        extract: ExtractConfig {
            metadata: vec!["k8s.pod.colour".into()],
            labels: vec![FieldExtract {
                tag_name: None,
                key: None,
                key_regex: Some("(".into()),
                from: FieldSource::Pod,
            }],
            annotations: vec![FieldExtract { tag_name: None, key: None, key_regex: None, from: FieldSource::Pod }],
            otel_annotations: false,
        },
        exclude: ExcludeConfig { pods: vec![ExcludedPod { name: "jaeger-[".into() }] },
        pod_association: vec![AssociationRule {
            sources: vec![AssociationSource { from: AssociationFrom::ResourceAttribute, name: None }],
        }],
        filter: FilterConfig { node_from_env_var: Some("FLOWTEL_TEST_SURELY_UNSET".into()), ..Default::default() },
        ..Default::default()
    };
    let paths: Vec<String> = config.validate().into_iter().map(|(path, _)| path).collect();
    assert_eq!(
        paths,
        [
            "extract::metadata[0]",
            "extract::labels[0]::key_regex",
            "extract::annotations[0]",
            "exclude::pods[0]::name",
            "pod_association[0]::sources[0]::name",
            "filter::node_from_env_var",
        ]
    );
}

#[test]
fn passthrough_tags_resources_with_the_connection_address() {
    let config = K8sAttributesConfig { passthrough: true, ..Default::default() };
    let mut processor = K8sAttributesProcessor::with_view(config, Arc::new(ClusterView::default()));
    let mut out = Vec::new();
    let client = Client { address: Some("10.1.0.5".parse().expect("ip")) };
    processor.process_from(app_logs(vec![]), &client, &mut out);
    assert_eq!(find_text(&resource_attributes(&out[0]), "k8s.pod.ip").as_deref(), Some("10.1.0.5"));
}

#[tokio::test(start_paused = true)]
async fn data_waits_for_the_first_listing_at_most_the_timeout() {
    let config = K8sAttributesConfig { wait_for_metadata_timeout: Duration::from_secs(2), ..Default::default() };
    let mut processor = K8sAttributesProcessor::with_view(config, Arc::new(ClusterView::default()));
    processor.wait_until = Some(Instant::now() + Duration::from_secs(2));
    let mut out = Vec::new();
    processor.process(flow("10.1.0.5", "10.0.0.1"), &mut out);
    assert!(out.is_empty(), "held while nothing is listed");
    let deadline = processor.deadline().expect("a deadline while holding");
    assert!(deadline <= Instant::now() + Duration::from_secs(2));
    tokio::time::advance(Duration::from_secs(2)).await;
    processor.on_deadline(Instant::now(), &mut out);
    assert_eq!(out.len(), 1, "released, as it is, at the timeout");
    processor.process(flow("10.1.0.5", "10.0.0.1"), &mut out);
    assert_eq!(out.len(), 2, "after the timeout nothing waits");
}

/// A small API server speaking the list and watch JSON of `/api/v1/pods`:
/// the first watch adds a pod and then drops the connection, the second is
/// answered with `410 Gone` (the history it asks for is compacted), and the
/// relist that follows shows one pod deleted and one added meanwhile. Other
/// kinds list empty and watch quietly. (The real server does not drop
/// watches or expire versions on cue; these are what the watcher must
/// survive.)
mod lost_watch {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use flowtel_core::self_telemetry::MetricsRegistry;
    use serde_json::{Value, json};
    use tokio::{
        io::{AsyncReadExt as _, AsyncWriteExt as _},
        net::{TcpListener, TcpStream},
    };

    use super::*;

    fn pod_json(name: &str, ip: &str, version: &str) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}"), "resourceVersion": version},
            "spec": {"nodeName": "node-1", "containers": [{"name": "main", "image": "app:1"}]},
            "status": {"phase": "Running", "podIP": ip},
        })
    }

    fn list(items: Vec<Value>, version: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": version}, "items": items})
    }

    #[derive(Default)]
    struct Calls {
        pod_lists: AtomicUsize,
        pod_watches: AtomicUsize,
    }

    async fn answer(mut stream: TcpStream, calls: Arc<Calls>) {
        let mut request = Vec::new();
        let mut buffer = [0u8; 4096];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buffer[..n]),
            }
        }
        let head = String::from_utf8_lossy(&request).into_owned();
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
        let watching = path.contains("watch=true") || path.contains("watch=1");
        let is_pods = path.starts_with("/api/v1/pods");
        let body = |value: Value| value.to_string() + "\n";
        let reply = |body: String| {
            format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{body}")
        };
        if !watching {
            let items = if is_pods {
                match calls.pod_lists.fetch_add(1, Ordering::SeqCst) {
                    0 => list(vec![pod_json("a", "10.1.0.1", "10")], "10"),
                    _ => list(vec![pod_json("b", "10.1.0.2", "11"), pod_json("c", "10.1.0.3", "20")], "20"),
                }
            } else {
                list(Vec::new(), "1")
            };
            let _ = stream.write_all(reply(body(items)).as_bytes()).await;
            return;
        }
        let event = match (is_pods, if is_pods { calls.pod_watches.fetch_add(1, Ordering::SeqCst) } else { 99 }) {
            (true, 0) => Some(json!({"type": "ADDED", "object": pod_json("b", "10.1.0.2", "11")})),
            (true, 1) => Some(json!({"type": "ERROR", "object": {
                "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                "message": "too old resource version: 11 (15)", "reason": "Expired", "code": 410}})),
            _ => None,
        };
        let drops = event.is_some();
        let _ = stream.write_all(reply(event.map(body).unwrap_or_default()).as_bytes()).await;
        if drops {
            // The connection drops after its one event.
            return;
        }
        // A quiet watch stays open until the test ends.
        tokio::time::sleep(Duration::from_secs(600)).await;
    }

    #[tokio::test]
    async fn a_dropped_watch_and_a_410_gone_end_in_a_fresh_listing() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let calls = Arc::new(Calls::default());
        let server_calls = calls.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer(stream, server_calls.clone()));
            }
        });
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster: {{server: \"http://127.0.0.1:{port}\"}}\n\
                 users:\n- name: t\n  user: {{}}\ncontexts:\n- name: t\n  context: {{cluster: t, user: t}}\ncurrent-context: t\n"
            ),
        )
        .expect("kubeconfig");
        let config =
            K8sAttributesConfig { auth_type: AuthType::KubeConfig, kubeconfig: Some(kubeconfig), ..Default::default() };
        let registry = MetricsRegistry::new();
        let view = Arc::new(ClusterView::default());
        let client = flowtel_core::kube_client::client(config.auth_type, config.kubeconfig.as_deref(), None)
            .await
            .expect("client");
        let _watches = watch::start(client, &config, view.clone(), &registry);

        let pod_at = |ip: &str| {
            view.read(|m| match m.resolve(ip.parse().expect("ip")) {
                Some(Endpoint::Pod(pod)) => Some(pod.name.clone()),
                _ => None,
            })
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while pod_at("10.1.0.3").is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "no relist after the 410 ({} lists)",
                calls.pod_lists.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(pod_at("10.1.0.1"), None, "a pod the relist lacks is gone");
        assert_eq!(pod_at("10.1.0.2").as_deref(), Some("b"), "the pod the dropped watch added stays");
        assert_eq!(pod_at("10.1.0.3").as_deref(), Some("c"));
        assert!(view.synced());
        let pods = [("resource", "pods")];
        let value = |name: &str| {
            registry
                .family_samples(name)
                .iter()
                .filter(|s| s.labels == pods.map(|(k, v)| (k.to_owned(), v.to_owned())).to_vec())
                .map(|s| s.value)
                .sum::<f64>()
        };
        assert_eq!(value("flowtel_k8s_relists_total"), 2.0);
        assert!(value("flowtel_k8s_watch_errors_total") >= 1.0, "the 410 is counted");
        assert_eq!(value("flowtel_k8s_objects"), 2.0);
        assert!(calls.pod_watches.load(Ordering::SeqCst) >= 3, "watched again after the drop and after the relist");
    }
}

#[test]
fn a_change_to_the_view_reaches_the_next_record() {
    let view = Arc::new(ClusterView::default());
    view.update(|m| *m = cluster());
    let mut processor = K8sAttributesProcessor::with_view(K8sAttributesConfig::default(), view.clone());
    let mut out = Vec::new();
    processor.process(flow("10.1.0.5", "10.0.0.1"), &mut out);
    assert_eq!(find_text(&record_attributes(&out[0]), "k8s.src.pod.name").as_deref(), Some("web-1"));
    view.update(|m| {
        m.remove_pod(&("shop".into(), "web-1".into()));
        m.apply_pod(pod("web-2", "10.1.0.5", false, None));
    });
    processor.process(flow("10.1.0.5", "10.0.0.1"), &mut out);
    assert_eq!(find_text(&record_attributes(&out[1]), "k8s.src.pod.name").as_deref(), Some("web-2"));
}

#[test]
fn only_changes_that_matter_move_the_generation() {
    let mut m = cluster();
    let before = m.generation();
    // A status update that changes none of the fields kept (the kubelet's
    // conditions, say) arrives as the same PodInfo.
    m.apply_pod(pod("web-1", "10.1.0.5", false, Some(owner("ReplicaSet", "web-5d9"))));
    m.remove_pod(&("shop".into(), "never-there".into()));
    assert_eq!(m.generation(), before);
    m.apply_pod(pod("web-1", "10.1.0.6", false, Some(owner("ReplicaSet", "web-5d9"))));
    assert!(m.generation() > before, "a new IP is a change");
}

#[test]
fn a_pod_object_gives_its_addresses_owner_and_containers() {
    let object: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web-1", "namespace": "shop", "uid": "u1",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d9", "uid": "u2", "controller": true}]},
        "spec": {"nodeName": "node-1", "hostname": "web", "containers": [{"name": "main", "image": "web:2",
            "ports": [{"containerPort": 8080}, {"containerPort": 8443, "protocol": "TCP"}]}, {"name": "proxy"}]},
        "status": {"phase": "Running", "podIP": "10.1.0.5", "podIPs": [{"ip": "10.1.0.5"}, {"ip": "fd00::5"}],
            "startTime": "2026-11-01T08:00:00Z",
            "containerStatuses": [{"name": "main", "containerID": "containerd://abc123", "image": "", "imageID": "",
                "ready": true, "restartCount": 0},
                {"name": "debugger", "containerID": "cri-o://def456", "image": "busybox", "imageID": "",
                "ready": true, "restartCount": 0}]},
    }))
    .expect("a pod");
    let info = PodInfo::from_object(&object);
    assert_eq!(info.ips, ["10.1.0.5".parse::<IpAddr>().expect("ip"), "fd00::5".parse().expect("ip")]);
    let container = |name: &str, image: &str, id: Option<&str>, ports: &[u16]| ContainerInfo {
        name: name.into(),
        image: image.into(),
        id: id.map(Into::into),
        ports: ports.to_vec(),
    };
    assert_eq!(
        info.containers,
        [
            container("main", "web:2", Some("abc123"), &[8080, 8443]),
            container("proxy", "", None, &[]),
            container("debugger", "busybox", Some("def456"), &[]),
        ]
    );
    assert_eq!((info.hostname.as_str(), info.start_time.as_deref()), ("web", Some("2026-11-01T08:00:00Z")));
    assert_eq!(info.owner, Some(Owner { kind: "ReplicaSet".into(), name: "web-5d9".into(), uid: "u2".into() }));
    assert!(!info.finished && !info.host_network);
    let done: k8s_openapi::api::core::v1::Pod = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "job-1"}, "status": {"phase": "Succeeded", "podIP": "10.1.0.7"}}),
    )
    .expect("a pod");
    let mut m = Metadata::default();
    m.apply_pod(PodInfo::from_object(&done));
    assert_eq!(m.resolve("10.1.0.7".parse().expect("ip")), None, "a finished pod gives its IP back");
}

#[test]
fn this_hosts_resources_get_its_node() {
    let Some(host) = flowtel_core::linux::host_name() else { return };
    let config = K8sAttributesConfig {
        filter: FilterConfig { node: Some("node-1".into()), ..Default::default() },
        ..Default::default()
    };
    let here = enriched(&cluster(), &config, app_logs(vec![kv("host.name", &host)]), Client::default());
    assert_eq!(find_text(&resource_attributes(&here), "k8s.node.name").as_deref(), Some("node-1"));
    let elsewhere = enriched(&cluster(), &config, app_logs(vec![kv("host.name", "other-box")]), Client::default());
    assert_eq!(find_text(&resource_attributes(&elsewhere), "k8s.node.name"), None);
}

#[test]
fn pod_filters_become_the_watchs_selectors() {
    let rule = |key: &str, value: Option<&str>, op| SelectorRule { key: key.into(), value: value.map(Into::into), op };
    let config = K8sAttributesConfig {
        filter: FilterConfig {
            node: Some("node-1".into()),
            labels: vec![
                rule("app", Some("web"), SelectorOp::Equals),
                rule("tier", Some("db"), SelectorOp::NotEquals),
                rule("team", None, SelectorOp::Exists),
                rule("canary", None, SelectorOp::DoesNotExist),
            ],
            fields: vec![rule("status.phase", Some("Running"), SelectorOp::Equals)],
            ..Default::default()
        },
        ..Default::default()
    };
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    assert_eq!(config.pod_label_selector(), "app=web,tier!=db,team,!canary");
    assert_eq!(config.pod_field_selector(), "spec.nodeName=node-1,status.phase=Running");
    let bad = K8sAttributesConfig {
        filter: FilterConfig {
            labels: vec![rule("app", None, SelectorOp::Equals)],
            fields: vec![rule("status.phase", None, SelectorOp::Exists)],
            ..Default::default()
        },
        ..Default::default()
    };
    let paths: Vec<String> = bad.validate().into_iter().map(|(path, _)| path).collect();
    assert_eq!(paths, ["filter::labels[0]::value", "filter::fields[0]::op"]);
}
