//! Privileged, real kernel, real nftables: with `allow_system_changes`, a
//! packet dropped by an nftables rule the test made names that rule's
//! table, chain and handle on its drop record, and flowtel's trace table
//! is gone after shutdown, and after flowtel is killed (5.12+). Without
//! it, flowtel changes nothing. Needs root and `cargo xtask setup`.

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use flowtel_tests::{
    Flowtel, ebpf_logs_config, kernel_at_least,
    netns::{Netns, VethPair, finish, is_root},
    otlp_json::{Item, file_requests, items, records},
    time_scale,
};

const DATAGRAMS: usize = 4;
const DROPPED_PORT: u16 = 7000;

fn config(dir: &std::path::Path, allow_system_changes: bool) -> String {
    let receiver = format!(
        r#"interfaces: ["{}"], flush_interval: 1s, allow_system_changes: {allow_system_changes}"#,
        VethPair::B_IF
    );
    ebpf_logs_config(&receiver, dir)
}

fn attr<'a>(item: &'a Item, key: &str) -> &'a str {
    item.attributes.get(key).map_or("", String::as_str)
}

/// `nft list tables` in `ns`.
fn tables(ns: &Netns) -> String {
    String::from_utf8_lossy(&ns.run(&["nft", "list", "tables"]).stdout).into_owned()
}

/// The handle of the test's drop rule (`nft -a` prints `# handle N`).
fn drop_rule_handle(ns: &Netns) -> String {
    let chain =
        String::from_utf8_lossy(&ns.run(&["nft", "-a", "list", "chain", "inet", "flowtel_test", "input"]).stdout)
            .into_owned();
    let line = chain.lines().find(|line| line.contains(&format!("dport {DROPPED_PORT} drop"))).unwrap_or_default();
    line.rsplit("# handle ").next().unwrap_or_default().trim().to_owned()
}

/// Runs flowtel in the firewalled namespace while datagrams to the dropped
/// port arrive; the drop records of those datagrams and flowtel's output.
fn run(pair: &VethPair, allow_system_changes: bool) -> (Vec<Item>, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut flowtel = Flowtel::start_in_netns(&config(dir.path(), allow_system_changes), &pair.b.name);
    let trace_table_while_running = tables(&pair.b).contains("flowtel_trace");
    assert_eq!(trace_table_while_running, allow_system_changes, "{}", tables(&pair.b));
    finish(pair.a.python(&format!(
        "import socket\nu=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         for i in range({DATAGRAMS}): u.sendto(b'x'*64,('{b}',{DROPPED_PORT}))\nprint(0)\n",
        b = VethPair::B_V4
    )));
    std::thread::sleep(Duration::from_millis(2500) * time_scale());
    assert!(flowtel.child.stop().success(), "{}", flowtel.child.output());
    let output = flowtel.child.output();
    assert!(!tables(&pair.b).contains("flowtel_trace"), "the trace table outlived flowtel: {}", tables(&pair.b));
    let logs = items(&file_requests(&dir.path().join("logs.jsonl")), "logs");
    let drops = records(&logs, "network.packet.drop", &[("destination.port", "7000")]);
    (drops.into_iter().cloned().collect(), output)
}

#[test]
fn drops_by_nftables_name_their_rule() {
    assert!(is_root(), "this privileged test needs root: run `cargo xtask test` as root");
    let pair = VethPair::quiet("nft", false);
    pair.b.drop_udp_to_port(DROPPED_PORT);
    let handle = drop_rule_handle(&pair.b);
    assert!(handle.parse::<u64>().is_ok(), "the rule's handle: {handle:?}");

    // Without allow_system_changes: today's reason and location, nothing of nftables.
    let (drops, _) = run(&pair, false);
    assert_eq!(drops.len(), DATAGRAMS);
    assert!(drops.iter().all(|d| !d.attributes.keys().any(|k| k.starts_with("network.netfilter."))), "{drops:#?}");

    let (drops, output) = run(&pair, true);
    assert!(output.contains("Drops by nftables name their rule"), "{output}");
    assert_eq!(drops.len(), DATAGRAMS, "{output}");
    for drop in &drops {
        let named = [
            "network.netfilter.family",
            "network.netfilter.table",
            "network.netfilter.chain",
            "network.netfilter.rule.handle",
            "network.netfilter.verdict",
        ]
        .map(|key| attr(drop, key));
        assert_eq!(named, ["inet", "flowtel_test", "input", handle.as_str(), "drop"], "{drop:#?}\n{output}");
        if kernel_at_least(5, 17) {
            assert_eq!(attr(drop, "network.drop.reason"), "NETFILTER_DROP");
        }
    }

    // Killed, flowtel cannot remove its table: from 5.12 the kernel does.
    if kernel_at_least(5, 12) {
        let dir = tempfile::tempdir().unwrap();
        let mut flowtel = Flowtel::start_in_netns(&config(dir.path(), true), &pair.b.name);
        assert!(tables(&pair.b).contains("flowtel_trace"));
        flowtel.child.kill();
        flowtel_tests::wait_for(Duration::from_secs(5), "the kernel to remove a killed flowtel's table", || {
            (!tables(&pair.b).contains("flowtel_trace")).then_some(())
        });
    }
}
