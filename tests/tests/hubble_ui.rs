//! Privileged, real kernel, real Kubernetes API server: what the Hubble UI
//! asks of flowtel, it gets. Two pods on one bridge talk TCP both ways and
//! UDP, one connection opened before flowtel started; flowtel's kernel
//! flows, enriched by `k8s_attributes`, answer the exact `GetFlows` request
//! the Hubble UI sends for a namespace (only the request side of each
//! connection: `reply: false`) with namespaces, labels, workloads and
//! identities on both ends, stable across a restart. Needs root and
//! `cargo xtask setup`.

#![allow(clippy::unwrap_used, missing_docs)]

use std::{path::Path, time::Duration};

use flowtel_tests::{
    Flowtel, free_port, hubble_call,
    kube::{KubeApiServer, TestPod},
    netns::{Netns, finish, ip, is_root},
    otlp_json::{Item, file_requests, items},
    wait_for,
};
use serde_json::{Value, json};

const BRIDGE: &str = "ftuibr0";
const NODE_IP: &str = "10.79.0.1";
const WEB_IP: &str = "10.79.0.2";
const DB_IP: &str = "10.79.0.3";
/// An address outside the cluster (no pod, no node), reached through a
/// static neighbour entry.
const WORLD_IP: &str = "10.79.0.50";
/// The host side of web's veth, where flowtel watches.
const WEB_HOST_IF: &str = "ftuiw0";
const DB_HOST_IF: &str = "ftuid0";

/// The bridge joining the pods, with the node's address; removed on drop.
struct Bridge;

impl Bridge {
    fn create() -> Bridge {
        ip(&["link", "add", BRIDGE, "type", "bridge"]);
        ip(&["addr", "add", &format!("{NODE_IP}/24"), "dev", BRIDGE]);
        ip(&["link", "set", BRIDGE, "up"]);
        Bridge
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip").args(["link", "del", BRIDGE]).status();
    }
}

/// A pod's namespace on the bridge through `host_if` ↔ `eth0`.
fn pod_netns(host_if: &str, pod_ip: &str) -> Netns {
    let pod = Netns::create("ui");
    ip(&["link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", &pod.name]);
    ip(&["link", "set", host_if, "master", BRIDGE]);
    ip(&["link", "set", host_if, "up"]);
    pod.run(&["ip", "addr", "add", &format!("{pod_ip}/24"), "dev", "eth0"]);
    pod.run(&["ip", "link", "set", "eth0", "up"]);
    pod
}

fn config(kubeconfig: &Path, file: &Path, hubble: u16) -> String {
    format!(
        r#"
receivers:
  ebpf: {{interfaces: [{WEB_HOST_IF}], flush_interval: 500ms, drops: {{enabled: false}}, tcp: {{enabled: false}}}}
processors:
  k8s_attributes:
    auth_type: kubeConfig
    kubeconfig: "{}"
    wait_for_metadata: true
    filter: {{node_from_env_var: FLOWTEL_TEST_NODE}}
    extract: {{labels: [{{key_regex: ".*"}}]}}
exporters:
  file: {{path: "{}"}}
  hubble: {{endpoint: "127.0.0.1:{hubble}", node_name: node-1}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:${{METRICS_PORT}}"}}}}
  pipelines:
    logs: {{receivers: [ebpf], processors: [k8s_attributes], exporters: [file, hubble]}}
"#,
        kubeconfig.display(),
        file.display()
    )
}

/// The `GetFlows` request the Hubble UI (v0.13) sends for namespace
/// `namespace` with its default filters: flows of the kernel's event types
/// that are not replies, from or to a pod of the namespace; not from or to
/// unknown identities, the host, remote nodes, kube-dns on port 53,
/// Prometheus, or cluster-local DNS names. Its backend follows, from a
/// `since` time, with no `number` and no field mask.
fn hubble_ui_request(namespace: &str) -> Value {
    let event_types = json!([{"type": 1}, {"type": 4}, {"type": 129}, {"type": 5}]);
    let skipped =
        ["reserved:unknown", "reserved:host", "k8s:k8s-app=kube-dns", "reserved:remote-node", "k8s:app=prometheus"];
    json!({
        "since": "2000-01-01T00:00:00Z",
        "follow": true,
        "whitelist": [
            {"event_type": event_types, "reply": [false], "source_pod": [format!("{namespace}/")]},
            {"event_type": event_types, "reply": [false], "destination_pod": [format!("{namespace}/")]},
        ],
        "blacklist": [
            {"source_label": skipped},
            {"destination_label": skipped},
            {"destination_label": ["k8s:k8s-app=kube-dns"], "destination_port": ["53"]},
            {"source_fqdn": ["*.cluster.local*"]},
            {"destination_fqdn": ["*.cluster.local*"]},
        ],
    })
}

/// The flows `GetFlows` answers `request` with; a following request is
/// read for 3 seconds.
fn get_flows(hubble: u16, request: &Value) -> Vec<Value> {
    let call = json!({"method": "GetFlows", "request": request, "timeout": 3});
    let responses = hubble_call(&format!("127.0.0.1:{hubble}"), &call);
    responses.into_iter().filter_map(|r| r.get("flow").cloned()).collect()
}

fn flow_records(file: &Path) -> Vec<Item> {
    items(&file_requests(file), "logs").into_iter().filter(|r| r.event_name == "network.flow").collect()
}

fn attr<'a>(record: &'a Item, key: &str) -> &'a str {
    record.attributes.get(key).map(String::as_str).unwrap_or_default()
}

/// `(transport, source address, source port, destination address, destination port)`.
type Tuple = (String, String, u64, String, u64);

/// The [`Tuple`] of a Hubble flow.
fn tuple(flow: &Value) -> Tuple {
    let (transport, l4) =
        ["TCP", "UDP"].iter().find_map(|t| flow["l4"].get(*t).map(|l4| (*t, l4))).unwrap_or(("", &Value::Null));
    (
        transport.to_owned(),
        flow["IP"]["source"].as_str().unwrap_or_default().to_owned(),
        l4["source_port"].as_u64().unwrap_or(0),
        flow["IP"]["destination"].as_str().unwrap_or_default().to_owned(),
        l4["destination_port"].as_u64().unwrap_or(0),
    )
}

/// Starts a TCP server on `port` in `netns` that echoes what each client sends
/// until it closes, for `connections` clients.
fn echo_server(netns: &Netns, address: &str, port: u16, connections: usize) -> std::process::Child {
    netns.python(&format!(
        "import socket,threading\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
         s.bind(('{address}',{port}));s.listen()\n\
         def serve(c):\n  while True:\n    d=c.recv(65536)\n    if not d: break\n    c.sendall(d)\n  c.close()\n\
         threads=[]\nfor i in range({connections}):\n  c,_=s.accept();t=threading.Thread(target=serve,args=(c,));t.start();threads.append(t)\n\
         for t in threads: t.join()\n"
    ))
}

/// One TCP exchange from `netns` to `address:port`; prints the client's port.
fn tcp_exchange(netns: &Netns, address: &str, port: u16) -> u64 {
    let out = finish(netns.python(&format!(
        "import socket\ns=socket.create_connection(('{address}',{port}))\ns.sendall(b'x'*100)\n\
         d=b''\nwhile len(d)<100: d+=s.recv(65536)\nprint(s.getsockname()[1])\ns.close()\n"
    )));
    out.parse().unwrap()
}

#[test]
fn the_hubble_uis_request_returns_request_flows_with_identities_and_workloads() {
    if !is_root() {
        eprintln!("skipped: needs root to load eBPF programs and create namespaces");
        return;
    }
    let api = KubeApiServer::start();
    api.create_namespace("shop", json!({}));
    api.create_node("node-1", &[NODE_IP]);
    api.create_replica_set("shop", "web-5d9", "web", "web");
    let pod = |name, ip, owner, app| TestPod {
        namespace: "shop",
        name,
        node: "node-1",
        ip,
        host_network: false,
        owner,
        labels: json!({"app": app}),
    };
    api.create_pod(&pod("web-1", WEB_IP, Some(("ReplicaSet", "web-5d9")), "web"));
    api.create_pod(&pod("db-1", DB_IP, None, "db"));

    let _bridge = Bridge::create();
    let web = pod_netns(WEB_HOST_IF, WEB_IP);
    let db = pod_netns(DB_HOST_IF, DB_IP);

    // A connection web → db:5432 opened before flowtel starts, still talking after.
    let old_server = echo_server(&db, DB_IP, 5432, 1);
    std::thread::sleep(Duration::from_millis(300));
    let old_client = web.python(&format!(
        "import socket,time\ns=socket.create_connection(('{DB_IP}',5432))\nprint(s.getsockname()[1],flush=True)\n\
         for i in range(40):\n  s.sendall(b'y'*10)\n  d=b''\n  while len(d)<10: d+=s.recv(65536)\n  time.sleep(0.25)\n\
         s.close()\n"
    ));
    std::thread::sleep(Duration::from_secs(1));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flows.jsonl");
    let hubble = free_port();
    let flowtel_config = config(&api.kubeconfig, &file, hubble);
    let mut flowtel = Flowtel::start_with_env(&flowtel_config, &[("FLOWTEL_TEST_NODE", "node-1")]);

    // While it runs: web → db:6000 and db → web:8080 over TCP, web → db:5353
    // over UDP, and a datagram to an address outside the cluster.
    let servers = [echo_server(&db, DB_IP, 6000, 2), echo_server(&web, WEB_IP, 8080, 2)];
    std::thread::sleep(Duration::from_millis(300));
    let web_ports: Vec<u64> = (0..2).map(|_| tcp_exchange(&web, DB_IP, 6000)).collect();
    let db_ports: Vec<u64> = (0..2).map(|_| tcp_exchange(&db, WEB_IP, 8080)).collect();
    for server in servers {
        finish(server);
    }
    let udp_server = db.python(&format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(('{DB_IP}',5353))\n\
         d,a=s.recvfrom(100);s.sendto(d,a)\n"
    ));
    std::thread::sleep(Duration::from_millis(300));
    let udp_port: u64 = finish(web.python(&format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(5)\n\
         s.sendto(b'q',('{DB_IP}',5353));s.recvfrom(100)\nprint(s.getsockname()[1])\n"
    )))
    .parse()
    .unwrap();
    finish(udp_server);
    web.run(&["ip", "neigh", "add", WORLD_IP, "lladdr", "02:00:00:00:00:01", "dev", "eth0"]);
    web.run(&[
        "python3",
        "-c",
        &format!("import socket\nsocket.socket(socket.AF_INET,socket.SOCK_DGRAM).sendto(b'w',('{WORLD_IP}',4000))"),
    ]);
    // Between two ephemeral ports no rule knows which side asks.
    web.run(&[
        "python3",
        "-c",
        &format!(
            "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(('{WEB_IP}',40000))\n\
         s.sendto(b'p',('{DB_IP}',40001))"
        ),
    ]);
    let old_port: u64 = finish(old_client).parse().unwrap();
    finish(old_server);

    // Every direction of every exchange is in the records, each saying
    // whether it answers: the connections flowtel saw open by their
    // handshake, the older one and UDP by the service port.
    let records = wait_for(Duration::from_secs(20), "every exchange's records", || {
        let records = flow_records(&file);
        let has = |port: u64| records.iter().any(|r| attr(r, "source.port") == port.to_string());
        let all = web_ports.iter().chain(&db_ports).chain([&udp_port, &old_port]).all(|&p| has(p));
        (all && records.iter().any(|r| attr(r, "source.port") == "5432")).then_some(records)
    });
    let is_reply_of = |source_port: u64| -> Vec<String> {
        records
            .iter()
            .filter(|r| attr(r, "source.port") == source_port.to_string())
            .map(|r| attr(r, "flow.is_reply").to_owned())
            .collect()
    };
    for port in web_ports.iter().chain(&db_ports).chain([&udp_port, &old_port]) {
        let marks = is_reply_of(*port);
        assert!(!marks.is_empty() && marks.iter().all(|m| m == "false"), "client port {port}: {marks:?}");
    }
    for service in [6000, 8080, 5353, 5432] {
        let marks = is_reply_of(service);
        assert!(!marks.is_empty() && marks.iter().all(|m| m == "true"), "service port {service}: {marks:?}");
    }

    let peer_to_peer = wait_for(Duration::from_secs(10), "the ephemeral-to-ephemeral datagram", || {
        flow_records(&file).into_iter().find(|r| attr(r, "source.port") == "40000")
    });
    assert!(!peer_to_peer.attributes.contains_key("flow.is_reply"), "left unset, never guessed");
    assert!(flowtel.metric("flowtel_ebpf_flow_records_reply_unknown_total", &[]) >= 1.0, "and counted");

    // The Hubble UI's own request for namespace `shop`.
    let flows = get_flows(hubble, &hubble_ui_request("shop"));
    let tuples: Vec<_> = flows.iter().map(tuple).collect();
    for flow in &flows {
        assert_eq!(flow["is_reply"], false, "the UI asked for no replies: {flow}");
    }
    let expect = |what: &str, matches: &dyn Fn(&Tuple) -> bool| {
        assert!(tuples.iter().any(matches), "{what} is missing from {tuples:?}");
    };
    for port in &web_ports {
        expect("web → db:6000", &|t| t.0 == "TCP" && t.2 == *port && t.4 == 6000);
    }
    for port in &db_ports {
        expect("db → web:8080", &|t| t.0 == "TCP" && t.2 == *port && t.4 == 8080);
    }
    expect("web → db:5353 (UDP)", &|t| t.0 == "UDP" && t.2 == udp_port && t.4 == 5353);
    expect("the older web → db:5432", &|t| t.0 == "TCP" && t.2 == old_port && t.4 == 5432);
    assert!(!tuples.iter().any(|t| [6000, 8080, 5353, 5432].contains(&t.2)), "no reply side in the answer: {tuples:?}");

    // Both ends as the UI draws them: namespace, pod, labels, workload, identity.
    let to_db = flows.iter().find(|f| tuple(f).4 == 6000).unwrap();
    let (source, destination) = (&to_db["source"], &to_db["destination"]);
    assert_eq!((source["namespace"].as_str(), source["pod_name"].as_str()), (Some("shop"), Some("web-1")));
    assert_eq!(source["workloads"], json!([{"name": "web", "kind": "Deployment"}]));
    assert!(source["labels"].as_array().unwrap().contains(&json!("k8s:app=web")), "{source}");
    assert_eq!(destination["workloads"], json!([{"name": "db-1", "kind": "Pod"}]), "a bare pod is its own workload");
    assert!(destination["labels"].as_array().unwrap().contains(&json!("k8s:io.kubernetes.pod.namespace=shop")));
    let web_identity = source["identity"].as_u64().unwrap();
    let db_identity = destination["identity"].as_u64().unwrap();
    assert!(web_identity >= 256 && db_identity >= 256 && web_identity != db_identity, "{web_identity} {db_identity}");
    assert_eq!(to_db["traffic_direction"], "EGRESS", "leaving web-1, a pod of this node");
    let from_db = flows.iter().find(|f| tuple(f).4 == 8080).unwrap();
    assert_eq!(from_db["source"]["identity"].as_u64(), Some(db_identity), "one identity per pod's labels");
    assert_eq!(from_db["destination"]["identity"].as_u64(), Some(web_identity));

    // Outside the cluster is the world; the node's own address is the host.
    let all = get_flows(hubble, &json!({"number": 10000}));
    let to_world = all.iter().find(|f| f["IP"]["destination"] == WORLD_IP).expect("the datagram to the world");
    assert_eq!(
        (to_world["destination"]["identity"].as_u64(), &to_world["destination"]["labels"]),
        (Some(2), &json!(["reserved:world"]))
    );

    // After a restart the same pods have the same identities.
    flowtel.child.stop();
    std::fs::remove_file(&file).unwrap();
    let _flowtel = Flowtel::start_with_env(&flowtel_config, &[("FLOWTEL_TEST_NODE", "node-1")]);
    let server = echo_server(&db, DB_IP, 6001, 1);
    std::thread::sleep(Duration::from_millis(300));
    tcp_exchange(&web, DB_IP, 6001);
    finish(server);
    let again = wait_for(Duration::from_secs(20), "a flow after the restart", || {
        get_flows(hubble, &hubble_ui_request("shop")).into_iter().find(|f| tuple(f).4 == 6001)
    });
    assert_eq!(again["source"]["identity"].as_u64(), Some(web_identity));
    assert_eq!(again["destination"]["identity"].as_u64(), Some(db_identity));
}
