//! Privileged, real kernel, real Kubernetes API server, real Prometheus:
//! the per-workload metrics of `examples/prometheus/otel-config.yaml`, read
//! back through Prometheus's query API, against what the kernel counted for
//! the traffic the test made between two pods in two namespaces — bytes,
//! drops by reason, retransmits by process, an RTT histogram — and the
//! trace ids flowtel read from the requests, as exemplars. Needs root and
//! `cargo xtask setup`.

#![allow(clippy::unwrap_used, missing_docs)]

use std::{
    io::{BufRead, BufReader},
    process::Command,
    time::Duration,
};

use flowtel_tests::{
    Flowtel, example_config, free_port,
    kube::{KubeApiServer, TestPod},
    netns::{Netns, finish, ip, is_root},
    prometheus::Prometheus,
    wait_for,
};
use serde_json::{Value, json};

const BRIDGE: &str = "k8pbr";
const WEB_IF: &str = "k8pw0";
const API_IF: &str = "k8pa0";
const WEB_IP: &str = "10.79.0.2";
const API_IP: &str = "10.79.0.3";
const WEB_MAC: &str = "02:79:00:00:00:02";
const API_MAC: &str = "02:79:00:00:00:03";
const PORT: &str = "8080";

/// Two pods' namespaces on one bridge of the host (layer 2: the host routes
/// nothing), with IPv6 off and static neighbours, so that every packet on
/// the web pod's veth is IPv4 between the two pods.
struct TwoPods {
    web: Netns,
    api: Netns,
}

impl TwoPods {
    fn create() -> TwoPods {
        let _ = Command::new("ip").args(["link", "del", BRIDGE]).status();
        ip(&["link", "add", BRIDGE, "type", "bridge"]);
        sysctl_host(BRIDGE);
        let pod = |host_if: &str, address: &str, mac: &str| {
            let ns = Netns::create("k8pp");
            ip(&["link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", &ns.name]);
            sysctl_host(host_if);
            ip(&["link", "set", host_if, "master", BRIDGE]);
            ns.run(&["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"]);
            ns.run(&["ip", "link", "set", "eth0", "address", mac]);
            ns.run(&["ip", "addr", "add", &format!("{address}/24"), "dev", "eth0"]);
            ns.run(&["ip", "link", "set", "lo", "up"]);
            ns.run(&["ip", "link", "set", "eth0", "up"]);
            ip(&["link", "set", host_if, "up"]);
            ns
        };
        let web = pod(WEB_IF, WEB_IP, WEB_MAC);
        let api = pod(API_IF, API_IP, API_MAC);
        web.run(&["ip", "neigh", "add", API_IP, "lladdr", API_MAC, "dev", "eth0", "nud", "permanent"]);
        api.run(&["ip", "neigh", "add", WEB_IP, "lladdr", WEB_MAC, "dev", "eth0", "nud", "permanent"]);
        ip(&["link", "set", BRIDGE, "up"]);
        TwoPods { web, api }
    }
}

impl Drop for TwoPods {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", BRIDGE]).status();
    }
}

/// No IPv6 (and so no neighbour discovery or MLD) on a host interface.
fn sysctl_host(interface: &str) {
    let status = Command::new("sysctl")
        .args(["-q", "-w", &format!("net.ipv6.conf.{interface}.disable_ipv6=1")])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The example's config, with the test's API server, the web pod's veth as
/// the only interface and loopback addresses.
fn config(kubeconfig: &std::path::Path, scrape: u16) -> String {
    example_config(
        "prometheus/otel-config.yaml",
        &[
            (
                "  ebpf:\n    flush_interval: 10s\n",
                format!("  ebpf:\n    flush_interval: 500ms\n    interfaces: [{WEB_IF}]\n"),
            ),
            (
                "    auth_type: serviceAccount\n",
                format!(
                    "    auth_type: kubeConfig\n    kubeconfig: \"{}\"\n    wait_for_metadata: true\n",
                    kubeconfig.display()
                ),
            ),
            ("\"${env:FLOWTEL_PROMETHEUS_ENDPOINT:-0.0.0.0:8889}\"", format!("\"127.0.0.1:{scrape}\"")),
            ("service:\n", "service:\n  telemetry: {metrics: {address: \"127.0.0.1:${METRICS_PORT}\"}}\n".to_owned()),
        ],
    )
}

fn web(name: &str) -> TestPod<'_> {
    TestPod {
        namespace: "frontend",
        name,
        node: "node-1",
        ip: WEB_IP,
        host_network: false,
        owner: Some(("ReplicaSet", "web-5d9")),
        labels: json!({"app": "web"}),
    }
}

fn api(name: &str) -> TestPod<'_> {
    TestPod {
        namespace: "backend",
        name,
        node: "node-1",
        ip: API_IP,
        host_network: false,
        owner: Some(("ReplicaSet", "api-7c4")),
        labels: json!({"app": "api"}),
    }
}

#[test]
fn prometheus_reads_per_workload_metrics_that_match_the_kernel() {
    if !is_root() {
        eprintln!("skipped: needs root to load eBPF programs and create namespaces");
        return;
    }
    let api_server = KubeApiServer::start();
    api_server.create_namespace("frontend", json!({}));
    api_server.create_namespace("backend", json!({}));
    api_server.create_node("node-1", &["10.79.0.1"]);
    api_server.create_replica_set("frontend", "web-5d9", "web", "web");
    api_server.create_replica_set("backend", "api-7c4", "api", "api");
    api_server.create_pod(&web("web-1"));
    api_server.create_pod(&api("api-1"));

    let pods = TwoPods::create();
    let scrape = free_port();
    let flowtel = Flowtel::start_with_env(&config(&api_server.kubeconfig, scrape), &[("K8S_NODE_NAME", "node-1")]);
    let prometheus = Prometheus::start(scrape);
    // What the web pod's veth carried: in from the pod (rx), out to it (tx),
    // counted from here, with flowtel watching.
    let veth = |stat: &str| {
        let text = std::fs::read_to_string(format!("/sys/class/net/{WEB_IF}/statistics/{stat}")).unwrap();
        text.trim().parse::<f64>().unwrap()
    };
    let before: Vec<f64> = ["rx_bytes", "tx_bytes", "rx_packets"].iter().map(|stat| veth(stat)).collect();

    // Four connections refused by the api pod: four NO_SOCKET drops.
    finish(pods.web.python(&format!(
        "import socket\nfor _ in range(4):\n  s=socket.socket()\n  try: s.connect(('{API_IP}',9))\n  except ConnectionRefusedError: pass\n  s.close()\n"
    )));
    // Traced HTTP requests whose responses lose a quarter of their segments.
    pods.web.lose_tcp_from_port(PORT, 4);
    let mut server =
        pods.api.script("traced_http.py", &["server", "--address", API_IP, "--port", PORT, "--body", "200000"]);
    let mut ready = String::new();
    BufReader::new(server.stdout.as_mut().unwrap()).read_line(&mut ready).unwrap();
    assert_eq!(ready.trim(), "ready");
    // The name the kernel and /proc give the server's process.
    let server_process = std::fs::read_to_string(format!("/proc/{}/comm", server.id())).unwrap().trim().to_owned();
    // host_attributes learns a namespace's sockets through a process inside
    // it: the api pod had none until now, so its address was not known to be
    // local (no early read asked for). Its next regular read of /proc finds
    // the listening server, as it would for a pod that just started.
    let scans = flowtel.metric("flowtel_host_attributes_scans_total", &[]);
    wait_for(Duration::from_secs(15), "host_attributes to read /proc with the server listening", || {
        (flowtel.metric("flowtel_host_attributes_scans_total", &[]) > scans).then_some(())
    });
    let url = format!("http://{API_IP}:{PORT}/");
    let client =
        finish(pods.web.script("traced_http.py", &["client", "--url", &url, "--threads", "2", "--requests", "5"]));
    let trace_ids: Vec<String> = client
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["trace_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(trace_ids.len(), 10, "{client}");
    // Lossless again, so the connections close and the pods go quiet.
    pods.web.stop_losing();
    let _ = server.kill();
    let _ = server.wait();

    // Bytes between the workloads, both ways, are what the web pod's veth carried.
    let ends = |src: &str, src_ns: &str, dst: &str, dst_ns: &str| {
        format!(
            r#"k8s_src_owner_name="{src}",k8s_src_namespace_name="{src_ns}",k8s_dst_owner_name="{dst}",k8s_dst_namespace_name="{dst_ns}""#
        )
    };
    let web_to_api = ends("web", "frontend", "api", "backend");
    let api_to_web = ends("api", "backend", "web", "frontend");
    let bytes = |labels: &str| prometheus.query(&format!("sum(network_workload_bytes_total{{{labels}}})"));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let carried = (Some(veth("rx_bytes") - before[0]), Some(veth("tx_bytes") - before[1]));
        let seen = (bytes(&web_to_api), bytes(&api_to_web));
        if seen == carried {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Prometheus never had every byte the veth carried: it has {seen:?} (web → api, api → web), the veth carried {carried:?}; flowtel's own metrics:\n{}",
            flowtel.metrics()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let packets = prometheus.query(&format!("sum(network_workload_packets_total{{{web_to_api}}})"));
    assert_eq!(packets, Some(veth("rx_packets") - before[2]), "packets from web to api");

    let drops = prometheus
        .query(&format!(r#"sum(network_workload_drops_total{{{web_to_api},network_drop_reason="NO_SOCKET"}})"#));
    assert_eq!(drops, Some(4.0), "the refused connections");
    let filtered = prometheus
        .query(&format!(r#"sum(network_workload_drops_total{{{api_to_web},network_drop_reason="NETFILTER_DROP"}})"#));
    assert!(filtered.unwrap_or(0.0) > 0.0, "the server's segments the test's firewall dropped");

    // The server's segments were lost: it retransmitted them, while it ran
    // (its process named) and after it was stopped (`unknown`).
    let by_process = |name: &str| {
        prometheus.query(&format!(
            r#"sum(network_process_tcp_retransmits_total{{source_process_executable_name="{name}",k8s_src_namespace_name="backend"}})"#
        ))
    };
    // One query, so both sums come from the same instant (retransmits go on
    // with backoff, and two queries could straddle a scrape).
    let unaccounted = format!(
        r#"sum(network_workload_tcp_retransmits_total{{{api_to_web}}}) - sum(network_process_tcp_retransmits_total{{source_process_executable_name=~"{}|unknown",k8s_src_namespace_name="backend"}})"#,
        regex_escape(&server_process)
    );
    wait_for(Duration::from_secs(30), "every retransmit of the api pod, by process", || {
        (prometheus.query(&unaccounted)? == 0.0).then_some(())
    });
    let retransmits = by_process(&server_process).unwrap_or(0.0);
    assert!(
        retransmits > 0.0,
        "the server's process ({server_process}) is named; by process: {:?}; flowtel's own metrics:\n{}",
        prometheus.query_vector("sum by (source_process_executable_name) (network_process_tcp_retransmits_total)"),
        flowtel.metrics()
    );

    let rtt = wait_for(Duration::from_secs(20), "an RTT histogram", || {
        prometheus.query("histogram_quantile(0.5, sum by (le) (network_workload_tcp_rtt_seconds_bucket))")
    });
    assert!(rtt > 0.0 && rtt < 1.0, "median RTT {rtt}");

    // The kernel read each request's traceparent: the flow metrics carry
    // the client's trace ids as exemplars.
    let exemplars = wait_for(Duration::from_secs(30), "exemplars of the requests", || {
        let ids = prometheus.exemplar_trace_ids("network_flow_bytes_total");
        ids.iter().any(|id| trace_ids.contains(id)).then_some(ids)
    });
    assert!(exemplars.iter().all(|id| id.len() == 32), "{exemplars:?}");
    assert_eq!(flowtel.metric("flowtel_connector_overflow_items_total", &[]), 0.0);
}

/// `text` as a literal inside a PromQL regular expression.
fn regex_escape(text: &str) -> String {
    text.chars().fold(String::new(), |mut escaped, c| {
        if r"\.+*?()|[]{}^$".contains(c) {
            escaped.push_str(r"\\");
        }
        escaped.push(c);
        escaped
    })
}
