use flowtel_ebpf_common::{FILTER_CAPTURE_BYTES, FilterMachine};
use pcap::{Capture, Linktype};

use super::*;

/// An Ethernet frame around `ip` (EtherType from its version nibble).
fn frame(ip: &[u8]) -> Vec<u8> {
    let ether_type: u16 = if ip[0] >> 4 == 6 { 0x86dd } else { 0x0800 };
    let mut frame = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    frame.extend_from_slice(&ether_type.to_be_bytes());
    frame.extend_from_slice(ip);
    frame
}

fn ipv4(protocol: u8, src: [u8; 4], dst: [u8; 4], fragment: u16, l4: &[u8]) -> Vec<u8> {
    let mut packet = vec![0x45, 0, 0, 0, 0, 1];
    packet.extend_from_slice(&fragment.to_be_bytes());
    packet.extend_from_slice(&[64, protocol, 0, 0]);
    packet.extend_from_slice(&src);
    packet.extend_from_slice(&dst);
    let total = (packet.len() + l4.len()) as u16;
    packet[2..4].copy_from_slice(&total.to_be_bytes());
    packet.extend_from_slice(l4);
    packet
}

fn ipv6(next: u8, src: [u8; 16], dst: [u8; 16], l4: &[u8]) -> Vec<u8> {
    let mut packet = vec![0x60, 0, 0, 0];
    packet.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    packet.extend_from_slice(&[next, 64]);
    packet.extend_from_slice(&src);
    packet.extend_from_slice(&dst);
    packet.extend_from_slice(l4);
    packet
}

fn tcp(sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut header = Vec::new();
    header.extend_from_slice(&sport.to_be_bytes());
    header.extend_from_slice(&dport.to_be_bytes());
    header.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    header.extend_from_slice(payload);
    header
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut header = Vec::new();
    header.extend_from_slice(&sport.to_be_bytes());
    header.extend_from_slice(&dport.to_be_bytes());
    header.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    header.extend_from_slice(&[0, 0]);
    header.extend_from_slice(payload);
    header
}

/// Packets starting at their IP header, of every kind the expressions below tell apart.
fn packets() -> Vec<Vec<u8>> {
    let a = [10, 0, 0, 1];
    let b = [10, 0, 0, 2];
    let c = [192, 168, 7, 9];
    let mut v6a = [0u8; 16];
    v6a[0] = 0xfd;
    v6a[15] = 1;
    let mut v6b = v6a;
    v6b[15] = 2;
    vec![
        ipv4(6, a, b, 0, &tcp(40000, 443, 0x02, &[])),
        ipv4(6, b, a, 0, &tcp(443, 40000, 0x12, &[])),
        ipv4(6, a, c, 0, &tcp(40001, 80, 0x18, b"GET / HTTP/1.1\r\n\r\n")),
        ipv4(17, c, a, 0, &udp(53, 5353, b"answer")),
        ipv4(17, a, b, 0x2001, &udp(1, 2, &[0; 8])),
        ipv4(17, a, b, 0x0010, &[0; 16]),
        ipv4(1, a, c, 0, &[8, 0, 0, 0, 0, 1, 0, 1]),
        ipv6(6, v6a, v6b, &tcp(50000, 443, 0x02, &[])),
        ipv6(17, v6b, v6a, &udp(53, 50000, b"x")),
        ipv6(58, v6a, v6b, &[128, 0, 0, 0, 0, 1, 0, 1]),
        ipv4(6, a, b, 0, &tcp(40000, 443, 0x04, &[])),
    ]
}

const EXPRESSIONS: &[&str] = &[
    "tcp port 443",
    "tcp port 443 and net 10.0.0.0/8",
    "udp and src port 53",
    "host 192.168.7.9",
    "ip6",
    "icmp or icmp6",
    "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn",
    "tcp[tcpflags] & tcp-rst != 0",
    "ip[6:2] & 0x1fff != 0",
    "portrange 50000-60000",
    "not tcp",
    "len > 60",
    "ip6 and dst host fd00::2",
    "tcp[((tcp[12:1] & 0xf0) >> 2):4] = 0x47455420",
    "greater 100 or less 50",
];

/// flowtel's machine over a packet, as the kernel runs it.
fn machine_verdict(program: &PacketFilter, packet: &[u8]) -> bool {
    let mut machine = FilterMachine {
        bytes: [0; FILTER_CAPTURE_BYTES],
        captured: 0,
        wire_length: 0,
        a: 0,
        x: 0,
        pc: 0,
        verdict: 0,
        memory: [0; 16],
    };
    let captured = packet.len().min(FILTER_CAPTURE_BYTES);
    machine.bytes[..captured].copy_from_slice(&packet[..captured]);
    machine.reset(captured as u32, packet.len() as u32);
    machine.run(program)
}

#[test]
fn the_machine_agrees_with_libpcap_on_every_packet() {
    for expression in EXPRESSIONS {
        let compiled = CompiledFilter::compile(expression).unwrap_or_else(|e| panic!("{expression}: {e}"));
        let network = compiled.network_layer().unwrap_or_else(|e| panic!("{expression}: {e}"));
        let libpcap_link = Capture::dead(Linktype::ETHERNET).unwrap().compile(expression, true).unwrap();
        let libpcap_raw = Capture::dead(DLT_RAW).unwrap().compile(expression, true).unwrap();
        let mut matched = 0;
        for (index, packet) in packets().iter().enumerate() {
            let frame = frame(packet);
            let expected = libpcap_link.filter(&frame);
            assert_eq!(machine_verdict(&compiled.link_layer, &frame), expected, "`{expression}`, frame {index}");
            let expected_raw = libpcap_raw.filter(packet);
            assert_eq!(machine_verdict(network, packet), expected_raw, "`{expression}`, packet {index}");
            matched += usize::from(expected);
        }
        assert!(matched > 0 && matched < packets().len(), "`{expression}` should split the packets, matched {matched}");
    }
}

#[test]
fn libpcap_errors_are_given_as_they_are() {
    let error = CompiledFilter::compile("tcp prot 443").unwrap_err();
    assert!(error.starts_with("libpcap: ") && error.contains("syntax error"), "{error}");
    let error = CompiledFilter::compile("host not-a-host.invalid").unwrap_err();
    assert!(error.starts_with("libpcap: "), "{error}");
}

#[test]
fn link_layer_expressions_filter_flows_only() {
    let compiled = CompiledFilter::compile("ether host 02:00:00:00:00:01").unwrap();
    let error = compiled.network_layer().unwrap_err();
    assert!(error.contains("cannot judge drops and TCP events") && error.contains("libpcap: "), "{error}");
}

#[test]
fn what_the_kernel_side_cannot_run_is_refused() {
    let error = CompiledFilter::compile("ip[300] = 1").unwrap_err();
    assert!(error.contains("past the first 256"), "{error}");
    let jump_out = [FilterInstruction { code: op::JMP | op::JA, jt: 0, jf: 0, k: 5 }];
    assert!(to_kernel(&jump_out).unwrap_err().contains("jumps past the program's end"));
    let divide = [
        FilterInstruction { code: op::ALU | op::DIV | op::K, jt: 0, jf: 0, k: 0 },
        FilterInstruction { code: op::RET | op::K, jt: 0, jf: 0, k: 1 },
    ];
    assert!(to_kernel(&divide).unwrap_err().contains("divides by zero"));
    let linux_extension = [FilterInstruction { code: op::LD | op::W | op::ABS, jt: 0, jf: 0, k: 0xffff_f000 }];
    assert!(to_kernel(&linux_extension).unwrap_err().contains("instruction 0"));
    let long: String = (0..200).map(|p| format!("port {p}")).collect::<Vec<_>>().join(" or ");
    assert!(CompiledFilter::compile(&long).unwrap_err().contains("at most 512"));
}
