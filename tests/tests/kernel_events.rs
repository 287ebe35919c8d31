//! Privileged, real kernel: packet drops with the kernel's reasons, TCP
//! retransmits, resets, RTT, handshakes and connections.
//!
//! flowtel runs in the host namespace (tracepoints see every namespace);
//! the test makes traffic between network namespaces it creates and picks
//! its own out of the records by address, port and interface. One test
//! function runs the scenarios in turn so each flowtel run is alone in the
//! kernel. Needs root.

#![allow(clippy::unwrap_used, missing_docs)]

use std::{path::Path, process::Command, time::Duration};

use flowtel_core::histogram::explicit_quantile;
use flowtel_tests::{
    Flowtel, flowtel_bin,
    netns::{DelayLine, Netns, VethPair, assert_nothing_left, finish, is_root},
    otlp_json::{Item, file_requests, items, number, records},
};

/// Time for a flush (1 s) and the records' hand-over to land in the files.
const SETTLE: Duration = Duration::from_millis(2500);

/// One flowtel run writing logs and metrics to files.
struct Run {
    flowtel: Flowtel,
    dir: tempfile::TempDir,
}

/// What a run exported.
struct Exported {
    logs: Vec<Item>,
    metrics: Vec<Item>,
}

impl Run {
    /// flowtel with the `ebpf` receiver settings `receiver` (YAML flow mapping entries).
    fn start(receiver: &str) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let flowtel = Flowtel::start(&config(dir.path(), receiver));
        Run { flowtel, dir }
    }

    fn stop(mut self) -> Exported {
        assert!(self.flowtel.child.stop().success(), "{}", self.flowtel.child.output());
        let read = |name: &str, signal: &str| items(&file_requests(&self.dir.path().join(name)), signal);
        Exported { logs: read("logs.jsonl", "logs"), metrics: read("metrics.jsonl", "metrics") }
    }
}

fn config(dir: &Path, receiver: &str) -> String {
    format!(
        r#"
receivers:
  ebpf: {{interfaces: ["flowtel-none"], flush_interval: 1s, {receiver}}}
exporters:
  file/logs: {{path: "{dir}/logs.jsonl"}}
  file/metrics: {{path: "{dir}/metrics.jsonl"}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:${{METRICS_PORT}}"}}}}
  pipelines:
    logs: {{receivers: [ebpf], exporters: [file/logs]}}
    metrics: {{receivers: [ebpf], exporters: [file/metrics]}}
"#,
        dir = dir.display()
    )
}

fn attr<'a>(item: &'a Item, key: &str) -> &'a str {
    item.attributes.get(key).map_or("", String::as_str)
}

fn seconds(item: &Item, key: &str) -> f64 {
    attr(item, key).parse().unwrap_or(f64::NAN)
}

/// The last exported data point of `name` with exactly the attributes `matching` (among others).
fn last_point<'a>(metrics: &'a [Item], name: &str, matching: &[(&str, &str)]) -> Option<&'a Item> {
    metrics.iter().rev().find(|m| m.name == name && matching.iter().all(|(k, v)| attr(m, k) == *v))
}

fn last_sum(metrics: &[Item], name: &str, matching: &[(&str, &str)]) -> u64 {
    last_point(metrics, name, matching).map_or(0, |p| number(&p.raw["asInt"]))
}

/// The `q` quantile of the observations of a histogram point above `floor` seconds.
fn quantile_above(point: &Item, floor: f64, q: f64) -> (u64, Option<f64>) {
    let bounds: Vec<f64> =
        point.raw["explicitBounds"].as_array().unwrap().iter().map(|b| b.as_f64().unwrap()).collect();
    let mut counts: Vec<u64> = point.raw["bucketCounts"].as_array().unwrap().iter().map(number).collect();
    for (index, count) in counts.iter_mut().enumerate() {
        let upper = bounds.get(index).copied().unwrap_or(f64::INFINITY);
        if upper <= floor {
            *count = 0;
        }
    }
    (counts.iter().sum(), explicit_quantile(&bounds, &counts, q, None, None))
}

/// From a: `v4` refused IPv4 connections and `v6` refused IPv6
/// connections to b's port 9, then `udp` datagrams to b's port 7000.
/// Prints the client's pid.
fn refused_and_udp(pair: &VethPair, v4: usize, v6: usize, udp: usize) -> u32 {
    refused_and_udp_from(pair, v4, v6, udp, 7000)
}

/// From a: `v4` refused connections to b's port 9, then `udp` datagrams to b's `port`.
fn refused_and_udp_to(pair: &VethPair, v4: usize, udp: usize, port: u16) {
    refused_and_udp_from(pair, v4, 0, udp, port);
}

fn refused_and_udp_from(pair: &VethPair, v4: usize, v6: usize, udp: usize, port: u16) -> u32 {
    let out = finish(pair.a.python(&format!(
        "import os,socket\nprint(os.getpid())\n\
         targets=[(socket.AF_INET,('10.77.0.2',9))]*{v4}+[(socket.AF_INET6,('fd77::2',9))]*{v6}\n\
         for family,address in targets:\n  s=socket.socket(family)\n  try: s.connect(address)\n\
         \x20 except ConnectionRefusedError: pass\n  s.close()\n\
         u=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         for i in range({udp}): u.sendto(b'x'*100,('10.77.0.2',{port}))\n"
    )));
    out.parse().unwrap()
}

/// The frames of a drop record's `network.drop.stack`.
fn stack(record: &Item) -> Vec<String> {
    let attributes = record.raw["attributes"].as_array().unwrap();
    let Some(stack) = attributes.iter().find(|kv| kv["key"] == "network.drop.stack") else { return Vec::new() };
    let values = stack["value"]["arrayValue"]["values"].as_array().unwrap();
    values.iter().map(|v| v["stringValue"].as_str().unwrap().to_owned()).collect()
}

fn refused_connections_and_firewall_drops(tracepoint: &str, transport: &str, stack_trace: bool) {
    let what = format!("{tracepoint} + {transport}");
    let pair = VethPair::quiet("kd", true);
    pair.b.drop_udp_to_port(7000);
    let run = Run::start(&format!(
        "event_transport: {transport}, drops: {{tracepoint: {tracepoint}, stack_trace: {stack_trace}}}"
    ));
    let pid = refused_and_udp(&pair, 3, 2, 5);
    std::thread::sleep(SETTLE);
    let out = run.stop();
    let b_inode = pair.b.inode().to_string();

    // Each refused SYN is dropped by the server side's TCP with NO_SOCKET.
    let refused_v4 = records(
        &out.logs,
        "network.packet.drop",
        &[("network.drop.reason", "NO_SOCKET"), ("destination.address", "10.77.0.2"), ("destination.port", "9")],
    );
    assert_eq!(refused_v4.len(), 3, "{what}: IPv4 NO_SOCKET drops");
    for r in &refused_v4 {
        assert_eq!(
            (attr(r, "source.address"), attr(r, "network.transport"), attr(r, "network.type")),
            ("10.77.0.1", "tcp", "ipv4"),
            "{what}"
        );
        assert!(attr(r, "source.port").parse::<u16>().unwrap() > 1024, "{what}: the client's port");
        assert_eq!(attr(r, "network.drop.location"), "tcp_v4_rcv", "{what}");
        assert_eq!(attr(r, "network.interface.name"), VethPair::B_IF, "{what}");
        assert_eq!(attr(r, "linux.netns.inode"), b_inode, "{what}: the server's namespace");
        assert_eq!(r.severity, "WARN");
        let frames = stack(r);
        if stack_trace {
            // Innermost first, from the freeing function out; none of the tracing machinery.
            assert!(frames.iter().any(|f| f.starts_with("tcp_v4_rcv+0x")), "{what}: {frames:?}");
            assert!(frames.iter().any(|f| f.starts_with("ip_local_deliver")), "{what}: {frames:?}");
            assert!(!frames[0].starts_with("bpf_") && !frames[0].starts_with("perf_"), "{what}: {frames:?}");
        } else {
            assert!(frames.is_empty());
        }
    }
    let refused_v6 = records(
        &out.logs,
        "network.packet.drop",
        &[("network.drop.reason", "NO_SOCKET"), ("destination.address", "fd77::2"), ("destination.port", "9")],
    );
    assert_eq!(refused_v6.len(), 2, "{what}: IPv6 NO_SOCKET drops");
    assert!(refused_v6.iter().all(|r| attr(r, "source.address") == "fd77::1" && attr(r, "network.type") == "ipv6"));

    // The firewall's drops, with the UDP tuple.
    let filtered = records(
        &out.logs,
        "network.packet.drop",
        &[("network.drop.reason", "NETFILTER_DROP"), ("destination.port", "7000"), ("network.transport", "udp")],
    );
    assert_eq!(filtered.len(), 5, "{what}: NETFILTER_DROP records");
    assert!(
        filtered.iter().all(|r| attr(r, "source.address") == "10.77.0.1" && attr(r, "network.packet.length") == "128")
    );

    // Counted exactly, per reason and interface.
    let drops = |reason| {
        last_sum(
            &out.metrics,
            "network.packet.drops",
            &[("network.drop.reason", reason), ("network.interface.name", VethPair::B_IF)],
        )
    };
    assert_eq!(drops("NO_SOCKET"), 5, "{what}: network.packet.drops NO_SOCKET on veth1");
    assert_eq!(drops("NETFILTER_DROP"), 5, "{what}: network.packet.drops NETFILTER_DROP on veth1");

    // The server's stack answers each refused SYN with a reset the client receives.
    for (direction, expected) in [("transmit", 5), ("receive", 5)] {
        let resets =
            records(&out.logs, "network.tcp.reset", &[("network.io.direction", direction), ("source.port", "9")]);
        let ours: Vec<_> =
            resets.iter().filter(|r| ["10.77.0.2", "fd77::2"].contains(&attr(r, "source.address"))).collect();
        assert_eq!(ours.len(), expected, "{what}: {direction} resets from port 9");
    }
    let sent = records(
        &out.logs,
        "network.tcp.reset",
        &[("network.io.direction", "transmit"), ("source.address", "10.77.0.2")],
    );
    assert!(
        sent.iter()
            .all(|r| attr(r, "network.tcp.reset.reason") == "NO_SOCKET" && attr(r, "linux.netns.inode") == b_inode)
    );
    let received = records(
        &out.logs,
        "network.tcp.reset",
        &[("network.io.direction", "receive"), ("destination.address", "10.77.0.1")],
    );
    assert!(received.iter().all(|r| attr(r, "linux.netns.inode") == pair.a.inode().to_string()));

    // The refused connections end in SYN_SENT, with the process that tried.
    let attempts =
        records(&out.logs, "network.tcp.connection", &[("destination.port", "9"), ("network.tcp.side", "client")]);
    let ours: Vec<_> = attempts.iter().filter(|r| attr(r, "process.pid") == pid.to_string()).collect();
    assert_eq!(ours.len(), 5, "{what}: connection records of pid {pid}");
    for r in ours {
        assert_eq!((attr(r, "process.executable.name"), attr(r, "network.tcp.state")), ("python3", "SYN_SENT"));
        assert!(!r.attributes.contains_key("network.tcp.handshake.duration"));
    }
    assert_nothing_left(&what, &[]);
}

fn retransmits_match_the_kernels_count() {
    // 5% of what the client sends is lost; a TUN device carries one segment per packet.
    let line = DelayLine::create("kr", Duration::ZERO, 0.05);
    let run = Run::start("drops: {enabled: false}");
    let server = line.b.python(
        "import socket\ns=socket.socket();s.bind(('10.78.0.2',5001));s.listen();c,_=s.accept();n=0\n\
         while n<1000000: n+=len(c.recv(65536))\nc.sendall(b'done')\n\
         c.settimeout(5)\n\
         try:\n  while c.recv(65536): pass\nexcept OSError: pass\n",
    );
    std::thread::sleep(Duration::from_millis(300));
    // After the server confirmed every byte, the client reads the kernel's
    // own total (`ss`: retrans:<now>/<total>) and closes with a reset (which
    // the line can lose too: the server waits for it 5 s at most).
    let client = finish(line.a.python(
        "import socket,struct,subprocess\ns=socket.create_connection(('10.78.0.2',5001))\n\
         s.sendall(b'x'*1000000)\nassert s.recv(4)==b'done'\n\
         info=subprocess.run(['ss','-tinH','dst','10.78.0.2:5001'],capture_output=True,text=True).stdout\n\
         total=0\nfor word in info.split():\n  if word.startswith('retrans:'): total=int(word.split('/')[1])\n\
         print(s.getsockname()[1],total)\n\
         s.setsockopt(socket.SOL_SOCKET,socket.SO_LINGER,struct.pack('ii',1,0));s.close()\n",
    ));
    finish(server);
    std::thread::sleep(SETTLE);
    let out = run.stop();
    let (port, total) = client.split_once(' ').unwrap();
    let total: usize = total.parse().unwrap();
    assert!(total > 0, "5% loss over a megabyte retransmits something");
    let retransmits = records(
        &out.logs,
        "network.tcp.retransmit",
        &[("source.address", DelayLine::A_V4), ("source.port", port), ("destination.port", "5001")],
    );
    // The kernel counts segments; a retransmitted packet may carry several (GSO).
    let segments: usize =
        retransmits.iter().map(|r| attr(r, "network.tcp.retransmit.segments").parse::<usize>().unwrap()).sum();
    assert_eq!(
        segments, total,
        "retransmitted segments in the records vs the kernel's total_retrans of the connection"
    );
    assert!(retransmits.len() <= total);
    assert!(
        retransmits.iter().all(|r| attr(r, "network.transport") == "tcp" && !attr(r, "network.tcp.state").is_empty())
    );
    assert!(last_sum(&out.metrics, "network.tcp.retransmits", &[]) >= total as u64);
}

fn latency_handshakes_and_processes() {
    const CONNECTIONS: usize = 10;
    // What the client sends arrives 20 ms later; the server's answers at once.
    let line = DelayLine::create("kl", Duration::from_millis(20), 0.0);
    let run = Run::start("drops: {enabled: false}");
    let server = line.b.python(&format!(
        "import socket\ns=socket.socket();s.bind(('10.78.0.2',5001));s.listen(16)\n\
         for i in range({CONNECTIONS}+1):\n  c,_=s.accept();d=b''\n\
         \x20 try:\n    while len(d)<1000:\n      x=c.recv(65536)\n      if not x: break\n      d+=x\n\
         \x20 except ConnectionResetError: pass\n\
         \x20 c.sendall(d) if len(d)==1000 else None\n  c.close()\n"
    ));
    std::thread::sleep(Duration::from_millis(300));
    let pid: u32 = finish(line.a.python(&format!(
        "import os,socket,struct\nprint(os.getpid())\n\
         for i in range({CONNECTIONS}):\n  s=socket.create_connection(('10.78.0.2',5001));s.sendall(b'y'*1000)\n\
         \x20 d=b''\n  while len(d)<1000: d+=s.recv(65536)\n  s.close()\n\
         s=socket.create_connection(('10.78.0.2',5001))\n\
         s.setsockopt(socket.SOL_SOCKET,socket.SO_LINGER,struct.pack('ii',1,0));s.close()\n"
    )))
    .parse()
    .unwrap();
    finish(server);
    std::thread::sleep(SETTLE);
    let out = run.stop();

    // Each connection: the connecting process, a 20 ms handshake and RTT.
    let clients = records(
        &out.logs,
        "network.tcp.connection",
        &[("network.tcp.side", "client"), ("destination.address", DelayLine::B_V4), ("destination.port", "5001")],
    );
    // 1000 bytes each way; the kernel's counters also count the SYN and FIN
    // sequence numbers that were acknowledged before the socket closed.
    let exchanged = |r: &&&Item, key| (1000..=1002).contains(&attr(r, key).parse::<u32>().unwrap_or(0));
    let complete: Vec<_> = clients.iter().filter(|r| exchanged(r, "network.tcp.bytes_received")).collect();
    assert_eq!(complete.len(), CONNECTIONS, "client connection records");
    for r in &complete {
        assert_eq!((attr(r, "process.pid"), attr(r, "process.executable.name")), (pid.to_string().as_str(), "python3"));
        assert_eq!(attr(r, "source.address"), DelayLine::A_V4);
        let handshake = seconds(r, "network.tcp.handshake.duration");
        assert!((0.019..0.030).contains(&handshake), "client handshake {handshake} s for a 20 ms delay");
        let srtt = seconds(r, "network.tcp.srtt");
        assert!((0.015..0.030).contains(&srtt), "srtt {srtt} s for a 20 ms delay");
        assert!(seconds(r, "network.tcp.connection.duration") >= 0.040, "handshake plus one exchange");
        assert!(exchanged(r, "network.tcp.bytes_acked"), "{:?}", r.attributes);
    }
    let servers = records(
        &out.logs,
        "network.tcp.connection",
        &[("network.tcp.side", "server"), ("source.address", DelayLine::A_V4), ("destination.port", "5001")],
    );
    let served: Vec<_> = servers.iter().filter(|r| exchanged(r, "network.tcp.bytes_received")).collect();
    assert_eq!(served.len(), CONNECTIONS, "server connection records, source = the client");
    for r in &served {
        let handshake = seconds(r, "network.tcp.handshake.duration");
        assert!((0.019..0.030).contains(&handshake), "server handshake {handshake} s for a 20 ms delay");
        assert!(!r.attributes.contains_key("process.pid"));
    }

    // The histograms hold the same: every delayed handshake and RTT sample
    // lands near 20 ms (observations under 10 ms are the machine's others).
    for (name, side) in [
        ("network.tcp.handshake.duration", Some("client")),
        ("network.tcp.handshake.duration", Some("server")),
        ("network.tcp.rtt", None),
    ] {
        let matching: Vec<(&str, &str)> = side.map(|s| ("network.tcp.side", s)).into_iter().collect();
        let point = last_point(&out.metrics, name, &matching).unwrap_or_else(|| panic!("no {name}"));
        let (count, p50) = quantile_above(point, 0.010, 0.5);
        let least = if side.is_some() { CONNECTIONS as u64 } else { 2 * CONNECTIONS as u64 };
        assert!(count >= least, "{name} {side:?}: {count} observations above 10 ms");
        let p50 = p50.unwrap();
        assert!((0.018..0.026).contains(&p50), "{name} {side:?}: p50 {p50} s for a 20 ms delay (±1 bucket)");
    }

    // The abortive close: a reset sent by the client and received by the server.
    let aborted = |direction| {
        records(
            &out.logs,
            "network.tcp.reset",
            &[("network.io.direction", direction), ("source.address", DelayLine::A_V4), ("destination.port", "5001")],
        )
        .len()
    };
    assert_eq!((aborted("transmit"), aborted("receive")), (1, 1), "the abortive close's reset, both ends");
}

/// The sum of the records' `sampling.adjusted_count` (what they stand for), and the highest.
fn adjusted(records: &[&Item]) -> (u64, u64) {
    let counts: Vec<u64> = records.iter().map(|r| attr(r, "sampling.adjusted_count").parse().unwrap()).collect();
    (counts.iter().sum(), counts.iter().copied().max().unwrap_or(0))
}

fn rate_limit_and_excluded_reasons() {
    let pair = VethPair::quiet("kx", false);
    pair.b.drop_udp_to_port(7000);
    let run = Run::start("tcp: {enabled: false}, drops: {max_events_per_second: 5, exclude_reasons: [NO_SOCKET]}");
    refused_and_udp(&pair, 3, 0, 200);
    std::thread::sleep(SETTLE);
    let held_back = run.flowtel.metric("flowtel_ebpf_drop_events_rate_limited_total", &[]);
    let out = run.stop();
    let filtered = records(
        &out.logs,
        "network.packet.drop",
        &[("network.drop.reason", "NETFILTER_DROP"), ("destination.port", "7000")],
    );
    // 5 at each rate: 1, 2, 4, … 64 covers 200 drops.
    assert!((1..=40).contains(&filtered.len()), "{} records at 5 per second and rate", filtered.len());
    let (stood_for, highest) = adjusted(&filtered);
    assert!(highest > 1, "the rate rose past the budget");
    assert!((200..200 + 2 * highest).contains(&stood_for), "the records stand for {stood_for} of the 200 drops");
    let counted = last_sum(
        &out.metrics,
        "network.packet.drops",
        &[("network.drop.reason", "NETFILTER_DROP"), ("network.interface.name", VethPair::B_IF)],
    );
    assert_eq!(counted, 200, "every drop is counted, sent or not");
    assert!(held_back >= (200 - filtered.len()) as f64, "held back {held_back}");
    assert!(
        records(&out.logs, "network.packet.drop", &[("network.drop.reason", "NO_SOCKET"), ("destination.port", "9")])
            .is_empty()
    );
    assert!(
        last_point(
            &out.metrics,
            "network.packet.drops",
            &[("network.drop.reason", "NO_SOCKET"), ("network.interface.name", VethPair::B_IF)]
        )
        .is_none()
    );
}

/// A counter of `/proc/net/snmp` in `ns` (`Udp` `NoPorts`, `Tcp` `OutRsts`).
fn snmp(ns: &Netns, protocol: &str, name: &str) -> u64 {
    let text = String::from_utf8_lossy(&ns.run(&["cat", "/proc/net/snmp"]).stdout).into_owned();
    let mut lines = text.lines().filter(|l| l.starts_with(&format!("{protocol}:")));
    let (names, values) = (lines.next().unwrap(), lines.next().unwrap());
    let index = names.split_whitespace().position(|n| n == name).unwrap();
    values.split_whitespace().nth(index).unwrap().parse().unwrap()
}

/// A flood of datagrams to a closed port and of refused connections, well
/// past the budgets: the records thin out 1 in N, each saying its N, and
/// scaled by it they count what the namespace's own counters saw; after a
/// quiet second, every event is sent again.
fn a_flood_is_summarised_not_lost() {
    const DATAGRAMS: usize = 20_000;
    const CONNECTIONS: usize = 3_000;
    let pair = VethPair::quiet("kf", false);
    let run = Run::start("drops: {max_events_per_second: 100}, tcp: {max_events_per_second: 100}");
    let (no_ports, out_rsts) = (snmp(&pair.b, "Udp", "NoPorts"), snmp(&pair.b, "Tcp", "OutRsts"));
    refused_and_udp_to(&pair, CONNECTIONS, DATAGRAMS, 7001);
    let (no_ports, out_rsts) = (snmp(&pair.b, "Udp", "NoPorts") - no_ports, snmp(&pair.b, "Tcp", "OutRsts") - out_rsts);
    assert_eq!(no_ports as usize, DATAGRAMS);
    assert!(out_rsts as usize >= CONNECTIONS, "each refused connection was answered by a reset");
    // Calm again: a second without events puts the rate back at 1.
    std::thread::sleep(Duration::from_millis(2500));
    refused_and_udp_to(&pair, 2, 0, 7001);
    std::thread::sleep(SETTLE);
    let sampled_out = run.flowtel.metric("flowtel_ebpf_tcp_events_sampled_out_total", &[]);
    let lost = run.flowtel.metric("flowtel_ebpf_kernel_events_lost_total", &[]);
    let out = run.stop();

    let netns = pair.b.inode().to_string();
    let datagrams =
        records(&out.logs, "network.packet.drop", &[("destination.port", "7001"), ("linux.netns.inode", &netns)]);
    let (stood_for, highest) = adjusted(&datagrams);
    assert!(highest >= 8 && datagrams.len() < DATAGRAMS / 4, "{} drop records, rate up to {highest}", datagrams.len());
    let tolerance = no_ports / 20;
    assert!(
        stood_for.abs_diff(no_ports) <= tolerance,
        "drop records stand for {stood_for} datagrams; the namespace counted {no_ports} (±{tolerance})"
    );
    let resets: Vec<&Item> = records(&out.logs, "network.tcp.reset", &[("linux.netns.inode", &netns)])
        .into_iter()
        .filter(|r| attr(r, "network.io.direction") == "transmit")
        .collect();
    let (last_two, flood): (Vec<&Item>, Vec<&Item>) = {
        let mut sorted = resets.clone();
        sorted.sort_by_key(|r| r.raw["timeUnixNano"].as_str().unwrap_or_default().parse::<u64>().unwrap_or(0));
        let split = sorted.len().saturating_sub(2);
        let (flood, last) = sorted.split_at(split);
        (last.to_vec(), flood.to_vec())
    };
    let (stood_for, highest) = adjusted(&flood);
    assert!(highest > 1, "the reset records' rate rose past the budget");
    let tolerance = out_rsts / 20;
    assert!(
        (stood_for + 2).abs_diff(out_rsts + 2) <= tolerance,
        "reset records stand for {stood_for} resets; the namespace sent {out_rsts} (±{tolerance}); {sampled_out} sampled out, {lost} lost"
    );
    assert_eq!(adjusted(&last_two), (2, 1), "after a quiet second every event is sent again");
}

fn unknown_excluded_reason_is_a_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("otel-config.yaml");
    let yaml = config(dir.path(), "drops: {exclude_reasons: [NO_SUCH_REASON]}").replace("${METRICS_PORT}", "0");
    std::fs::write(&path, yaml).unwrap();
    let output = Command::new(flowtel_bin()).arg("--config").arg(&path).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("drops.exclude_reasons[0]: `NO_SUCH_REASON` is not a drop reason of this kernel"),
        "{stderr}"
    );
}

#[test]
fn drops_and_tcp_events_from_the_kernel() {
    if !is_root() {
        eprintln!("skipped: needs root to load eBPF programs and create namespaces");
        return;
    }
    unknown_excluded_reason_is_a_startup_error();
    refused_connections_and_firewall_drops("btf", "ring_buffer", false);
    refused_connections_and_firewall_drops("classic", "perf_array", true);
    retransmits_match_the_kernels_count();
    latency_handshakes_and_processes();
    rate_limit_and_excluded_reasons();
    a_flood_is_summarised_not_lost();
}
