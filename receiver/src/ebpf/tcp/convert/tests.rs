use std::path::Path;

use flowtel_ebpf_common::{RECORD_BYTES, SockOpen};

use super::*;
use crate::ebpf::{kernel::tracefs, otlp::attribute_texts};

fn formats() -> TcpFormats {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/tracefs-6.18");
    let format = |category, name| tracefs::format(&root, category, name).unwrap();
    TcpFormats {
        retransmit: format("tcp", "tcp_retransmit_skb"),
        send_reset: format("tcp", "tcp_send_reset"),
        receive_reset: format("tcp", "tcp_receive_reset"),
        set_state: format("sock", "inet_sock_set_state"),
    }
}

fn enums() -> KernelEnums {
    let names = |pairs: &[(u64, &str)]| pairs.iter().map(|(v, n)| (*v, (*n).to_owned())).collect();
    KernelEnums {
        tcp_states: names(&[(1, "ESTABLISHED"), (2, "SYN_SENT"), (4, "FIN_WAIT1"), (7, "CLOSE"), (9, "LAST_ACK")]),
        reset_reasons: names(&[(1, "NO_SOCKET"), (14, "TCP_STATE")]),
        ..KernelEnums::default()
    }
}

/// A record with `fields` written at their offsets in `format`.
fn record(format: &Format, fields: &[(&str, &[u8])]) -> [u8; RECORD_BYTES] {
    let mut out = [0u8; RECORD_BYTES];
    for (name, bytes) in fields {
        let field = format.field(name).unwrap_or_else(|| panic!("no field {name}"));
        out[field.offset..field.offset + bytes.len()].copy_from_slice(bytes);
    }
    out
}

fn sockaddr_in(address: [u8; 4], port: u16) -> Vec<u8> {
    let mut out = vec![0u8; 28];
    out[..2].copy_from_slice(&2u16.to_ne_bytes());
    out[2..4].copy_from_slice(&port.to_be_bytes());
    out[4..8].copy_from_slice(&address);
    out
}

fn sockaddr_in6(address: Ipv6Addr, port: u16) -> Vec<u8> {
    let mut out = vec![0u8; 28];
    out[..2].copy_from_slice(&10u16.to_ne_bytes());
    out[2..4].copy_from_slice(&port.to_be_bytes());
    out[8..24].copy_from_slice(&address.octets());
    out
}

fn convert(event: &TcpEvent) -> std::collections::BTreeMap<String, String> {
    let (formats, enums) = (formats(), enums());
    let ctx = TcpContext { formats: &formats, enums: &enums, monotonic_to_unix_ns: 0, now_unix_ns: 0 };
    attribute_texts(&tcp_record(event, &ctx, None).expect("a record"))
}

fn event(kind: u8, record: [u8; RECORD_BYTES]) -> TcpEvent {
    TcpEvent { kind, netns: 4026531840, time_ns: 5_000_000_000, record, ..TcpEvent::default() }
}

#[test]
fn retransmits_read_family_ports_and_addresses() {
    let f = formats();
    let raw = record(
        &f.retransmit,
        &[
            ("family", &2u16.to_ne_bytes()),
            ("sport", &43_210u16.to_ne_bytes()),
            ("dport", &5201u16.to_ne_bytes()),
            ("saddr", &[10, 1, 0, 1]),
            ("daddr", &[10, 1, 0, 2]),
            ("state", &1i32.to_ne_bytes()),
        ],
    );
    let a = convert(&event(EVENT_TCP_RETRANSMIT, raw));
    assert_eq!(a["network.type"], "ipv4");
    assert_eq!((a["source.address"].as_str(), a["source.port"].as_str()), ("10.1.0.1", "43210"));
    assert_eq!((a["destination.address"].as_str(), a["destination.port"].as_str()), ("10.1.0.2", "5201"));
    assert_eq!(a["network.tcp.state"], "ESTABLISHED");
    assert_eq!(a["linux.netns.inode"], "4026531840");
    assert!(!a.contains_key("network.tcp.retransmit.error"));
}

#[test]
fn ipv4_mapped_ipv6_sockets_show_ipv4_addresses() {
    let f = formats();
    let mapped = Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped().octets();
    let raw = record(
        &f.retransmit,
        &[("family", &10u16.to_ne_bytes()), ("saddr_v6", &mapped), ("daddr_v6", &Ipv6Addr::LOCALHOST.octets())],
    );
    let a = convert(&event(EVENT_TCP_RETRANSMIT, raw));
    assert_eq!(a["source.address"], "192.0.2.7");
    assert_eq!(a["destination.address"], "::1");
}

#[test]
fn resets_put_the_sender_at_the_source_and_say_the_direction() {
    let f = formats();
    // Sent: the record's saddr is the sender (flowtel's end).
    let sent = record(
        &f.send_reset,
        &[
            ("saddr", &sockaddr_in([10, 0, 0, 2], 9)),
            ("daddr", &sockaddr_in([10, 0, 0, 1], 40_000)),
            ("reason", &1u32.to_ne_bytes()),
        ],
    );
    let a = convert(&event(EVENT_TCP_RESET_SENT, sent));
    assert_eq!((a["source.address"].as_str(), a["source.port"].as_str()), ("10.0.0.2", "9"));
    assert_eq!(a["network.io.direction"], "transmit");
    assert_eq!(a["network.tcp.reset.reason"], "NO_SOCKET");
    assert!(!a.contains_key("network.tcp.state"), "state 0 means no socket");

    // Received: the record's saddr is the receiver; the source is the peer.
    let received = record(
        &f.receive_reset,
        &[
            ("family", &2u16.to_ne_bytes()),
            ("sport", &40_000u16.to_ne_bytes()),
            ("dport", &9u16.to_ne_bytes()),
            ("saddr", &[10, 0, 0, 1]),
            ("daddr", &[10, 0, 0, 2]),
        ],
    );
    let a = convert(&event(EVENT_TCP_RESET_RECEIVED, received));
    assert_eq!((a["source.address"].as_str(), a["source.port"].as_str()), ("10.0.0.2", "9"));
    assert_eq!((a["destination.address"].as_str(), a["destination.port"].as_str()), ("10.0.0.1", "40000"));
    assert_eq!(a["network.io.direction"], "receive");
}

#[test]
fn ipv6_socket_addresses_in_reset_records() {
    let f = formats();
    let local: Ipv6Addr = "fd00::2".parse().unwrap();
    let peer: Ipv6Addr = "fd00::1".parse().unwrap();
    let raw = record(&f.send_reset, &[("saddr", &sockaddr_in6(local, 443)), ("daddr", &sockaddr_in6(peer, 50_000))]);
    let a = convert(&event(EVENT_TCP_RESET_SENT, raw));
    assert_eq!((a["source.address"].as_str(), a["destination.address"].as_str()), ("fd00::2", "fd00::1"));
    assert_eq!(a["network.type"], "ipv6");
}

#[test]
fn connections_put_the_connecting_end_at_the_source_with_its_process() {
    let f = formats();
    let raw = record(
        &f.set_state,
        &[
            ("family", &2u16.to_ne_bytes()),
            ("sport", &40_000u16.to_ne_bytes()),
            ("dport", &80u16.to_ne_bytes()),
            ("saddr", &[10, 0, 0, 1]),
            ("daddr", &[10, 0, 0, 2]),
            ("oldstate", &4i32.to_ne_bytes()),
            ("newstate", &7i32.to_ne_bytes()),
        ],
    );
    let mut comm = [0u8; 16];
    comm[..4].copy_from_slice(b"curl");
    let mut client = event(EVENT_TCP_CONNECTION, raw);
    client.open = SockOpen {
        opened_ns: 4_000_000_000,
        established_ns: 4_020_000_000,
        handshake_ns: 20_000_000,
        pid: 4242,
        side: SIDE_CLIENT,
        comm,
        ..SockOpen::default()
    };
    client.srtt_us8 = 21_000 << 3;
    client.bytes_acked = 1000;
    client.bytes_received = 5000;
    let a = convert(&client);
    assert_eq!((a["source.address"].as_str(), a["source.port"].as_str()), ("10.0.0.1", "40000"));
    assert_eq!(a["network.tcp.side"], "client");
    assert_eq!((a["process.pid"].as_str(), a["process.executable.name"].as_str()), ("4242", "curl"));
    assert_eq!(a["network.tcp.handshake.duration"], "0.02");
    assert_eq!(a["network.tcp.connection.duration"], "1");
    assert_eq!(a["network.tcp.srtt"], "0.021");
    assert_eq!((a["network.tcp.bytes_acked"].as_str(), a["network.tcp.bytes_received"].as_str()), ("1000", "5000"));
    assert_eq!(a["network.tcp.state"], "FIN_WAIT1", "the state the socket closed from");

    let mut server = client;
    server.open = SockOpen { opened_ns: 4_000_000_000, side: SIDE_SERVER, ..SockOpen::default() };
    let a = convert(&server);
    assert_eq!((a["source.address"].as_str(), a["source.port"].as_str()), ("10.0.0.2", "80"));
    assert_eq!(a["network.tcp.side"], "server");
    assert!(!a.contains_key("process.pid"), "no process is known on the accepting side");
}

#[test]
fn older_layouts_with_ports_and_family_fields_decode_too() {
    // tcp_send_reset as kernels before 6.10 lay it out.
    let old = Format::parse(
        "\tfield:const void * skbaddr;\toffset:8;\tsize:8;\tsigned:0;\n\
         \tfield:const void * skaddr;\toffset:16;\tsize:8;\tsigned:0;\n\
         \tfield:int state;\toffset:24;\tsize:4;\tsigned:1;\n\
         \tfield:__u16 sport;\toffset:28;\tsize:2;\tsigned:0;\n\
         \tfield:__u16 dport;\toffset:30;\tsize:2;\tsigned:0;\n\
         \tfield:__u16 family;\toffset:32;\tsize:2;\tsigned:0;\n\
         \tfield:__u8 saddr[4];\toffset:34;\tsize:4;\tsigned:0;\n\
         \tfield:__u8 daddr[4];\toffset:38;\tsize:4;\tsigned:0;\n\
         \tfield:__u8 saddr_v6[16];\toffset:42;\tsize:16;\tsigned:0;\n\
         \tfield:__u8 daddr_v6[16];\toffset:58;\tsize:16;\tsigned:0;\n",
    )
    .unwrap();
    let raw = record(
        &old,
        &[
            ("family", &2u16.to_ne_bytes()),
            ("sport", &22u16.to_ne_bytes()),
            ("dport", &50_000u16.to_ne_bytes()),
            ("saddr", &[172, 16, 0, 1]),
            ("daddr", &[172, 16, 0, 9]),
        ],
    );
    let tuple = tuple(&old, &raw).unwrap();
    assert_eq!(tuple.local, (IpAddr::V4(Ipv4Addr::new(172, 16, 0, 1)), 22));
    assert_eq!(tuple.remote, (IpAddr::V4(Ipv4Addr::new(172, 16, 0, 9)), 50_000));
    assert_eq!(super::tuple(&old, &[0u8; 16]), None, "a short record has no tuple");
}

#[test]
fn reset_records_without_a_family_read_their_mapped_addresses() {
    // tcp_receive_reset as 5.10 lays it out: no `family`; an IPv4 socket's
    // addresses are also in the IPv6 fields, mapped.
    let old = Format::parse(
        "\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;\n\
         \tfield:__u16 sport;\toffset:16;\tsize:2;\tsigned:0;\n\
         \tfield:__u16 dport;\toffset:18;\tsize:2;\tsigned:0;\n\
         \tfield:__u8 saddr[4];\toffset:20;\tsize:4;\tsigned:0;\n\
         \tfield:__u8 daddr[4];\toffset:24;\tsize:4;\tsigned:0;\n\
         \tfield:__u8 saddr_v6[16];\toffset:28;\tsize:16;\tsigned:0;\n\
         \tfield:__u8 daddr_v6[16];\toffset:44;\tsize:16;\tsigned:0;\n\
         \tfield:__u64 sock_cookie;\toffset:64;\tsize:8;\tsigned:0;\n",
    )
    .unwrap();
    let mapped = |v4: [u8; 4]| Ipv4Addr::from(v4).to_ipv6_mapped().octets();
    let v4 = record(
        &old,
        &[
            ("sport", &40_000u16.to_ne_bytes()),
            ("dport", &9u16.to_ne_bytes()),
            ("saddr", &[10, 77, 0, 1]),
            ("daddr", &[10, 77, 0, 2]),
            ("saddr_v6", &mapped([10, 77, 0, 1])),
            ("daddr_v6", &mapped([10, 77, 0, 2])),
        ],
    );
    let tuple = tuple(&old, &v4).unwrap();
    assert_eq!(tuple.local, (IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1)), 40_000));
    assert_eq!(tuple.remote, (IpAddr::V4(Ipv4Addr::new(10, 77, 0, 2)), 9));
    let server: Ipv6Addr = "fd77::2".parse().unwrap();
    let v6 = record(&old, &[("dport", &9u16.to_ne_bytes()), ("daddr_v6", &server.octets())]);
    assert_eq!(super::tuple(&old, &v6).unwrap().remote, (IpAddr::V6(server), 9));
}

#[test]
fn histograms_keep_the_kernel_buckets_in_seconds() {
    let mut slots = vec![0u64; histogram::SLOTS as usize];
    // 20 ms = 20_000 µs, 100 samples.
    slots[histogram::bucket(20_000) as usize] = 100;
    slots[histogram::SUM_SLOT as usize] = 100 * 20_000;
    let point = histogram_point(&slots, Vec::new(), 1, 2);
    assert_eq!(point.count, 100);
    assert_eq!(point.sum, Some(2.0));
    assert_eq!(point.bucket_counts.len(), point.explicit_bounds.len() + 1);
    assert!((point.explicit_bounds[0] - 1e-6).abs() < 1e-15);
    let p50 = flowtel_core::histogram::explicit_quantile(&point.explicit_bounds, &point.bucket_counts, 0.5, None, None)
        .unwrap();
    assert!((p50 - 0.02).abs() / 0.02 < 0.2, "p50 {p50} within a bucket of 20 ms");
}
