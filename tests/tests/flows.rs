//! Privileged, real kernel: flowtel's `ebpf` receiver watches a veth in a
//! network namespace this test creates; the test makes TCP, UDP and ICMP
//! traffic of known sizes and checks the exported `network.flow` records
//! against the interface's own counters and against what was sent. Needs
//! root (it creates namespaces and loads eBPF programs).
//!
//! One test function runs every scenario in turn, so that the kernel's
//! program and link listings checked after each shutdown are its alone.

#![allow(clippy::unwrap_used, missing_docs)]

use std::{collections::BTreeMap, process::Command, time::Duration};

use flowtel_tests::{
    Flowtel,
    netns::{Netns, VethPair, assert_nothing_left, finish, is_root},
    otlp_json::{Item, file_requests, items},
};

const TCP_BYTES: usize = 200_000;
const UDP_DATAGRAMS: usize = 100;
const UDP_PAYLOAD: usize = 200;
const PINGS: usize = 5;

struct Scenario {
    tc_attach: &'static str,
    event_transport: &'static str,
    sampling: u32,
}

/// A config with the `ebpf` receiver body `receiver` writing flows to `file`.
fn config_with(file: &std::path::Path, receiver: &str) -> String {
    format!(
        r#"
receivers:
  ebpf: {receiver}
exporters:
  file: {{path: "{file}"}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:${{METRICS_PORT}}"}}}}
  pipelines:
    logs: {{receivers: [ebpf], exporters: [file]}}
"#,
        file = file.display()
    )
}

fn config(file: &std::path::Path, scenario: &Scenario) -> String {
    config_with(
        file,
        &format!(
            "{{interfaces: [veth0], tc_attach: {}, event_transport: {}, sampling: {}, flush_interval: 1s}}",
            scenario.tc_attach, scenario.event_transport, scenario.sampling
        ),
    )
}

/// A one-connection TCP server in `ns` that prints how many bytes it read.
fn tcp_sink(ns: &Netns, family: &str, address: &str, port: u16) -> std::process::Child {
    ns.python(&format!(
        "import socket\ns=socket.socket(socket.{family});s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
         s.bind(('{address}',{port}));s.listen();c,_=s.accept();n=0\n\
         while True:\n  d=c.recv(65536)\n  if not d: break\n  n+=len(d)\nc.close();print(n)"
    ))
}

/// TCP of `TCP_BYTES` from a to b:5001, UDP datagrams to b:5002 (and
/// `udp6_to` over IPv6 when given), and pings.
fn make_traffic(pair: &VethPair, udp_datagrams: usize, udp6_to: Option<&str>) {
    let tcp_server = tcp_sink(&pair.b, "AF_INET", VethPair::B_V4, 5001);
    let udp_sink = pair.b.python(
        "import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(('10.77.0.2',5002))\n\
         s.settimeout(5)\ntry:\n  while True: s.recv(65536)\nexcept socket.timeout: pass",
    );
    std::thread::sleep(Duration::from_millis(500));
    finish(pair.a.python(&format!(
        "import socket\ns=socket.create_connection(('10.77.0.2',5001));s.sendall(b'x'*{TCP_BYTES})\n\
             s.shutdown(socket.SHUT_WR)\nwhile s.recv(65536): pass\ns.close()"
    )));
    assert_eq!(finish(tcp_server), TCP_BYTES.to_string());
    let udp6 = udp6_to.map_or(String::new(), |to| {
        format!(
            "u6=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)\n\
             for i in range({udp_datagrams}): u6.sendto(b'y'*{UDP_PAYLOAD},('{to}',5003)); time.sleep(0.0005)\n"
        )
    });
    finish(pair.a.python(
        &format!(
            "import socket,time\nu=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
             for i in range({udp_datagrams}): u.sendto(b'y'*{UDP_PAYLOAD},('10.77.0.2',5002)); time.sleep(0.0005)\n{udp6}"
        ),
    ));
    let ping = pair.a.run(&["ping", "-c", &PINGS.to_string(), "-i", "0.2", "-W", "2", VethPair::B_V4]);
    assert!(String::from_utf8_lossy(&ping.stdout).contains(&format!("{PINGS} received")));
    drop(udp_sink);
}

fn interface_counts(ns: &Netns) -> [u64; 4] {
    ["tx_packets", "rx_packets", "tx_bytes", "rx_bytes"].map(|stat| ns.interface_stat(VethPair::A_IF, stat))
}

fn flow_records(file: &std::path::Path) -> Vec<Item> {
    let requests = file_requests(file);
    // The receiver's drop and TCP parts report too; these tests are about flows.
    items(&requests, "logs").into_iter().filter(|r| r.event_name == "network.flow").collect()
}

fn num(item: &Item, key: &str) -> u64 {
    item.attributes.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Sums (packets, bytes) of the records matching `filter`.
fn sum(records: &[Item], filter: impl Fn(&Item) -> bool) -> (u64, u64) {
    records
        .iter()
        .filter(|r| filter(r))
        .fold((0, 0), |(p, b), r| (p + num(r, "flow.packets"), b + num(r, "flow.bytes")))
}

fn attr<'a>(item: &'a Item, key: &str) -> &'a str {
    item.attributes.get(key).map_or("", String::as_str)
}

fn exact_counts(scenario: &Scenario) {
    let pair = VethPair::quiet("flow", false);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flows.jsonl");
    let mut flowtel = Flowtel::start_in_netns(&config(&file, scenario), &pair.a.name);
    let before = interface_counts(&pair.a);
    make_traffic(&pair, UDP_DATAGRAMS, None);
    let after = interface_counts(&pair.a);
    assert!(flowtel.child.stop().success(), "{}", flowtel.child.output());
    let what = format!("{} + {}", scenario.tc_attach, scenario.event_transport);

    let records = flow_records(&file);
    assert!(records.iter().all(|r| r.name.is_empty() && r.scope_name == "flowtel.receiver.ebpf"));
    assert!(records.iter().all(|r| r.resource.get("service.name").map(String::as_str) == Some("flowtel")));
    let transmit = sum(&records, |r| attr(r, "network.io.direction") == "transmit");
    let receive = sum(&records, |r| attr(r, "network.io.direction") == "receive");
    assert_eq!(
        [transmit.0, receive.0, transmit.1, receive.1],
        [after[0] - before[0], after[1] - before[1], after[2] - before[2], after[3] - before[3]],
        "{what}: flow records [tx packets, rx packets, tx bytes, rx bytes] vs the interface's counters"
    );

    let udp = |r: &Item| attr(r, "network.transport") == "udp" && attr(r, "destination.port") == "5002";
    let udp_frame = (UDP_PAYLOAD + 8 + 20 + 14) as u64;
    assert_eq!(sum(&records, udp), (UDP_DATAGRAMS as u64, UDP_DATAGRAMS as u64 * udp_frame), "{what}: UDP flow");
    for r in records.iter().filter(|r| udp(r)) {
        assert_eq!(
            (attr(r, "source.address"), attr(r, "destination.address"), attr(r, "network.type")),
            (VethPair::A_V4, VethPair::B_V4, "ipv4"),
            "{what}"
        );
        assert_eq!(attr(r, "network.interface.name"), VethPair::A_IF);
    }

    let echo = |kind: &'static str| {
        move |r: &Item| attr(r, "network.transport") == "icmp" && attr(r, "network.icmp.type") == kind
    };
    assert_eq!(sum(&records, echo("8")), (PINGS as u64, PINGS as u64 * 98), "{what}: echo requests");
    assert_eq!(sum(&records, echo("0")), (PINGS as u64, PINGS as u64 * 98), "{what}: echo replies");

    let tcp_out = |r: &Item| attr(r, "network.transport") == "tcp" && attr(r, "destination.port") == "5001";
    let (_, tcp_bytes) = sum(&records, tcp_out);
    assert!(tcp_bytes > TCP_BYTES as u64, "{what}: TCP bytes {tcp_bytes} carry the {TCP_BYTES}-byte payload");
    let flags: Vec<&str> = records.iter().filter(|r| tcp_out(r)).map(|r| attr(r, "network.tcp.flags")).collect();
    assert!(flags.iter().any(|f| f.contains("SYN")) && flags.iter().any(|f| f.contains("FIN")), "{what}: {flags:?}");
    assert!(records.iter().any(|r| tcp_out(r) && attr(r, "flow.end_reason") == "fin"), "{what}: FIN ends the flow");
    assert!(records.iter().all(|r| attr(r, "flow.sampling_rate") == "1"));
    assert_nothing_left(&what, &[(&pair.a, VethPair::A_IF)]);
}

fn ipv6() {
    let pair = VethPair::quiet("flow6", true);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flows.jsonl");
    let scenario = Scenario { tc_attach: "auto", event_transport: "ring_buffer", sampling: 1 };
    let mut flowtel = Flowtel::start_in_netns(&config(&file, &scenario), &pair.a.name);
    make_traffic(&pair, UDP_DATAGRAMS, Some("fd77::2"));
    let tcp_server = tcp_sink(&pair.b, "AF_INET6", "fd77::2", 5004);
    std::thread::sleep(Duration::from_millis(300));
    finish(pair.a.python(&format!(
        "import socket\ns=socket.create_connection(('fd77::2',5004));s.sendall(b'z'*{TCP_BYTES})\n\
             s.shutdown(socket.SHUT_WR)\nwhile s.recv(65536): pass\ns.close()"
    )));
    assert_eq!(finish(tcp_server), TCP_BYTES.to_string());
    let ping = pair.a.run(&["ping", "-6", "-c", &PINGS.to_string(), "-i", "0.2", "-W", "2", "fd77::2"]);
    assert!(String::from_utf8_lossy(&ping.stdout).contains(&format!("{PINGS} received")));
    assert!(flowtel.child.stop().success());
    let records = flow_records(&file);
    let echo6 = |kind: &'static str| {
        move |r: &Item| attr(r, "network.transport") == "icmpv6" && attr(r, "network.icmp.type") == kind
    };
    let echo_frame = (56 + 8 + 40 + 14) as u64;
    assert_eq!(sum(&records, echo6("128")), (PINGS as u64, PINGS as u64 * echo_frame), "ICMPv6 echo requests");
    assert_eq!(sum(&records, echo6("129")), (PINGS as u64, PINGS as u64 * echo_frame), "ICMPv6 echo replies");
    let tcp6 = |r: &Item| attr(r, "network.type") == "ipv6" && attr(r, "destination.port") == "5004";
    let tcp6_records: Vec<&Item> = records.iter().filter(|r| tcp6(r)).collect();
    assert!(sum(&records, tcp6).1 > TCP_BYTES as u64, "IPv6 TCP carries the payload");
    assert!(
        tcp6_records
            .iter()
            .all(|r| attr(r, "source.address") == "fd77::1" && attr(r, "network.io.direction") == "transmit")
    );
    assert!(tcp6_records.iter().any(|r| attr(r, "flow.end_reason") == "fin"));
    let udp6 = |r: &Item| attr(r, "network.type") == "ipv6" && attr(r, "destination.port") == "5003";
    let frame = (UDP_PAYLOAD + 8 + 40 + 14) as u64;
    assert_eq!(sum(&records, udp6), (UDP_DATAGRAMS as u64, UDP_DATAGRAMS as u64 * frame), "IPv6 UDP flow");
    let record = records.iter().find(|r| udp6(r)).unwrap();
    assert_eq!((attr(record, "source.address"), attr(record, "destination.address")), ("fd77::1", "fd77::2"));
}

fn sampling() {
    const N: u32 = 4;
    const DATAGRAMS: usize = 4000;
    let pair = VethPair::quiet("samp", false);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flows.jsonl");
    let scenario = Scenario { tc_attach: "auto", event_transport: "ring_buffer", sampling: N };
    let mut flowtel = Flowtel::start_in_netns(&config(&file, &scenario), &pair.a.name);
    make_traffic(&pair, DATAGRAMS, None);
    assert!(flowtel.child.stop().success());
    let records = flow_records(&file);
    let udp = |r: &Item| attr(r, "network.transport") == "udp" && attr(r, "destination.port") == "5002";
    assert!(records.iter().filter(|r| udp(r)).all(|r| attr(r, "flow.sampling_rate") == N.to_string()));
    let (sampled, _) = sum(&records, udp);
    let estimate = sampled * u64::from(N);
    // Binomial(4000, 1/4): the standard deviation of the estimate is ~110
    // packets, so ±15% (600) is more than five of them.
    let truth = DATAGRAMS as u64;
    assert!(estimate.abs_diff(truth) <= truth * 15 / 100, "scaled estimate {estimate} vs {truth} sent");
}

/// Seconds since midnight UTC of a time.
fn seconds_of_day(time: std::time::SystemTime) -> f64 {
    time.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64() % 86_400.0
}

/// Seconds since midnight UTC of a flowtel log line (`2026-12-04T10:10:57.399302Z …`).
fn logged_seconds_of_day(line: &str) -> f64 {
    let clock = line.split(['T', 'Z']).nth(1).unwrap();
    clock.split(':').fold(0.0, |total, part| total * 60.0 + part.parse::<f64>().unwrap())
}

/// Interfaces that appear after startup are watched; ones that go away are
/// released. The interface list is polled only hourly here, so what attaches
/// and detaches is the kernel's rtnetlink link messages.
fn hot_plug() {
    let pair = VethPair::quiet("plug", false);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flows.jsonl");
    let config = config_with(&file, r#"{interfaces: ["vplug*"], interface_poll_interval: 1h, flush_interval: 1s}"#);
    let mut flowtel = Flowtel::start_in_netns(&config, &pair.a.name);
    assert!(flowtel.child.output().contains("No interface matches yet"));
    flowtel_tests::netns::ip(&[
        "link",
        "add",
        "vplug0",
        "netns",
        &pair.a.name,
        "type",
        "veth",
        "peer",
        "name",
        "vplug1",
        "netns",
        &pair.b.name,
    ]);
    pair.a.run(&["ip", "addr", "add", "10.78.0.1/24", "dev", "vplug0"]);
    pair.b.run(&["ip", "addr", "add", "10.78.0.2/24", "dev", "vplug1"]);
    pair.b.run(&["ip", "link", "set", "vplug1", "up"]);
    // Watched interfaces are those that are up: setting it up is its appearance.
    pair.a.run(&["ip", "link", "set", "vplug0", "up"]);
    let up = seconds_of_day(std::time::SystemTime::now());
    let attached = "Attached flow programs. interface=vplug0";
    let line =
        flowtel_tests::wait_for(Duration::from_secs(5), "flowtel to attach to vplug0 on its link message", || {
            flowtel.child.output().lines().find(|line| line.contains(attached)).map(str::to_owned)
        });
    let latency_ms = ((logged_seconds_of_day(&line) - up + 86_400.0) % 86_400.0) * 1000.0;
    // The list is read hourly here: only the link message can have been this quick.
    assert!(latency_ms < 2000.0, "vplug0 attached {latency_ms:.1} ms after it came up (by flowtel's log)");
    let ping = pair.a.run(&["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.78.0.2"]);
    assert!(String::from_utf8_lossy(&ping.stdout).contains("3 received"));
    pair.a.run(&["ip", "link", "del", "vplug0"]);
    flowtel_tests::wait_for(Duration::from_secs(5), "flowtel to release vplug0 on its link message", || {
        flowtel
            .child
            .output()
            .contains("Interface gone or no longer matching; detaching. interface=vplug0")
            .then_some(())
    });
    flowtel.child.assert_running();
    assert!(flowtel.child.stop().success(), "{}", flowtel.child.output());
    let records = flow_records(&file);
    let echo = |r: &Item| {
        attr(r, "network.interface.name") == "vplug0"
            && attr(r, "network.icmp.type") == "8"
            && attr(r, "destination.address") == "10.78.0.2"
    };
    assert_eq!(sum(&records, echo).0, 3, "echo requests on the hot-plugged interface");
}

#[test]
fn without_privileges_flowtel_exits_naming_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    // The unprivileged user must be able to read the config.
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = dir.path().join("otel-config.yaml");
    let port = flowtel_tests::free_port();
    std::fs::write(
        &path,
        format!(
            "receivers: {{ebpf: {{}}}}\nexporters: {{debug: {{}}}}\nservice:\n  telemetry: {{metrics: {{address: \"127.0.0.1:{port}\"}}}}\n  pipelines: {{logs: {{receivers: [ebpf], exporters: [debug]}}}}\n"
        ),
    )
    .unwrap();
    let run = |setpriv: &[&str]| {
        let output = Command::new("setpriv")
            .args(setpriv)
            .arg(flowtel_tests::flowtel_bin())
            .arg("--config")
            .arg(&path)
            .output()
            .expect("setpriv (util-linux)");
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    // An unprivileged user: every capability the kernel programs need is named.
    let stderr = run(&["--reuid=65534", "--regid=65534", "--clear-groups"]);
    assert!(stderr.contains("receivers::ebpf: flowtel lacks CAP_BPF"), "{stderr}");
    assert!(stderr.contains("CAP_NET_ADMIN") && stderr.contains("CAP_PERFMON"), "{stderr}");
    // Root with all but CAP_NET_ADMIN: that one, and what it is for.
    let caps = "-all,+bpf,+perfmon,+dac_override";
    let stderr =
        run(&[&format!("--inh-caps={caps}"), &format!("--ambient-caps={caps}"), &format!("--bounding-set={caps}")]);
    assert!(
        stderr.contains("flowtel lacks CAP_NET_ADMIN (to attach the flow programs to interfaces)")
            && !stderr.contains("CAP_BPF"),
        "{stderr}"
    );
}

#[test]
fn flows_are_counted_exactly_in_every_attach_mode_and_transport() {
    assert!(is_root(), "this privileged test needs root: run `cargo xtask test` as root");
    let mut seen = BTreeMap::new();
    for scenario in [
        Scenario { tc_attach: "tcx", event_transport: "ring_buffer", sampling: 1 },
        Scenario { tc_attach: "netlink", event_transport: "perf_array", sampling: 1 },
    ] {
        exact_counts(&scenario);
        seen.insert(scenario.tc_attach, scenario.event_transport);
    }
    ipv6();
    sampling();
    hot_plug();
    killed_flowtels_classifiers_are_replaced();
    assert_eq!(seen.len(), 2);
}

/// flowtel's classifiers in `interface`'s clsact qdisc, both directions.
fn flowtel_filters(ns: &Netns, interface: &str) -> usize {
    ["ingress", "egress"]
        .iter()
        .map(|direction| {
            let output = ns.exec(&["tc", "filter", "show", "dev", interface, direction]);
            String::from_utf8_lossy(&output.stdout).lines().filter(|line| line.contains("flowtel")).count()
        })
        .sum()
}

/// A flowtel killed with SIGKILL leaves its netlink (clsact) classifiers
/// behind; the next one replaces them instead of running beside them, and a
/// clean stop leaves nothing.
fn killed_flowtels_classifiers_are_replaced() {
    let pair = VethPair::quiet("kill", false);
    let dir = tempfile::tempdir().unwrap();
    let scenario = Scenario { tc_attach: "netlink", event_transport: "ring_buffer", sampling: 1 };
    let config = config(&dir.path().join("flows.jsonl"), &scenario);
    let mut first = Flowtel::start_in_netns(&config, &pair.a.name);
    assert_eq!(flowtel_filters(&pair.a, VethPair::A_IF), 2);
    first.child.kill();
    assert_eq!(flowtel_filters(&pair.a, VethPair::A_IF), 2, "SIGKILL leaves the classifiers");
    let mut second = Flowtel::start_in_netns(&config, &pair.a.name);
    assert_eq!(flowtel_filters(&pair.a, VethPair::A_IF), 2, "replaced, not doubled");
    assert!(second.child.output().contains("Removed a flowtel program left attached"));
    assert!(second.child.stop().success());
    assert_eq!(flowtel_filters(&pair.a, VethPair::A_IF), 0, "a clean stop leaves nothing");
}
