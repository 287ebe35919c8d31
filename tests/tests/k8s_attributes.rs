//! Privileged, real kernel, real Kubernetes API server: flows between a
//! pod's network namespace and the host are enriched on both ends from what
//! the API server says — a pod behind a Deployment, a host-network pod and a
//! node — and stay right when the pod is replaced by one with a new IP and
//! while the API server is away, with flowtel running throughout;
//! applications' OTLP finds its pod, directly or through a passthrough
//! agent and a gateway; a host-network pod's process, through its container
//! id, names the pod at its end. Needs root and `cargo xtask setup`.

#![allow(clippy::unwrap_used, missing_docs)]

use std::{collections::BTreeMap, path::Path, time::Duration};

use flowtel_tests::{
    Flowtel,
    cgroup::FakeContainer,
    free_port, hubble_call,
    kube::{KubeApiServer, TestPod, container_id_of, read_manifest},
    netns::{Netns, ip, is_root},
    otlp_json::{Item, file_requests, items},
    process::Child,
    python, script, wait_for,
};
use k8s_openapi::api::core::v1::Service;
use serde_json::json;

/// The host's end of the pod's veth, and the addresses on it.
const HOST_IF: &str = "k8sh0";
const NODE_1_IP: &str = "10.78.0.1";
const NODE_2_IP: &str = "10.78.0.4";
const WEB_1_IP: &str = "10.78.0.2";
const WEB_2_IP: &str = "10.78.0.3";

/// A pod's namespace joined to the host by `host_if` ↔ `eth0`, with
/// `pod_ip`; the host side holds `host_ips` (the first with a /24).
fn pod_netns(host_if: &str, host_ips: &[&str], pod_ip: &str) -> Netns {
    let pod = Netns::create("k8p");
    ip(&["link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", &pod.name]);
    for (index, address) in host_ips.iter().enumerate() {
        let prefix = if index == 0 { 24 } else { 32 };
        ip(&["addr", "add", &format!("{address}/{prefix}"), "dev", host_if]);
    }
    ip(&["link", "set", host_if, "up"]);
    pod.run(&["ip", "addr", "add", &format!("{pod_ip}/24"), "dev", "eth0"]);
    pod.run(&["ip", "link", "set", "eth0", "up"]);
    pod.run(&["ip", "link", "set", "lo", "up"]);
    pod
}

fn config(kubeconfig: &Path, file: &Path, otlp_grpc: u16, otlp_http: u16, hubble: u16) -> String {
    format!(
        r#"
receivers:
  ebpf: {{interfaces: [{HOST_IF}], flush_interval: 500ms, drops: {{enabled: false}}, tcp: {{enabled: false}}}}
  otlp:
    protocols:
      grpc: {{endpoint: "{NODE_1_IP}:{otlp_grpc}"}}
      http: {{endpoint: "{NODE_1_IP}:{otlp_http}"}}
processors:
  k8s_attributes:
    auth_type: kubeConfig
    kubeconfig: "{}"
    wait_for_metadata: true
    filter: {{node_from_env_var: FLOWTEL_TEST_NODE}}
    extract:
      metadata: [k8s.pod.name, k8s.pod.uid, k8s.namespace.name, k8s.node.name, k8s.owner.kind, k8s.owner.name,
        k8s.deployment.name, k8s.service.name, k8s.container.name, container.image.name, container.image.tag]
      labels: [{{key: app}}]
exporters:
  file: {{path: "{}"}}
  hubble: {{endpoint: "127.0.0.1:{hubble}"}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:${{METRICS_PORT}}"}}}}
  pipelines:
    logs: {{receivers: [ebpf, otlp], processors: [k8s_attributes], exporters: [file, hubble]}}
    traces: {{receivers: [otlp], processors: [k8s_attributes], exporters: [file]}}
"#,
        kubeconfig.display(),
        file.display()
    )
}

fn records(file: &Path, signal: &str) -> Vec<Item> {
    items(&file_requests(file), signal)
}

fn flow_records(file: &Path) -> Vec<Item> {
    records(file, "logs").into_iter().filter(|r| r.event_name == "network.flow").collect()
}

/// Sends 3 log records over gRPC and 2 spans over HTTP with the
/// OpenTelemetry Python SDK to `to`, from inside `netns` (else from the host), with
/// extra resource attributes (`OTEL_RESOURCE_ATTRIBUTES`), as run `run`.
fn sdk_send(netns: Option<&Netns>, to: &str, run: &str, resource: &str, otlp_grpc: u16, otlp_http: u16) {
    for (transport, port, what) in [("grpc", otlp_grpc, "--logs"), ("http", otlp_http, "--spans")] {
        let mut command = match netns {
            Some(netns) => {
                let mut command = std::process::Command::new("ip");
                command.args(["netns", "exec", &netns.name]).arg(python());
                command
            }
            None => std::process::Command::new(python()),
        };
        let output = command
            .arg(script("sdk_send.py"))
            .args(["--transport", transport, "--endpoint", &format!("http://{to}:{port}"), "--run", run])
            .args([what, if what == "--logs" { "3" } else { "2" }])
            .env("OTEL_RESOURCE_ATTRIBUTES", resource)
            .output()
            .unwrap();
        assert!(output.status.success(), "sdk_send.py: {}", String::from_utf8_lossy(&output.stderr));
    }
}

/// The 3 logs and 2 spans of [`sdk_send`]'s run `run`, once all arrived.
fn app_items(file: &Path, run: &str) -> Vec<Item> {
    wait_for(Duration::from_secs(20), "the app's logs and spans", || {
        let of_run = |signal: &str| -> Vec<Item> {
            records(file, signal)
                .into_iter()
                .filter(|r| r.resource.get("test.run").map(String::as_str) == Some(run))
                .collect()
        };
        let (logs, spans) = (of_run("logs"), of_run("traces"));
        (logs.len() == 3 && spans.len() == 2).then(|| logs.into_iter().chain(spans).collect())
    })
}

/// The `k8s.*` attributes of the first ICMP record from `src` to `dst`.
fn k8s_of(file: &Path, src: &str, dst: &str) -> Option<BTreeMap<String, String>> {
    flow_records(file)
        .into_iter()
        .find(|r| {
            r.attributes.get("source.address").map(String::as_str) == Some(src)
                && r.attributes.get("destination.address").map(String::as_str) == Some(dst)
        })
        .map(|r| r.attributes.into_iter().filter(|(k, _)| k.starts_with("k8s.")).collect())
}

/// A pod of Deployment `web` (through ReplicaSet `web-5d9`) on node-1.
fn web<'a>(name: &'a str, ip: &'a str) -> TestPod<'a> {
    TestPod {
        namespace: "shop",
        name,
        node: "node-1",
        ip,
        host_network: false,
        owner: Some(("ReplicaSet", "web-5d9")),
        labels: json!({"app": "web"}),
    }
}

/// The host-network pod of DaemonSet `agent` on node-1, whose address is the node's.
fn agent(node_ip: &str) -> TestPod<'_> {
    TestPod {
        namespace: "shop",
        name: "agent",
        node: "node-1",
        ip: node_ip,
        host_network: true,
        owner: Some(("DaemonSet", "agent")),
        labels: json!({"app": "agent"}),
    }
}

fn web_pod(side: &str, name: &str, uid: &str) -> Vec<(String, String)> {
    [
        ("pod.name", name),
        ("pod.uid", uid),
        ("namespace.name", "shop"),
        ("node.name", "node-1"),
        ("owner.kind", "Deployment"),
        ("owner.name", "web"),
        ("deployment.name", "web"),
        ("service.name", "web"),
        // The harness's pods run one container, `main`, of image `app:1`.
        ("container.name", "main"),
        ("container.image.name", "app"),
        ("container.image.tag", "1"),
        ("pod.labels.app", "web"),
    ]
    .iter()
    .map(|(k, v)| (format!("k8s.{side}.{k}"), (*v).to_owned()))
    .collect()
}

#[test]
fn flows_get_both_ends_from_the_api_server_and_follow_a_replaced_pod() {
    if !is_root() {
        eprintln!("skipped: needs root to load eBPF programs and create namespaces");
        return;
    }
    let mut api = KubeApiServer::start();
    api.create_namespace("shop", json!({"team": "payments"}));
    api.create_node("node-1", &[NODE_1_IP]);
    api.create_node("node-2", &[NODE_2_IP]);
    api.create_replica_set("shop", "web-5d9", "web", "web");
    api.create::<Service>(json!({
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"selector": {"app": "web"}, "clusterIP": "10.96.0.10", "ports": [{"port": 80}]},
    }));
    let web_1 = api.create_pod(&web("web-1", WEB_1_IP));
    api.create_pod(&agent(NODE_1_IP));

    let pod = pod_netns(HOST_IF, &[NODE_1_IP, NODE_2_IP], WEB_1_IP);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flows.jsonl");
    // Pods of other nodes are not watched by this node's agent.
    api.create_pod(&TestPod {
        namespace: "shop",
        name: "remote",
        node: "node-2",
        ip: "10.78.9.9",
        host_network: false,
        owner: None,
        labels: json!({"app": "remote"}),
    });
    let (otlp_grpc, otlp_http, hubble) = (free_port(), free_port(), free_port());
    let mut flowtel = Flowtel::start_with_env(
        &config(&api.kubeconfig, &file, otlp_grpc, otlp_http, hubble),
        &[("FLOWTEL_TEST_NODE", "node-1")],
    );
    assert_eq!(flowtel.metric("flowtel_k8s_objects", &[("resource", "pods")]), 2.0, "web-1 and agent, not remote");
    // What the processor knows, on the telemetry server's debug page.
    let (status, known) = flowtel_tests::http_get(flowtel.metrics_port, "/debug/k8s").unwrap();
    assert_eq!(status, 200, "{known}");
    let known: serde_json::Value = serde_json::from_str(&known).unwrap();
    let pods = known["metadata"]["pods"].as_array().unwrap();
    let shown = pods.iter().find(|pod| pod["name"] == "web-1").unwrap_or_else(|| panic!("{known}"));
    assert_eq!(
        (&shown["ips"], &shown["workload"], &shown["service"]),
        (&json!([WEB_1_IP]), &json!("Deployment/web"), &json!("web")),
        "{known}"
    );
    assert_eq!(known["metadata"]["objects"]["pods"], 2);
    let ping = |target: &str| {
        pod.run(&["ping", "-c", "2", "-i", "0.2", "-W", "1", target]);
    };

    // The pod pings the host-network pod's address (node-1's) and node-2's.
    ping(NODE_1_IP);
    ping(NODE_2_IP);
    let out = wait_for(Duration::from_secs(20), "web-1's flow to node-1", || k8s_of(&file, WEB_1_IP, NODE_1_IP));
    let mut expected: BTreeMap<String, String> = web_pod("src", "web-1", &web_1).into_iter().collect();
    expected.insert("k8s.dst.node.name".into(), "node-1".into());
    assert_eq!(out, expected, "a pod behind a Deployment → the host network of node-1");
    let back = wait_for(Duration::from_secs(10), "the reply", || k8s_of(&file, NODE_1_IP, WEB_1_IP));
    let mut expected: BTreeMap<String, String> = web_pod("dst", "web-1", &web_1).into_iter().collect();
    expected.insert("k8s.src.node.name".into(), "node-1".into());
    assert_eq!(back, expected, "the reply has the ends the other way round");
    let to_node_2 = wait_for(Duration::from_secs(10), "web-1's flow to node-2", || k8s_of(&file, WEB_1_IP, NODE_2_IP));
    assert_eq!(to_node_2.get("k8s.dst.node.name").map(String::as_str), Some("node-2"), "{to_node_2:?}");

    // Hubble clients see the pods, their namespace, labels and workload, and
    // filter by them.
    let call = json!({"method": "GetFlows", "request": {"number": 100, "whitelist": [
        {"source_pod": ["shop/web-"], "source_label": ["k8s:app=web"], "destination_ip": [NODE_1_IP]}]}});
    let responses = hubble_call(&format!("127.0.0.1:{hubble}"), &call);
    let flows: Vec<&serde_json::Value> = responses.iter().filter_map(|r| r.get("flow")).collect();
    assert!(!flows.is_empty(), "{responses:?}");
    for flow in flows {
        let source = &flow["source"];
        assert_eq!(
            (source["namespace"].as_str(), source["pod_name"].as_str()),
            (Some("shop"), Some("web-1")),
            "{flow}"
        );
        assert_eq!(source["workloads"], json!([{"name": "web", "kind": "Deployment"}]));
        assert!(source["labels"].as_array().unwrap().contains(&json!("k8s:io.kubernetes.pod.namespace=shop")));
        assert_eq!(flow["source_service"], json!({"name": "web", "namespace": "shop"}));
        assert_eq!(flow["IP"]["source"], WEB_1_IP);
        assert_eq!(flow["node_name"], "node-1", "the agent's records carry its node");
        assert_eq!(flow["destination"]["labels"], json!(["reserved:host"]), "node-1's own address, seen on node-1");
        assert_eq!(flow["destination"]["identity"], 1);
    }

    // An application in the pod sends OTLP: its resource finds the pod by
    // the connection's address.
    sdk_send(Some(&pod), NODE_1_IP, "by-connection", "", otlp_grpc, otlp_http);
    // One on the host says which container it runs in.
    let by_container = format!("container.id={}", container_id_of("web-1"));
    sdk_send(None, NODE_1_IP, "by-container", &by_container, otlp_grpc, otlp_http);
    for item in app_items(&file, "by-connection").into_iter().chain(app_items(&file, "by-container")) {
        let resource = &item.resource;
        assert_eq!(resource.get("k8s.pod.name").map(String::as_str), Some("web-1"), "{resource:?}");
        assert_eq!(resource.get("k8s.pod.uid"), Some(&web_1));
        assert_eq!(resource.get("k8s.deployment.name").map(String::as_str), Some("web"));
        assert_eq!(resource.get("k8s.namespace.name").map(String::as_str), Some("shop"));
        assert_eq!(resource.get("k8s.container.name").map(String::as_str), Some("main"));
        assert_eq!(resource.get("container.image.name").map(String::as_str), Some("app"));
        assert_eq!(resource.get("container.image.tag").map(String::as_str), Some("1"));
        assert_eq!(resource.get("service.name").map(String::as_str), Some("flowtel-e2e"), "the app's own stay");
        assert!(item.attributes.keys().all(|k| !k.starts_with("k8s.")), "no 5-tuple, no ends: {:?}", item.attributes);
    }

    // The pod is replaced by one with a new address; flowtel keeps running.
    api.delete_pod("shop", "web-1");
    let web_2 = api.create_pod(&web("web-2", WEB_2_IP));
    pod.run(&["ip", "addr", "del", &format!("{WEB_1_IP}/24"), "dev", "eth0"]);
    pod.run(&["ip", "addr", "add", &format!("{WEB_2_IP}/24"), "dev", "eth0"]);
    // The watch delivers the change within moments; records sent before it
    // arrived are not enriched with web-2, never with web-1.
    let out = wait_for(Duration::from_secs(20), "web-2's flow, enriched", || {
        ping(NODE_1_IP);
        flow_records(&file)
            .into_iter()
            .filter(|r| r.attributes.get("source.address").map(String::as_str) == Some(WEB_2_IP))
            .map(|r| r.attributes.into_iter().filter(|(k, _)| k.starts_with("k8s.")).collect::<BTreeMap<_, _>>())
            .find(|k8s| k8s.contains_key("k8s.src.pod.name"))
    });
    let mut expected: BTreeMap<String, String> = web_pod("src", "web-2", &web_2).into_iter().collect();
    expected.insert("k8s.dst.node.name".into(), "node-1".into());
    assert_eq!(out, expected);
    assert_eq!(flowtel.metric("flowtel_k8s_watch_errors_total", &[]), 0.0);
    for resource in ["pods", "replicasets", "services", "nodes", "namespaces"] {
        assert_eq!(
            flowtel.metric("flowtel_k8s_relists_total", &[("resource", resource)]),
            1.0,
            "{resource} listed once, then watched"
        );
    }

    // The API server goes away: flowtel keeps the last known state, retries
    // with backoff, and follows changes made after the server is back.
    api.kill_server();
    wait_for(Duration::from_secs(30), "a failed watch to be counted", || {
        (flowtel.metric("flowtel_k8s_watch_errors_total", &[]) > 0.0).then_some(())
    });
    let seen_before = flow_records(&file).len();
    ping(NODE_1_IP);
    let during = wait_for(Duration::from_secs(20), "a flow while the API server is away", || {
        flow_records(&file).into_iter().skip(seen_before).find(|r| {
            r.attributes.get("source.address").map(String::as_str) == Some(WEB_2_IP)
                && r.attributes.get("destination.address").map(String::as_str) == Some(NODE_1_IP)
        })
    });
    let during = during.attributes.get("k8s.src.pod.name").cloned();
    assert_eq!(during.as_deref(), Some("web-2"), "the last known state stays in use");
    api.start_server();
    api.delete_node("node-2");
    api.create_node("node-3", &[NODE_2_IP]);
    let after = wait_for(Duration::from_secs(60), "node-2's address to belong to node-3", || {
        ping(NODE_2_IP);
        flow_records(&file)
            .into_iter()
            .filter(|r| r.attributes.get("destination.address").map(String::as_str) == Some(NODE_2_IP))
            .filter_map(|r| r.attributes.get("k8s.dst.node.name").cloned())
            .find(|node| node == "node-3")
    });
    assert_eq!(after, "node-3");
    flowtel.child.assert_running();
}

/// The collector's agent and gateway layout: an agent in `passthrough` mode
/// (no API access) tags what an application sends with the connection's
/// address; the gateway, which watches the API, finds the pod by it.
#[test]
fn a_passthrough_agent_lets_the_gateway_find_the_pod() {
    if !is_root() {
        eprintln!("skipped: needs root to create namespaces");
        return;
    }
    let api = KubeApiServer::start();
    api.create_namespace("shop", json!({}));
    api.create_pod(&TestPod {
        namespace: "shop",
        name: "api-1",
        node: "node-1",
        ip: "10.79.0.2",
        host_network: false,
        owner: Some(("StatefulSet", "api")),
        labels: json!({"app": "api"}),
    });
    let pod = pod_netns("k8sh1", &["10.79.0.1"], "10.79.0.2");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.jsonl");
    let gateway_port = free_port();
    let _gateway = Flowtel::start(&format!(
        r#"
receivers:
  otlp: {{protocols: {{grpc: {{endpoint: "127.0.0.1:{gateway_port}"}}}}}}
processors:
  k8s_attributes: {{auth_type: kubeConfig, kubeconfig: "{}", wait_for_metadata: true}}
exporters:
  file: {{path: "{}"}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:${{METRICS_PORT}}"}}}}
  pipelines:
    logs: {{receivers: [otlp], processors: [k8s_attributes], exporters: [file]}}
    traces: {{receivers: [otlp], processors: [k8s_attributes], exporters: [file]}}
"#,
        api.kubeconfig.display(),
        file.display()
    ));
    let (agent_grpc, agent_http) = (free_port(), free_port());
    let _agent = Flowtel::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "10.79.0.1:{agent_grpc}"}}
      http: {{endpoint: "10.79.0.1:{agent_http}"}}
processors:
  k8s_attributes: {{passthrough: true}}
  batch: {{timeout: 200ms}}
exporters:
  otlp_grpc: {{endpoint: "http://127.0.0.1:{gateway_port}"}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:${{METRICS_PORT}}"}}}}
  pipelines:
    logs: {{receivers: [otlp], processors: [k8s_attributes, batch], exporters: [otlp_grpc]}}
    traces: {{receivers: [otlp], processors: [k8s_attributes, batch], exporters: [otlp_grpc]}}
"#
    ));
    sdk_send(Some(&pod), "10.79.0.1", "via-agent", "", agent_grpc, agent_http);
    for item in app_items(&file, "via-agent") {
        let resource = &item.resource;
        assert_eq!(resource.get("k8s.pod.ip").map(String::as_str), Some("10.79.0.2"), "{resource:?}");
        assert_eq!(resource.get("k8s.pod.name").map(String::as_str), Some("api-1"));
        assert_eq!(resource.get("k8s.owner.kind").map(String::as_str), Some("StatefulSet"));
        assert_eq!(resource.get("k8s.owner.name").map(String::as_str), Some("api"));
    }
}

/// The RBAC objects of examples/kubernetes/rbac.yaml are what the processor
/// needs: without them its service account cannot list, and flowtel (with
/// `wait_for_metadata`) refuses to start and says why; with them it starts
/// and knows the cluster — the pods its label and field filters select.
#[test]
fn the_example_rbac_grants_what_the_processor_needs() {
    if !is_root() {
        eprintln!("skipped: needs root, like the other Kubernetes tests");
        return;
    }
    let api = KubeApiServer::start();
    api.create_node("node-1", &["10.79.1.1"]);
    for (name, ip, app) in [("api-1", "10.79.1.2", "api"), ("api-2", "10.79.1.3", "api"), ("db-1", "10.79.1.4", "db")] {
        api.create_pod(&TestPod {
            namespace: "default",
            name,
            node: "node-1",
            ip,
            host_network: false,
            owner: None,
            labels: json!({"app": app}),
        });
    }
    let config = format!(
        r#"
receivers:
  otlp: {{protocols: {{grpc: {{endpoint: "127.0.0.1:{}"}}}}}}
processors:
  k8s_attributes:
    auth_type: kubeConfig
    kubeconfig: "{}"
    wait_for_metadata: true
    wait_for_metadata_timeout: 3s
    filter:
      labels: [{{key: app, value: api}}]
      fields: [{{key: metadata.name, op: not-equals, value: api-2}}]
exporters:
  debug: {{verbosity: basic}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:${{METRICS_PORT}}"}}}}
  pipelines:
    logs: {{receivers: [otlp], processors: [k8s_attributes], exporters: [debug]}}
"#,
        free_port(),
        api.service_account_kubeconfig.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("otel-config.yaml");
    std::fs::write(&path, config.replace("${METRICS_PORT}", &free_port().to_string())).unwrap();
    let refused = std::process::Command::new(flowtel_tests::flowtel_bin()).arg("--config").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "processors::k8s_attributes: Kubernetes metadata was not listed within wait_for_metadata_timeout (3s)"
        ),
        "{stderr}"
    );

    api.apply_list(&flowtel_tests::root().join("examples/kubernetes/rbac.yaml"));
    let flowtel = Flowtel::start(&config);
    assert_eq!(flowtel.metric("flowtel_k8s_objects", &[("resource", "nodes")]), 1.0);
    assert_eq!(flowtel.metric("flowtel_k8s_objects", &[("resource", "pods")]), 1.0, "only api-1 passes both filters");
    assert_eq!(flowtel.metric("flowtel_k8s_watch_errors_total", &[]), 0.0, "RBAC allows every list and watch");

    // The example agent DaemonSet is a valid object for the API server, and
    // flowtel accepts the config its ConfigMap carries.
    let daemonset = flowtel_tests::root().join("examples/kubernetes/daemonset.yaml");
    api.apply_list(&daemonset);
    let manifest = read_manifest(&daemonset);
    let agent_config = manifest["items"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|item| item["data"]["otel-config.yaml"].as_str())
        .expect("the ConfigMap's otel-config.yaml");
    std::fs::write(&path, agent_config).unwrap();
    let validated = std::process::Command::new(flowtel_tests::flowtel_bin())
        .args(["validate", "--config"])
        .arg(&path)
        .envs([("K8S_NODE_NAME", "node-1"), ("OTLP_ENDPOINT", "127.0.0.1:4317")])
        .output()
        .unwrap();
    assert!(validated.status.success(), "{}", String::from_utf8_lossy(&validated.stderr));
}

/// A host-network pod's address is its node's, so by address alone its end
/// of a flow names only the node. With `host_attributes` first, the local
/// process's container id names the pod itself: a server in the agent's
/// (fake) container, on the host network, is found as the agent.
#[test]
fn a_host_network_pods_own_process_names_it_at_its_end() {
    if !is_root() {
        eprintln!("skipped: needs root to load eBPF programs, create namespaces and cgroups");
        return;
    }
    const HOST_IF: &str = "k8sh3";
    const NODE_IP: &str = "10.78.3.1";
    const POD_IP: &str = "10.78.3.2";
    let agent_container = container_id_of("agent");
    let Some(container) = FakeContainer::create(&agent_container) else {
        eprintln!("skipped: no cgroup v2 hierarchy to make a container's cgroup in");
        return;
    };
    let api = KubeApiServer::start();
    api.create_namespace("shop", json!({}));
    api.create_node("node-1", &[NODE_IP]);
    api.create_pod(&web("web-1", POD_IP));
    api.create_pod(&agent(NODE_IP));
    let pod = pod_netns(HOST_IF, &[NODE_IP], POD_IP);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // The agent's server, on the host's network, in the agent's container.
    let server_code = format!(
        "import socket\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('{NODE_IP}', {port}))\ns.listen()\nwhile True:\n    c, _ = s.accept()\n    c.recv(64)\n    c.close()\n"
    );
    let server = Child::spawn(
        "agent server",
        std::process::Command::new("python3").args(["-c", &server_code]),
        &dir.path().join("server.log"),
    );
    container.add(server.pid());

    let file = dir.path().join("flows.jsonl");
    let _flowtel = Flowtel::start(&format!(
        r#"
receivers:
  ebpf: {{interfaces: [{HOST_IF}], flush_interval: 300ms, drops: {{enabled: false}}, tcp: {{enabled: false}}}}
processors:
  host_attributes: {{refresh_interval: 1s, min_rescan_interval: 200ms}}
  k8s_attributes: {{auth_type: kubeConfig, kubeconfig: "{}", wait_for_metadata: true}}
exporters:
  file: {{path: "{}"}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:${{METRICS_PORT}}"}}}}
  pipelines:
    logs: {{receivers: [ebpf], processors: [host_attributes, k8s_attributes], exporters: [file]}}
"#,
        api.kubeconfig.display(),
        file.display()
    ));

    // web-1 connects to the agent's server until a record names both ends.
    let record = wait_for(Duration::from_secs(30), "web-1 → the agent's server, both ends named", || {
        pod.run(&["bash", "-c", &format!("echo hi > /dev/tcp/{NODE_IP}/{port}")]);
        flow_records(&file).into_iter().find(|r| {
            r.attributes.get("destination.port") == Some(&port.to_string())
                && r.attributes.get("source.address").map(String::as_str) == Some(POD_IP)
                && r.attributes.contains_key("k8s.dst.pod.name")
        })
    });
    let get = |key: &str| record.attributes.get(key).map(String::as_str);
    assert_eq!(get("destination.container.id"), Some(agent_container.as_str()), "host_attributes: from the cgroup");
    assert_eq!(get("destination.process.executable.name"), Some("python3"));
    assert_eq!(get("k8s.dst.pod.name"), Some("agent"), "{:?}", record.attributes);
    assert_eq!(get("k8s.dst.owner.kind"), Some("DaemonSet"));
    assert_eq!(get("k8s.dst.node.name"), Some("node-1"));
    assert_eq!(get("k8s.src.pod.name"), Some("web-1"), "the pod's end by its own address");
    drop(server);
}
