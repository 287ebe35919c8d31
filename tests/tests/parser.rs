//! Privileged: the flow programs' header parser, run by the kernel on
//! crafted frames with BPF_PROG_TEST_RUN. Truncated and malformed headers
//! must be counted as parse failures, never turned into flows with wrong
//! addresses or ports. Needs root (it loads eBPF programs).

#![allow(clippy::unwrap_used, missing_docs)]

use flowtel_ebpf_common::{Counter, FlowKey, ipproto};
use flowtel_receiver::ebpf::{ProbeSettings, Probes};
use flowtel_tests::{kernel_at_least, netns::is_root};

const TC_ACT_PIPE: u32 = 3;

fn ethernet(ether_type: u16) -> Vec<u8> {
    let mut frame = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
    frame.extend_from_slice(&ether_type.to_be_bytes());
    frame
}

/// An IPv4 header with `options` 4-byte words of options and the given fragment field.
fn ipv4(protocol: u8, options: usize, fragment: u16, payload_len: usize) -> Vec<u8> {
    let header_len = 20 + options * 4;
    let mut header = vec![0x40 | (header_len / 4) as u8, 0];
    header.extend_from_slice(&((header_len + payload_len) as u16).to_be_bytes());
    header.extend_from_slice(&[0, 1]);
    header.extend_from_slice(&fragment.to_be_bytes());
    header.extend_from_slice(&[64, protocol, 0, 0, 10, 1, 2, 3, 10, 4, 5, 6]);
    header.extend(std::iter::repeat_n(1u8, options * 4));
    header
}

fn ipv6(next: u8, payload: &[u8]) -> Vec<u8> {
    let mut header = vec![0x60, 0, 0, 0];
    header.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    header.extend_from_slice(&[next, 64]);
    header.extend_from_slice(&[0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    header.extend_from_slice(&[0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    header.extend_from_slice(payload);
    header
}

fn ports(src: u16, dst: u16, rest: usize) -> Vec<u8> {
    let mut l4 = src.to_be_bytes().to_vec();
    l4.extend_from_slice(&dst.to_be_bytes());
    l4.extend(std::iter::repeat_n(0u8, rest));
    l4
}

fn tcp(src: u16, dst: u16, flags: u8) -> Vec<u8> {
    let mut l4 = ports(src, dst, 16);
    l4[12] = 0x50;
    l4[13] = flags;
    l4
}

fn frame(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Runs one frame; returns the flows it made and how the counters moved.
fn run(probes: &mut Probes, frame: &[u8]) -> (Vec<FlowKey>, [u64; 7]) {
    let existing: Vec<FlowKey> = probes.flows().unwrap().into_iter().map(|(k, _)| k).collect();
    probes.delete_flows(&existing);
    let before = probes.counters().unwrap();
    let verdict =
        probes.test_run_ingress(frame).unwrap_or_else(|e| panic!("{e} on a {}-byte frame {frame:02x?}", frame.len()));
    assert_eq!(verdict, TC_ACT_PIPE, "the verdict is never changed");
    let after = probes.counters().unwrap();
    let mut delta = [0; 7];
    for i in 0..7 {
        delta[i] = after[i] - before[i];
    }
    (probes.flows().unwrap().into_iter().map(|(k, _)| k).collect(), delta)
}

fn only_flow(probes: &mut Probes, what: &str, frame: &[u8]) -> FlowKey {
    let (flows, counters) = run(probes, frame);
    assert_eq!(flows.len(), 1, "{what}: one flow, counters {counters:?}");
    assert_eq!(counters[Counter::ParseFailures as usize], 0, "{what}");
    flows[0]
}

fn refused(probes: &mut Probes, what: &str, frame: &[u8], counter: Counter) {
    let (flows, counters) = run(probes, frame);
    assert!(flows.is_empty(), "{what}: no flow from a bad frame, got {flows:?}");
    assert_eq!(counters[counter as usize], 1, "{what}: counted as {counter:?}, counters {counters:?}");
}

#[test]
fn crafted_frames_parse_or_are_counted_as_failures() {
    assert!(is_root(), "this privileged test needs root: run `cargo xtask test` as root");
    // Every part on, as the receiver's defaults have them: the verifier checks the whole program.
    let settings =
        ProbeSettings { trace_context_connections: 1024, response_latency_servers: 16, ..ProbeSettings::default() };
    let mut probes = Probes::load(&settings).expect("load the eBPF object");
    if kernel_at_least(5, 17) {
        probes.enable_trace_context().expect("the trace context reader loads");
    } else {
        let refused = probes.enable_trace_context().expect_err("no bpf_loop before 5.17");
        assert!(refused.to_string().contains("needs bpf_loop"), "{refused}");
    }

    // IPv4 with 8 bytes of options: the ports come after the options.
    let key = only_flow(
        &mut probes,
        "ipv4 options",
        &frame(&[&ethernet(0x0800), &ipv4(ipproto::TCP, 2, 0, 20), &tcp(1234, 80, 0x02)]),
    );
    assert_eq!((key.protocol, key.src_port, key.dst_port), (ipproto::TCP, 1234, 80));
    assert_eq!((&key.src_addr[..4], &key.dst_addr[..4], key.ip_version), (&[10, 1, 2, 3][..], &[10, 4, 5, 6][..], 4));

    // A first fragment (MF set, offset 0) has ports; a later one has none.
    let key = only_flow(
        &mut probes,
        "first fragment",
        &frame(&[&ethernet(0x0800), &ipv4(ipproto::UDP, 0, 0x2000, 8), &ports(53, 5353, 4)]),
    );
    assert_eq!((key.src_port, key.dst_port), (53, 5353));
    let key = only_flow(
        &mut probes,
        "later fragment",
        &frame(&[&ethernet(0x0800), &ipv4(ipproto::UDP, 0, 0x00b9, 8), &ports(53, 5353, 4)]),
    );
    assert_eq!((key.protocol, key.src_port, key.dst_port), (ipproto::UDP, 0, 0));

    // 802.1ad + 802.1Q tags in front of IPv4.
    let mut tagged = ethernet(0x88a8);
    tagged.extend_from_slice(&[0, 100, 0x81, 0x00, 0, 200, 0x08, 0x00]);
    let key = only_flow(
        &mut probes,
        "double VLAN",
        &frame(&[&tagged, &ipv4(ipproto::SCTP, 0, 0, 12), &ports(3868, 3869, 8)]),
    );
    assert_eq!((key.protocol, key.src_port, key.dst_port), (ipproto::SCTP, 3868, 3869));

    // IPv6: hop-by-hop (8 bytes) then destination options (16 bytes) then UDP.
    let mut chain = vec![60, 0, 0, 0, 0, 0, 0, 0];
    chain.extend_from_slice(&[ipproto::UDP, 1]);
    chain.extend(std::iter::repeat_n(0u8, 14));
    chain.extend(ports(4000, 443, 4));
    let key = only_flow(&mut probes, "ipv6 extension headers", &frame(&[&ethernet(0x86dd), &ipv6(0, &chain)]));
    assert_eq!((key.ip_version, key.protocol, key.src_port, key.dst_port), (6, ipproto::UDP, 4000, 443));
    assert_eq!(key.dst_addr[15], 2);

    // IPv6 fragment header, not the first fragment: no ports.
    let mut fragment = vec![ipproto::TCP, 0, 0x05, 0x00, 0, 0, 0, 1];
    fragment.extend(tcp(1, 2, 0x02));
    let key = only_flow(&mut probes, "ipv6 later fragment", &frame(&[&ethernet(0x86dd), &ipv6(44, &fragment)]));
    assert_eq!((key.protocol, key.src_port, key.dst_port), (ipproto::TCP, 0, 0));

    // ICMP echo request: type and code in the port fields.
    let key = only_flow(
        &mut probes,
        "icmp",
        &frame(&[&ethernet(0x0800), &ipv4(ipproto::ICMP, 0, 0, 8), &[8, 0, 0, 0, 0, 1, 0, 1]]),
    );
    assert_eq!((key.protocol, key.src_port, key.dst_port), (ipproto::ICMP, 8, 0));

    // A protocol without ports (GRE) is a flow by protocol number.
    let key = only_flow(&mut probes, "gre", &frame(&[&ethernet(0x0800), &ipv4(47, 0, 0, 4), &[0, 0, 0x08, 0]]));
    assert_eq!((key.protocol, key.src_port, key.dst_port), (47, 0, 0));

    // Truncated and malformed headers. The kernel's test runner refuses an
    // untagged IPv4 or IPv6 frame shorter than its IP header, so those
    // truncations ride behind a VLAN tag (as they can on a real link).
    let mut vlan = ethernet(0x8100);
    vlan.extend_from_slice(&[0, 7, 0x08, 0x00]);
    let mut vlan6 = ethernet(0x8100);
    vlan6.extend_from_slice(&[0, 7, 0x86, 0xdd]);
    refused(
        &mut probes,
        "ipv4 cut short",
        &frame(&[&vlan, &ipv4(ipproto::TCP, 0, 0, 20)[..12]]),
        Counter::ParseFailures,
    );
    refused(
        &mut probes,
        "tcp cut short",
        &frame(&[&ethernet(0x0800), &ipv4(ipproto::TCP, 0, 0, 20), &[0x04, 0xd2]]),
        Counter::ParseFailures,
    );
    let mut bad_ihl = ipv4(ipproto::UDP, 0, 0, 8);
    bad_ihl[0] = 0x43;
    refused(
        &mut probes,
        "ihl below 5",
        &frame(&[&ethernet(0x0800), &bad_ihl, &ports(1, 2, 4)]),
        Counter::ParseFailures,
    );
    let mut wrong_version = ipv4(ipproto::UDP, 0, 0, 8);
    wrong_version[0] = 0x65;
    refused(
        &mut probes,
        "version 6 in an IPv4 frame",
        &frame(&[&ethernet(0x0800), &wrong_version, &ports(1, 2, 4)]),
        Counter::ParseFailures,
    );
    refused(
        &mut probes,
        "options past the end",
        &frame(&[&ethernet(0x0800), &ipv4(ipproto::TCP, 10, 0, 0)[..24]]),
        Counter::ParseFailures,
    );
    refused(&mut probes, "ipv6 cut short", &frame(&[&vlan6, &ipv6(ipproto::UDP, &[])[..30]]), Counter::ParseFailures);
    refused(&mut probes, "arp", &frame(&[&ethernet(0x0806), &[0; 28]]), Counter::NonIpPackets);
}

/// Writes Ethernet frames into a tap device (`flttap0`, made here, in the
/// namespace the script runs in) behind a virtio-net header, so the kernel
/// builds each skb with only `hdr_len` bytes in its linear area and the
/// rest in pages, or as a GSO super-packet: what a VM's or container's
/// traffic looks like on a host. Reads `hdr_len gso frame_hex` lines.
const TAP_WRITER: &str = r#"
import fcntl, os, struct, subprocess, sys, time
TUNSETIFF, TUNSETVNETHDRSZ = 0x400454ca, 0x400454d8
IFF_TAP, IFF_NO_PI, IFF_VNET_HDR = 0x0002, 0x1000, 0x4000
tun = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(tun, TUNSETIFF, struct.pack("16sH", b"flttap0", IFF_TAP | IFF_NO_PI | IFF_VNET_HDR))
fcntl.ioctl(tun, TUNSETVNETHDRSZ, struct.pack("i", 10))
subprocess.run(["ip", "link", "set", "flttap0", "up"], check=True)
print("up", flush=True)
sys.stdin.readline()
for line in sys.stdin:
    hdr_len, gso, frame = line.split()
    frame = bytes.fromhex(frame)
    if gso == "tcp4":
        # NEEDS_CSUM, TCPV4, 1000-byte segments; checksum from the TCP header on.
        header = struct.pack("<BBHHHH", 1, 1, int(hdr_len), 1000, 34, 16)
    else:
        header = struct.pack("<BBHHHH", 0, 0, int(hdr_len), 0, 0, 0)
    os.write(tun, header + frame)
time.sleep(0.5)
"#;

/// A TCP/IPv4 frame from 10.9.0.1:`src_port` to 10.9.0.2:80 with `payload` bytes.
fn tcp4_frame(src_port: u16, payload: usize) -> Vec<u8> {
    let mut ip = ipv4(ipproto::TCP, 0, 0, 20 + payload);
    ip[12..20].copy_from_slice(&[10, 9, 0, 1, 10, 9, 0, 2]);
    let mut segment = tcp(src_port, 80, 0x18);
    segment.extend(std::iter::repeat_n(0x61u8, payload));
    frame(&[&ethernet(0x0800), &ip, &segment])
}

#[test]
fn packets_whose_headers_are_not_all_in_the_linear_area_parse() {
    use std::io::{BufRead, Write};

    use flowtel_tests::{
        Flowtel,
        netns::Netns,
        otlp_json::{file_requests, items},
    };
    assert!(is_root(), "this privileged test needs root: run `cargo xtask test` as root");
    let ns = Netns::create("tap");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flows.jsonl");
    let config = format!(
        r#"
receivers:
  ebpf: {{interfaces: ["flttap*"], flush_interval: 500ms, drops: {{enabled: false}}, tcp: {{enabled: false}}}}
exporters:
  file: {{path: "{}"}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:${{METRICS_PORT}}"}}}}
  pipelines:
    logs: {{receivers: [ebpf], exporters: [file]}}
"#,
        file.display()
    );
    let mut flowtel = Flowtel::start_in_netns(&config, &ns.name);
    let mut writer = std::process::Command::new("ip")
        .args(["netns", "exec", &ns.name, "python3", "-c", TAP_WRITER])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut up = String::new();
    std::io::BufReader::new(writer.stdout.take().unwrap()).read_line(&mut up).unwrap();
    assert_eq!(up.trim(), "up");
    flowtel_tests::wait_for(std::time::Duration::from_secs(5), "flowtel to attach to flttap0", || {
        flowtel.child.output().contains("Attached flow programs. interface=flttap0").then_some(())
    });
    // hdr_len: only Ethernet linear; IPv4 too; TCP header split; every header
    // linear and ending exactly where the linear area does; then a GSO
    // super-packet (8 segments' worth in one skb). Frames are over a page:
    // the kernel makes smaller ones linear whatever hdr_len says.
    let cases: [(u16, usize, &str, usize); 5] = [
        (41_001, 14, "-", 5000),
        (41_002, 34, "-", 5000),
        (41_003, 40, "-", 5000),
        (41_004, 54, "-", 5000),
        (41_005, 54, "tcp4", 8000),
    ];
    let mut input = writer.stdin.take().unwrap();
    writeln!(input, "go").unwrap();
    for (port, hdr_len, gso, payload) in cases {
        let frame = tcp4_frame(port, payload);
        let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
        writeln!(input, "{hdr_len} {gso} {hex}").unwrap();
    }
    drop(input);
    let status = writer.wait().unwrap();
    assert!(status.success(), "the tap writer failed");
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let metrics = ns.http_get(flowtel.metrics_port, "/metrics");
    let copied = flowtel_tests::metric_value(&metrics, "flowtel_ebpf_packets_parsed_from_copies_total", &[]);
    assert_eq!(
        copied, 3.0,
        "the frames whose headers ran past the linear area (hdr_len 14, 34, 40) were parsed from copies"
    );
    assert!(flowtel.child.stop().success(), "{}", flowtel.child.output());
    let records: Vec<_> =
        items(&file_requests(&file), "logs").into_iter().filter(|r| r.event_name == "network.flow").collect();
    let value = |r: &flowtel_tests::otlp_json::Item, key: &str| r.attributes.get(key).cloned().unwrap_or_default();
    for (port, hdr_len, gso, payload) in cases {
        let flow: Vec<_> = records.iter().filter(|r| value(r, "source.port") == port.to_string()).collect();
        assert_eq!(flow.len(), 1, "hdr_len {hdr_len} {gso}: one flow record for port {port}, records {records:?}");
        let flow = flow[0];
        assert_eq!(
            (
                value(flow, "source.address"),
                value(flow, "destination.address"),
                value(flow, "destination.port"),
                value(flow, "network.transport"),
                value(flow, "flow.bytes"),
                value(flow, "flow.packets"),
            ),
            (
                "10.9.0.1".to_owned(),
                "10.9.0.2".to_owned(),
                "80".to_owned(),
                "tcp".to_owned(),
                (14 + 20 + 20 + payload).to_string(),
                "1".to_owned()
            ),
            "hdr_len {hdr_len} {gso}"
        );
    }
}
