//! Privileged, real kernel: every part of the `ebpf` receiver on the
//! kernel that runs this test, through the variants that kernel offers.
//! `cargo xtask test` runs it on the host's kernel and, under qemu, on
//! 5.10, 6.1 and 6.12 (`cargo xtask test --kernels`), where flowtel falls
//! back to a clsact qdisc (before 6.6), to `kfree_skb` without a reason
//! (before 5.17) and goes without `bpf_loop` (before 5.17).
//!
//! flowtel runs in the first namespace of a veth pair: flows on its veth,
//! drops and TCP events from every namespace (tracepoints are global).
//! Needs root.

#![allow(clippy::unwrap_used, missing_docs)]

use std::{collections::BTreeSet, process::Command, time::Duration};

use flowtel_tests::{
    Flowtel, ebpf_logs_config, flowtel_bin, free_port, kernel_at_least,
    netns::{VethPair, assert_nothing_left, finish, is_root},
    otlp_json::{Item, file_requests, items, records},
    time_scale,
};

/// Time for a flush (1 s) and the records' hand-over to land in the files.
const SETTLE: Duration = Duration::from_millis(2500);

const REFUSED: usize = 3;
const DATAGRAMS: usize = 5;
const DROPPED_PORT: u16 = 7000;

fn config(dir: &std::path::Path, transport: &str) -> String {
    let receiver = format!(r#"interfaces: ["{}"], flush_interval: 1s, event_transport: {transport}"#, VethPair::A_IF);
    ebpf_logs_config(&receiver, dir)
}

fn attr<'a>(item: &'a Item, key: &str) -> &'a str {
    item.attributes.get(key).map_or("", String::as_str)
}

/// The attribute names of a kind of record: the schema the variants share.
fn names(records: &[&Item]) -> BTreeSet<String> {
    records.iter().flat_map(|r| r.attributes.keys().cloned()).collect()
}

/// `bpftool map show`.
fn bpf_maps() -> String {
    let output = Command::new("bpftool").args(["map", "show"]).output().expect("bpftool (cargo xtask setup)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// What one flowtel run on `transport` saw, and its log.
struct Seen {
    logs: Vec<Item>,
    output: String,
    ring_maps_while_running: Vec<String>,
}

fn run(transport: &str) -> Seen {
    let pair = VethPair::quiet("reach", false);
    pair.b.drop_udp_to_port(DROPPED_PORT);
    let dir = tempfile::tempdir().unwrap();
    let mut flowtel = Flowtel::start_in_netns(&config(dir.path(), transport), &pair.a.name);
    let ring_maps_while_running: Vec<String> = bpf_maps()
        .lines()
        .filter(|line| line.contains("ringbuf") && (line.contains("FLOW_EVENTS") || line.contains("KERNEL_EVENTS")))
        .map(str::to_owned)
        .collect();
    finish(pair.a.python(&format!(
        "import socket\n\
         for i in range({REFUSED}):\n  s=socket.socket()\n  try: s.connect(('{b}',9))\n\
         \x20 except ConnectionRefusedError: pass\n  s.close()\n\
         u=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         for i in range({DATAGRAMS}): u.sendto(b'x'*100,('{b}',{DROPPED_PORT}))\nprint(0)\n",
        b = VethPair::B_V4
    )));
    std::thread::sleep(SETTLE * time_scale());
    assert!(flowtel.child.stop().success(), "{}", flowtel.child.output());
    let output = flowtel.child.output();

    // Nothing of flowtel's is left in the kernel: programs, links, qdiscs, filters.
    assert_nothing_left(transport, &[(&pair.a, VethPair::A_IF)]);
    let logs = items(&file_requests(&dir.path().join("logs.jsonl")), "logs");
    Seen { logs, output, ring_maps_while_running }
}

#[test]
fn every_part_runs_through_the_variants_this_kernel_offers() {
    assert!(is_root(), "this privileged test needs root: run `cargo xtask test` as root");
    let tcx = kernel_at_least(6, 6);
    let drop_reasons = kernel_at_least(5, 17);
    let bpf_loop = kernel_at_least(5, 17);
    let mut schemas: Vec<(String, [BTreeSet<String>; 3])> = Vec::new();
    for transport in ["ring_buffer", "perf_array"] {
        let seen = run(transport);
        let what = |part: &str| format!("{transport}: {part}\n{}", seen.output);

        // Startup says which variant of each part runs, and why.
        let attach = if tcx { "TCX" } else { "a clsact qdisc" };
        assert!(seen.output.contains(&format!("Flow programs attach with {attach}")), "{}", what("attach variant"));
        let drop_program = if drop_reasons { "tp_btf/kfree_skb" } else { "tracepoint/skb/kfree_skb" };
        let drop_line = seen.output.lines().find(|line| line.contains("Watching packet drops")).unwrap_or_default();
        assert!(drop_line.contains(drop_program), "{}", what("drop program"));
        if !drop_reasons {
            assert!(seen.output.contains("no reason: this kernel's kfree_skb has none"), "{}", what("no reasons"));
        }
        let events = if transport == "ring_buffer" { "ring buffers" } else { "perf event arrays" };
        assert!(seen.output.contains(&format!("Kernel events arrive through {events}")), "{}", what("transport"));
        if !bpf_loop {
            assert!(seen.output.contains("needs bpf_loop, which this kernel lacks"), "{}", what("trace context off"));
        }
        // The perf variant creates no ring buffer at all (so it loads where there is none, before 5.8).
        if transport == "perf_array" {
            assert!(seen.ring_maps_while_running.is_empty(), "{:?}", seen.ring_maps_while_running);
        }

        // Flows: the datagrams sent from the first namespace, counted exactly.
        let flows = records(
            &seen.logs,
            "network.flow",
            &[
                ("destination.address", VethPair::B_V4),
                ("destination.port", "7000"),
                ("network.io.direction", "transmit"),
            ],
        );
        let packets: u64 = flows.iter().map(|r| attr(r, "flow.packets").parse::<u64>().unwrap_or(0)).sum();
        let all_flows: Vec<_> = records(&seen.logs, "network.flow", &[]).iter().map(|r| &r.attributes).collect();
        assert_eq!(packets, DATAGRAMS as u64, "{}\n{all_flows:#?}", what("flow packets"));

        // Drops: the firewall's, with its reason where the kernel gives one, and where.
        let drops = records(
            &seen.logs,
            "network.packet.drop",
            &[("destination.address", VethPair::B_V4), ("destination.port", "7000")],
        );
        assert_eq!(drops.len(), DATAGRAMS, "{}", what("drop records"));
        for drop in &drops {
            let reason = if drop_reasons { "NETFILTER_DROP" } else { "NOT_SPECIFIED" };
            assert_eq!(attr(drop, "network.drop.reason"), reason, "{}", what("drop reason"));
            assert!(!attr(drop, "network.drop.location").is_empty(), "{}", what("drop location"));
            assert_eq!(attr(drop, "network.interface.name"), VethPair::B_IF, "{}", what("drop interface"));
        }

        // TCP: the server side's reset to each refused connection, as the
        // client receives it and (6.10+, whose tracepoint fires without a
        // socket) as the server sends it.
        let resets = records(
            &seen.logs,
            "network.tcp.reset",
            &[("network.io.direction", "receive"), ("source.address", VethPair::B_V4), ("source.port", "9")],
        );
        assert_eq!(resets.len(), REFUSED, "{}", what("resets received"));
        if kernel_at_least(6, 10) {
            let sent = records(
                &seen.logs,
                "network.tcp.reset",
                &[("network.io.direction", "transmit"), ("source.address", VethPair::B_V4), ("source.port", "9")],
            );
            assert_eq!(sent.len(), REFUSED, "{}", what("resets sent"));
        }

        schemas.push((transport.to_owned(), [names(&flows), names(&drops), names(&resets)]));
    }
    // A pcap filter runs with bpf_loop: without it, startup stops saying so.
    if !bpf_loop {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), "auto").replace("flush_interval: 1s", "flush_interval: 1s, filter: udp");
        let path = dir.path().join("filter.yaml");
        std::fs::write(&path, config).unwrap();
        let output = Command::new(flowtel_bin())
            .arg("--config")
            .arg(&path)
            .env("METRICS_PORT", free_port().to_string())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stderr}");
        assert!(
            stderr.contains("filter: the kernel runs the filter with bpf_loop, which this kernel lacks"),
            "{stderr}"
        );
    }
    // Every variant's records have the same attributes.
    let (first, rest) = schemas.split_first().unwrap();
    for (transport, schema) in rest {
        assert_eq!(schema, &first.1, "{transport} and {} records differ in their attributes", first.0);
    }
}
