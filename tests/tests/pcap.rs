//! Privileged, real kernel, real Wireshark tools: `examples/pcap`. The
//! `ebpf` receiver's drop records carry the dropped packets' first bytes
//! (`drops.snaplen`), the `pcap` exporter writes them as pcap-ng, and
//! `tshark` and `capinfos` (Debian's) read the file: every dropped packet
//! with its 5-tuple, its interface and a comment naming the drop reason and
//! where the kernel dropped it. Needs root and `cargo xtask setup`.

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use flowtel_tests::{
    Flowtel, example_config, kernel_at_least,
    netns::{VethPair, finish, is_root},
    otlp_json::{file_requests, items, records},
    time_scale, wireshark,
};

const DATAGRAMS: usize = 5;
const REFUSED: usize = 3;
const DROPPED_PORT: u16 = 7000;

/// The example's config, on the test's veth, writing into `dir`, with the
/// records in a file too.
fn config(dir: &std::path::Path) -> String {
    let dir = dir.display();
    example_config(
        "pcap/otel-config.yaml",
        &[
            ("  ebpf:\n", format!("  ebpf:\n    interfaces: [{}]\n    flush_interval: 1s\n", VethPair::A_IF)),
            ("path: /var/log/flowtel/drops.pcapng", format!("path: {dir}/drops.pcapng")),
            ("exporters:\n", format!("exporters:\n  file/logs: {{path: \"{dir}/logs.jsonl\"}}\n")),
            ("exporters: [pcap]", "exporters: [pcap, file/logs]".to_owned()),
            ("service:\n", "service:\n  telemetry: {metrics: {address: \"127.0.0.1:${METRICS_PORT}\"}}\n".to_owned()),
        ],
    )
}

#[test]
fn tshark_reads_the_dropped_packets_with_their_reason() {
    assert!(is_root(), "this privileged test needs root: run `cargo xtask test` as root");
    let pair = VethPair::quiet("pcap", false);
    pair.b.drop_udp_to_port(DROPPED_PORT);
    let dir = tempfile::tempdir().unwrap();
    let mut flowtel = Flowtel::start_in_netns(&config(dir.path()), &pair.a.name);
    finish(pair.a.python(&format!(
        "import socket\n\
         for i in range({REFUSED}):\n  s=socket.socket()\n  try: s.connect(('{b}',9))\n\
         \x20 except ConnectionRefusedError: pass\n  s.close()\n\
         u=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         u.bind(('{a}',40000))\n\
         for i in range({DATAGRAMS}): u.sendto(b'x'*200,('{b}',{DROPPED_PORT}))\nprint(0)\n",
        a = VethPair::A_V4,
        b = VethPair::B_V4
    )));
    std::thread::sleep(Duration::from_millis(2500) * time_scale());
    assert!(flowtel.child.stop().success(), "{}", flowtel.child.output());

    let path = dir.path().join("drops.pcapng");
    let path = path.to_str().unwrap();
    // Wireshark's own reading of the whole file.
    let info = wireshark("capinfos", &["-M", path]);
    assert!(info.contains("pcapng"), "{info}");
    let rows = wireshark(
        "tshark",
        &[
            "-r",
            path,
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "frame.interface_name",
            "-e",
            "ip.src",
            "-e",
            "ip.dst",
            "-e",
            "udp.srcport",
            "-e",
            "udp.dstport",
            "-e",
            "tcp.dstport",
            "-e",
            "frame.len",
            "-e",
            "frame.cap_len",
            "-e",
            "frame.comment",
        ],
    );
    let rows: Vec<Vec<&str>> = rows.lines().map(|line| line.split('|').collect()).collect();

    // Every datagram the firewall dropped: its 5-tuple, the interface it
    // arrived on, its length on the wire (IPv4 + UDP + 200 bytes) and the
    // example's 128 bytes of it, and why.
    let reason = if kernel_at_least(5, 17) { "NETFILTER_DROP" } else { "NOT_SPECIFIED" };
    let datagrams: Vec<&Vec<&str>> =
        rows.iter().filter(|row| row[3] == "40000" && row[4] == DROPPED_PORT.to_string()).collect();
    assert_eq!(datagrams.len(), DATAGRAMS, "{rows:#?}\n{info}");
    for row in &datagrams {
        assert_eq!(&row[..3], &[VethPair::B_IF, VethPair::A_V4, VethPair::B_V4], "{row:?}");
        assert_eq!(&row[6..8], &["228", "128"], "{row:?}");
        assert!(row[8].starts_with(&format!("drop {reason} at ")), "{row:?}");
    }
    // The refused connections' SYNs: dropped with no socket to take them.
    let refused = rows.iter().filter(|row| row[5] == "9").count();
    if kernel_at_least(5, 17) {
        let comments: Vec<&str> = rows.iter().filter(|row| row[5] == "9").map(|row| row[8]).collect();
        assert!(comments.iter().all(|c| c.starts_with("drop NO_SOCKET at tcp_v4_rcv")), "{comments:?}");
    }
    assert_eq!(refused, REFUSED, "{rows:#?}");

    // Nothing lost on the way: a packet in the file for every drop record that carried one.
    let logs = items(&file_requests(&dir.path().join("logs.jsonl")), "logs");
    let drops = records(&logs, "network.packet.drop", &[]);
    let with_bytes = drops.iter().filter(|r| r.attributes.contains_key("network.packet.data")).count();
    assert_eq!(rows.len(), with_bytes, "{rows:#?}");
}
