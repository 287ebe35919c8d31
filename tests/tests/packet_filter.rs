//! Privileged, real kernel: `receivers::ebpf::filter`, a pcap-filter
//! expression run in the kernel. The kernel's verdict on crafted frames
//! (BPF_PROG_TEST_RUN) is libpcap's own; on real traffic only what the
//! expression names makes flows, drops and TCP events, and what it does
//! not is counted. Bad expressions stop startup with libpcap's message.
//! Needs root (it loads eBPF programs).

#![allow(clippy::unwrap_used, missing_docs)]

use std::{
    net::{TcpListener, TcpStream, UdpSocket},
    path::Path,
    process::Command,
    time::Duration,
};

use flowtel_ebpf_common::{Counter, ipproto};
use flowtel_receiver::ebpf::{ProbeSettings, Probes, filter::CompiledFilter};
use flowtel_tests::{
    Flowtel, flowtel_bin,
    frames::ethernet_ipv4,
    free_port, metric_value,
    netns::is_root,
    otlp_json::{Item, file_requests, items},
};

fn ethernet_ipv6(next: u8, last_byte: u8, l4: &[u8]) -> Vec<u8> {
    let mut frame = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x86, 0xdd, 0x60, 0, 0, 0];
    frame.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    frame.extend_from_slice(&[next, 64]);
    frame.extend_from_slice(&[0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    frame.extend_from_slice(&[0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, last_byte]);
    frame.extend_from_slice(l4);
    frame
}

fn ports(src: u16, dst: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut l4 = src.to_be_bytes().to_vec();
    l4.extend_from_slice(&dst.to_be_bytes());
    l4.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    l4.extend_from_slice(payload);
    l4
}

/// Frames of every kind the expressions below tell apart.
fn frames() -> Vec<Vec<u8>> {
    let (a, b, c) = ([10, 0, 0, 1], [10, 0, 0, 2], [192, 168, 7, 9]);
    vec![
        ethernet_ipv4(ipproto::TCP, a, b, &ports(40000, 443, 0x02, &[])),
        ethernet_ipv4(ipproto::TCP, b, a, &ports(443, 40000, 0x12, &[])),
        ethernet_ipv4(ipproto::TCP, a, c, &ports(40001, 80, 0x18, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")),
        ethernet_ipv4(ipproto::UDP, c, a, &ports(53, 5353, 0, b"answer")),
        ethernet_ipv4(ipproto::ICMP, a, c, &[8, 0, 0, 0, 0, 1, 0, 1]),
        ethernet_ipv4(ipproto::TCP, a, b, &ports(40000, 443, 0x04, &[])),
        ethernet_ipv6(ipproto::TCP, 2, &ports(50000, 443, 0x02, &[])),
        ethernet_ipv6(ipproto::UDP, 3, &ports(53, 50000, 0, b"x")),
        ethernet_ipv6(ipproto::ICMPV6, 2, &[128, 0, 0, 0, 0, 1, 0, 1]),
        ethernet_ipv4(ipproto::UDP, a, b, &ports(1, 2, 0, &[7; 400])),
    ]
}

const EXPRESSIONS: &[&str] = &[
    "tcp port 443 and net 10.0.0.0/8",
    "udp and src port 53",
    "host 192.168.7.9 or ip6 host fd77::3",
    "icmp or icmp6",
    "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn",
    "tcp[((tcp[12:1] & 0xf0) >> 2):4] = 0x47455420",
    "greater 300",
    "not tcp",
    "ether src 02:00:00:00:00:01 and portrange 50000-60000",
];

#[test]
fn the_kernel_decides_as_libpcap_on_every_frame() {
    assert!(is_root(), "this privileged test needs root: run `cargo xtask test` as root");
    for expression in EXPRESSIONS {
        let libpcap = pcap::Capture::dead(pcap::Linktype::ETHERNET).unwrap().compile(expression, true).unwrap();
        let filter = CompiledFilter::compile(expression).unwrap();
        let settings = ProbeSettings { filter: Some(filter), ..ProbeSettings::default() };
        let mut probes = Probes::load(&settings).unwrap_or_else(|e| panic!("`{expression}`: {e}"));
        let mut matched = 0;
        for (index, frame) in frames().iter().enumerate() {
            let existing: Vec<_> = probes.flows().unwrap().into_iter().map(|(k, _)| k).collect();
            probes.delete_flows(&existing);
            let before = probes.counters().unwrap()[Counter::PacketsFilteredOut as usize];
            probes.test_run_ingress(frame).unwrap();
            let filtered_out = probes.counters().unwrap()[Counter::PacketsFilteredOut as usize] - before;
            let flows = probes.flows().unwrap().len();
            let expected = libpcap.filter(frame);
            assert_eq!(
                (flows, filtered_out),
                if expected { (1, 0) } else { (0, 1) },
                "`{expression}` on frame {index}: libpcap says {expected}"
            );
            matched += usize::from(expected);
        }
        assert!(matched > 0 && matched < frames().len(), "`{expression}` splits the frames ({matched} matched)");
    }
}

fn config(dir: &Path, filter: &str) -> String {
    format!(
        r#"
receivers:
  ebpf: {{interfaces: [lo], flush_interval: 500ms, filter: "{filter}"}}
exporters:
  file: {{path: "{}/logs.jsonl"}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:${{METRICS_PORT}}"}}}}
  pipelines:
    logs: {{receivers: [ebpf], exporters: [file]}}
"#,
        dir.display()
    )
}

fn attr<'a>(item: &'a Item, key: &str) -> &'a str {
    item.attributes.get(key).map_or("", String::as_str)
}

/// On loopback: a TCP connection carrying data to `open`, a refused one to
/// `closed`, and a datagram to the closed UDP port `unheard`.
fn traffic(open: u16, closed: u16, unheard: u16) {
    let listener = TcpListener::bind(("127.0.0.1", open)).unwrap();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        std::io::copy(&mut stream, &mut std::io::sink()).unwrap();
    });
    let mut client = TcpStream::connect(("127.0.0.1", open)).unwrap();
    std::io::Write::write_all(&mut client, &[7; 50_000]).unwrap();
    drop(client);
    server.join().unwrap();
    assert!(TcpStream::connect(("127.0.0.1", closed)).is_err(), "nothing listens on {closed}");
    UdpSocket::bind("127.0.0.1:0").unwrap().send_to(b"anyone?", ("127.0.0.1", unheard)).unwrap();
}

#[test]
fn only_what_the_expression_names_makes_flows_drops_and_tcp_events() {
    assert!(is_root(), "this privileged test needs root: run `cargo xtask test` as root");
    let named = (free_port(), free_port(), free_port());
    let other = (free_port(), free_port(), free_port());
    let filter = format!("port {} or port {} or udp port {}", named.0, named.1, named.2);
    let dir = tempfile::tempdir().unwrap();
    let mut flowtel = Flowtel::start(&config(dir.path(), &filter));
    traffic(named.0, named.1, named.2);
    traffic(other.0, other.1, other.2);
    std::thread::sleep(Duration::from_millis(1500));
    let metrics = flowtel.metrics();
    assert!(flowtel.child.stop().success(), "{}", flowtel.child.output());
    let records = items(&file_requests(&dir.path().join("logs.jsonl")), "logs");
    let on = |port: u16| {
        records
            .iter()
            .filter(|r| attr(r, "source.port") == port.to_string() || attr(r, "destination.port") == port.to_string())
            .map(|r| r.event_name.clone())
            .collect::<Vec<_>>()
    };
    let (open, closed, unheard) = (on(named.0), on(named.1), on(named.2));
    assert!(open.iter().any(|e| e == "network.flow"), "the named connection's flows: {open:?}");
    assert!(open.iter().any(|e| e == "network.tcp.connection"), "the named connection's TCP event: {open:?}");
    assert!(closed.iter().any(|e| e == "network.tcp.reset"), "the named refusal's reset: {closed:?}");
    assert!(closed.iter().any(|e| e == "network.packet.drop"), "the named refused SYN's drop: {closed:?}");
    assert!(unheard.iter().any(|e| e == "network.packet.drop"), "the named datagram's drop: {unheard:?}");
    assert!(unheard.iter().any(|e| e == "network.flow"), "the named datagram's flow: {unheard:?}");
    for port in [other.0, other.1, other.2] {
        assert!(on(port).is_empty(), "nothing from port {port}, which the filter does not name: {:?}", on(port));
    }
    let receiver = [("receiver", "ebpf")];
    assert!(metric_value(&metrics, "flowtel_ebpf_packets_filtered_out_total", &receiver) > 0.0, "{metrics}");
    let tcp_filtered = [("receiver", "ebpf"), ("kind", "tcp")];
    assert!(metric_value(&metrics, "flowtel_ebpf_kernel_events_filtered_out_total", &tcp_filtered) > 0.0);
    let drops_filtered = [("receiver", "ebpf"), ("kind", "drop")];
    assert!(metric_value(&metrics, "flowtel_ebpf_kernel_events_filtered_out_total", &drops_filtered) > 0.0);
}

#[test]
fn bad_expressions_stop_startup_with_libpcaps_message() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("tcp prot 443", "receivers::ebpf::filter: libpcap: can't parse filter expression: syntax error"),
        ("ether host 02:00:00:00:00:01", "cannot judge drops and TCP events"),
        ("ip[300] = 1", "past the first 256"),
    ];
    for (expression, expected) in cases {
        let path = dir.path().join("otel-config.yaml");
        std::fs::write(&path, config(dir.path(), expression).replace("${METRICS_PORT}", "0")).unwrap();
        for command in [&["validate"][..], &[][..]] {
            let output = Command::new(flowtel_bin()).args(command).arg("--config").arg(&path).output().unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(!output.status.success(), "`{expression}` ({command:?}) must be refused");
            assert!(stderr.contains(expected), "`{expression}` ({command:?}): {stderr}");
        }
    }
}
