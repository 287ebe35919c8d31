//! Privileged, real kernel: a flow routed through a namespace crosses two
//! of its interfaces, and the `ebpf` receiver reports it on both;
//! `log_dedup`'s flow mode keeps only the reports of the interface that
//! reported it first, so the flow's packets count once. Needs root.

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use flowtel_tests::{
    Flowtel,
    netns::{Netns, finish, ip, is_root},
    otlp_json::{file_requests, items},
};

/// a (10.80.1.2) — r0 | router r | r1 — b (10.80.2.2).
struct Routed {
    a: Netns,
    router: Netns,
    /// Lives as long as the test (its namespace is removed on drop).
    _b: Netns,
}

fn routed() -> Routed {
    let (a, router, b) = (Netns::create("dda"), Netns::create("ddr"), Netns::create("ddb"));
    ip(&["link", "add", "a0", "netns", &a.name, "type", "veth", "peer", "name", "r0", "netns", &router.name]);
    ip(&["link", "add", "b0", "netns", &b.name, "type", "veth", "peer", "name", "r1", "netns", &router.name]);
    for (ns, interface, address) in [
        (&a, "a0", "10.80.1.2/24"),
        (&router, "r0", "10.80.1.1/24"),
        (&router, "r1", "10.80.2.1/24"),
        (&b, "b0", "10.80.2.2/24"),
    ] {
        ns.run(&["ip", "addr", "add", address, "dev", interface]);
        ns.run(&["ip", "link", "set", interface, "up"]);
    }
    a.run(&["ip", "route", "add", "default", "via", "10.80.1.1"]);
    b.run(&["ip", "route", "add", "default", "via", "10.80.2.1"]);
    router.run(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    Routed { a, router, _b: b }
}

fn config(file: &std::path::Path, processors: &str) -> String {
    format!(
        r#"
receivers:
  ebpf: {{interfaces: [r0, r1], flush_interval: 1s, drops: {{enabled: false}}, tcp: {{enabled: false}}}}
processors:
  log_dedup: {{flow_mode: true, interval: 30s}}
exporters:
  file: {{path: "{}"}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:${{METRICS_PORT}}"}}}}
  pipelines:
    logs: {{receivers: [ebpf], processors: [{processors}], exporters: [file]}}
"#,
        file.display()
    )
}

/// (interface, packets) of the UDP flow from a to b:7000, per record.
fn udp_reports(routed: &Routed, processors: &str) -> Vec<(String, u64)> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flows.jsonl");
    let mut flowtel = Flowtel::start_in_netns(&config(&file, processors), &routed.router.name);
    finish(routed.a.python(
        "import socket,time\nu=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         for i in range(20): u.sendto(b'x'*100,('10.80.2.2',7000)); time.sleep(0.01)\n",
    ));
    std::thread::sleep(Duration::from_millis(2500));
    assert!(flowtel.child.stop().success(), "{}", flowtel.child.output());
    let requests = file_requests(&file);
    items(&requests, "logs")
        .into_iter()
        .filter(|r| {
            r.event_name == "network.flow"
                && r.attributes.get("destination.port").map(String::as_str) == Some("7000")
                && r.attributes.get("source.address").map(String::as_str) == Some("10.80.1.2")
        })
        .map(|r| (r.attributes["network.interface.name"].clone(), r.attributes["flow.packets"].parse().unwrap()))
        .collect()
}

#[test]
fn a_routed_flow_counts_once_in_flow_mode() {
    if !is_root() {
        eprintln!("skipped: needs root to load eBPF programs and create namespaces");
        return;
    }
    let routed = routed();
    // Without log_dedup the router reports the flow on both interfaces.
    let both = udp_reports(&routed, "");
    let total = |reports: &[(String, u64)]| reports.iter().map(|(_, p)| p).sum::<u64>();
    assert_eq!(total(&both), 40, "20 packets in on r0 and out on r1: {both:?}");
    // With it, only the interface that reported the flow first (both
    // report it in the same flush, in the kernel table's order).
    let once = udp_reports(&routed, "log_dedup");
    assert_eq!(total(&once), 20, "{once:?}");
    assert!(once.iter().all(|(interface, _)| *interface == once[0].0), "one interface: {once:?}");
}
