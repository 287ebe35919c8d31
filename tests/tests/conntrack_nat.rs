//! Privileged, real kernel, real conntrack: a client's connection through a
//! namespace that masquerades it. flowtel runs in the router namespace and
//! watches both its sides: the flow seen before NAT (inside) and after NAT
//! (outside) names the connection's original and reply tuples on every
//! record, and `log_dedup`'s flow mode makes it one flow. Needs root.

#![allow(clippy::unwrap_used, missing_docs)]

use std::{collections::BTreeSet, time::Duration};

use flowtel_tests::{
    Flowtel,
    netns::{Netns, finish, ip, is_root},
    otlp_json::{Item, file_requests, items, records},
    time_scale,
};

const CLIENT: &str = "10.93.1.2";
const INSIDE: &str = "10.93.1.1";
const OUTSIDE: &str = "10.93.2.1";
const SERVER: &str = "10.93.2.2";
const INSIDE_IF: &str = "nat-in";
const OUTSIDE_IF: &str = "nat-out";
const PORT: &str = "8080";

/// Client — router (masquerading what leaves through its outside side) —
/// server. The server has no route to the client's network: only NAT lets
/// it answer.
struct Masquerade {
    client: Netns,
    router: Netns,
    server: Netns,
}

impl Masquerade {
    fn create() -> Masquerade {
        let (client, router, server) = (Netns::create("natc"), Netns::create("natr"), Netns::create("nats"));
        for (ns, router_if, router_ip, ip_addr) in
            [(&client, INSIDE_IF, INSIDE, CLIENT), (&server, OUTSIDE_IF, OUTSIDE, SERVER)]
        {
            ip(&[
                "link",
                "add",
                router_if,
                "netns",
                &router.name,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &ns.name,
            ]);
            router.run(&["ip", "addr", "add", &format!("{router_ip}/24"), "dev", router_if]);
            router.run(&["ip", "link", "set", router_if, "up"]);
            ns.run(&["ip", "addr", "add", &format!("{ip_addr}/24"), "dev", "eth0"]);
            ns.run(&["ip", "link", "set", "eth0", "up"]);
            ns.run(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        }
        router.run(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        client.run(&["ip", "route", "add", "default", "via", INSIDE]);
        router.run(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        router.run(&["nft", "add", "table", "ip", "flowtel_nat"]);
        router.run(&[
            "nft",
            "add",
            "chain",
            "ip",
            "flowtel_nat",
            "postrouting",
            "{ type nat hook postrouting priority 100 ; }",
        ]);
        router.run(&["nft", "add", "rule", "ip", "flowtel_nat", "postrouting", "oifname", OUTSIDE_IF, "masquerade"]);
        Masquerade { client, router, server }
    }
}

fn config(dir: &std::path::Path) -> String {
    format!(
        r#"
receivers:
  ebpf:
    interfaces: ["{INSIDE_IF}", "{OUTSIDE_IF}"]
    flush_interval: 1s
    conntrack: {{enabled: true}}
    drops: {{enabled: false}}
    tcp: {{enabled: false}}
processors:
  log_dedup: {{flow_mode: true, interval: 1m}}
exporters:
  file/all: {{path: "{dir}/all.jsonl"}}
  file/deduplicated: {{path: "{dir}/deduplicated.jsonl"}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:${{METRICS_PORT}}"}}}}
  pipelines:
    logs/all: {{receivers: [ebpf], exporters: [file/all]}}
    logs/deduplicated: {{receivers: [ebpf], processors: [log_dedup], exporters: [file/deduplicated]}}
"#,
        dir = dir.display()
    )
}

fn attr<'a>(item: &'a Item, key: &str) -> &'a str {
    item.attributes.get(key).map_or("", String::as_str)
}

/// The flow records of the test's connection (the server's port at one end).
fn connection_flows(logs: &[Item]) -> Vec<&Item> {
    records(logs, "network.flow", &[("network.transport", "tcp")])
        .into_iter()
        .filter(|r| attr(r, "destination.port") == PORT || attr(r, "source.port") == PORT)
        .collect()
}

#[test]
fn a_masqueraded_connection_names_both_tuples_and_is_one_flow() {
    assert!(is_root(), "this privileged test needs root: run `cargo xtask test` as root");
    let nat = Masquerade::create();
    let dir = tempfile::tempdir().unwrap();
    let mut flowtel = Flowtel::start_in_netns(&config(dir.path()), &nat.router.name);
    let server = nat.server.python(&format!(
        "import socket\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
         s.bind(('{SERVER}',{PORT}));s.listen()\nprint('ready',flush=True)\nc,a=s.accept()\n\
         d=c.recv(1000)\nc.sendall(a[0].encode()+b' '+d)\nc.close()\n"
    ));
    std::thread::sleep(Duration::from_millis(500) * time_scale());
    let answer = finish(nat.client.python(&format!(
        "import socket\ns=socket.create_connection(('{SERVER}',{PORT}))\ns.sendall(b'hello')\n\
         d=b''\nwhile True:\n  x=s.recv(1000)\n  if not x: break\n  d+=x\nprint(s.getsockname()[1],d.decode())\n"
    )));
    finish(server);
    // The server saw the router's outside address: the connection was masqueraded.
    let (client_port, seen_by_server) = answer.trim().split_once(' ').unwrap();
    assert!(seen_by_server.starts_with(OUTSIDE), "{answer}");
    std::thread::sleep(Duration::from_millis(2500) * time_scale());
    assert!(flowtel.child.stop().success(), "{}", flowtel.child.output());
    let output = flowtel.child.output();
    assert!(output.contains("Flows of NATed connections name both tuples"), "{output}");

    let all = items(&file_requests(&dir.path().join("all.jsonl")), "logs");
    let flows = connection_flows(&all);
    let interfaces: BTreeSet<&str> = flows.iter().map(|r| attr(r, "network.interface.name")).collect();
    assert_eq!(interfaces, BTreeSet::from([INSIDE_IF, OUTSIDE_IF]), "seen on both sides: {flows:#?}");
    // Every record, on either side and in either direction, names the same connection.
    for flow in &flows {
        let original = [
            "network.conntrack.original.source.address",
            "network.conntrack.original.source.port",
            "network.conntrack.original.destination.address",
            "network.conntrack.original.destination.port",
            "network.conntrack.reply.source.address",
            "network.conntrack.reply.source.port",
            "network.conntrack.reply.destination.address",
            "network.conntrack.nat",
        ]
        .map(|key| attr(flow, key));
        assert_eq!(original, [CLIENT, client_port, SERVER, PORT, SERVER, PORT, OUTSIDE, "snat"], "{flow:#?}\n{output}");
        let towards_server = attr(flow, "destination.port") == PORT;
        assert_eq!(attr(flow, "network.conntrack.direction"), if towards_server { "original" } else { "reply" });
    }
    // The outside side saw the translated client.
    assert!(
        flows.iter().any(|r| attr(r, "network.interface.name") == OUTSIDE_IF && attr(r, "source.address") == OUTSIDE),
        "{flows:#?}"
    );

    // After log_dedup's flow mode, one interface per direction: one flow.
    let deduplicated = items(&file_requests(&dir.path().join("deduplicated.jsonl")), "logs");
    let flows = connection_flows(&deduplicated);
    let per_direction: BTreeSet<(&str, &str)> =
        flows.iter().map(|r| (attr(r, "network.conntrack.direction"), attr(r, "network.interface.name"))).collect();
    let directions: Vec<&str> = per_direction.iter().map(|(direction, _)| *direction).collect();
    assert_eq!(directions, ["original", "reply"], "one interface for each direction: {per_direction:?}");
}
