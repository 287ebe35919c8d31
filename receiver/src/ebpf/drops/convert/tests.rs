use flowtel_ebpf_common::{IP_V4, IP_V6, NAME_BYTES, ipproto};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value::Value};

use super::*;

fn enums() -> KernelEnums {
    KernelEnums {
        drop_reasons: [(1, "CONSUMED"), (3, "NO_SOCKET"), (12, "NETFILTER_DROP")]
            .into_iter()
            .map(|(v, n)| (v, n.to_owned()))
            .collect(),
        ..KernelEnums::default()
    }
}

fn name(text: &str) -> [u8; NAME_BYTES] {
    let mut out = [0; NAME_BYTES];
    out[..text.len()].copy_from_slice(text.as_bytes());
    out
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn string(attributes: &[KeyValue], key: &str) -> Option<String> {
    match attribute(attributes, key)? {
        Value::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

fn int(attributes: &[KeyValue], key: &str) -> Option<i64> {
    match attribute(attributes, key)? {
        Value::IntValue(i) => Some(*i),
        _ => None,
    }
}

const KALLSYMS: &str = "ffffffff81000000 T bpf_prog_abc_flowtel_kfree_skb_btf\nffffffff81000100 T bpf_trace_run4\n\
                        ffffffff81000200 T sk_skb_reason_drop\nffffffff81a00000 t tcp_v4_rcv\nffffffff81b00000 T ip_rcv\n";

#[test]
fn a_drop_record_names_the_reason_location_and_tuple() {
    let kallsyms = Kallsyms::parse(KALLSYMS);
    let enums = enums();
    let ctx = DropContext { enums: &enums, kallsyms: &kallsyms, monotonic_to_unix_ns: 1_000, now_unix_ns: 9_000 };
    let mut event = DropEvent {
        kind: flowtel_ebpf_common::EVENT_DROP,
        ip_version: IP_V4,
        protocol: ipproto::TCP,
        has_ports: 1,
        reason: 3,
        time_ns: 500,
        location: 0xffffffff81a00042,
        src_port: 40_000,
        dst_port: 9,
        ifindex: 2,
        netns: 4026531840,
        length: 60,
        stack_id: 7,
        ifname: name("veth-b"),
        ..DropEvent::default()
    };
    event.src_addr[..4].copy_from_slice(&[10, 0, 0, 1]);
    event.dst_addr[..4].copy_from_slice(&[10, 0, 0, 2]);
    let stack = [0xffffffff81000010, 0xffffffff81000110, 0xffffffff81000210, 0xffffffff81a00042, 0xffffffff81b00001, 0];
    let record = drop_record(&event, Some(&stack), &ctx);
    assert_eq!(record.event_name, "network.packet.drop");
    assert_eq!(record.time_unix_nano, 1_500);
    assert_eq!(record.observed_time_unix_nano, 9_000);
    let a = &record.attributes;
    assert_eq!(string(a, "network.drop.reason").as_deref(), Some("NO_SOCKET"));
    assert_eq!(string(a, "network.drop.location").as_deref(), Some("tcp_v4_rcv"));
    assert_eq!(string(a, "source.address").as_deref(), Some("10.0.0.1"));
    assert_eq!(string(a, "destination.address").as_deref(), Some("10.0.0.2"));
    assert_eq!((int(a, "source.port"), int(a, "destination.port")), (Some(40_000), Some(9)));
    assert_eq!(string(a, "network.transport").as_deref(), Some("tcp"));
    assert_eq!(string(a, "network.interface.name").as_deref(), Some("veth-b"));
    assert_eq!(int(a, "linux.netns.inode"), Some(4026531840));
    assert_eq!(int(a, "network.packet.length"), Some(60));
    let Some(Value::ArrayValue(frames)) = attribute(a, "network.drop.stack") else { panic!("no stack") };
    let frames: Vec<&str> = frames
        .values
        .iter()
        .filter_map(|v| match &v.value {
            Some(Value::StringValue(s)) => Some(s.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(frames, ["sk_skb_reason_drop+0x10", "tcp_v4_rcv+0x42", "ip_rcv+0x1"], "tracing frames are skipped");
}

#[test]
fn a_drop_without_headers_or_device_has_no_tuple() {
    let kallsyms = Kallsyms::default();
    let enums = enums();
    let ctx = DropContext { enums: &enums, kallsyms: &kallsyms, monotonic_to_unix_ns: 0, now_unix_ns: 0 };
    let event = DropEvent { reason: 12, location: 0x1234, stack_id: -1, ..DropEvent::default() };
    let record = drop_record(&event, None, &ctx);
    let a = &record.attributes;
    assert_eq!(string(a, "network.drop.reason").as_deref(), Some("NETFILTER_DROP"));
    assert_eq!(string(a, "network.drop.location").as_deref(), Some("0x1234"));
    for absent in ["source.address", "source.port", "network.interface.name", "linux.netns.inode", "network.drop.stack"]
    {
        assert!(attribute(a, absent).is_none(), "{absent}");
    }
}

#[test]
fn icmp_drops_carry_type_and_code_and_ipv6_addresses_print_as_ipv6() {
    let kallsyms = Kallsyms::default();
    let enums = enums();
    let ctx = DropContext { enums: &enums, kallsyms: &kallsyms, monotonic_to_unix_ns: 0, now_unix_ns: 0 };
    let mut event = DropEvent {
        ip_version: IP_V6,
        protocol: ipproto::ICMPV6,
        has_ports: 1,
        src_port: 128,
        reason: 12,
        ..DropEvent::default()
    };
    event.dst_addr[15] = 1;
    let a = drop_record(&event, None, &ctx).attributes;
    assert_eq!(int(&a, "network.icmp.type"), Some(128));
    assert_eq!(int(&a, "network.icmp.code"), Some(0));
    assert!(attribute(&a, "source.port").is_none());
    assert_eq!(string(&a, "destination.address").as_deref(), Some("::1"));
    assert_eq!(string(&a, "network.type").as_deref(), Some("ipv6"));
}

#[test]
fn reasons_the_kernel_does_not_name() {
    assert_eq!(reason_name(&enums(), 0x0001_0002), "UNKNOWN_0x10002");
    assert_eq!(reason_name(&KernelEnums::default(), u32::MAX), "NOT_SPECIFIED", "kernels before 5.17");
}

#[test]
fn counters_sum_over_cpus_and_merge_by_reason_and_interface() {
    let key = |reason, ifindex, netns| DropCountKey { reason, ifindex, netns, pad: 0 };
    let count = |packets, rate_limited, ifname: &str| DropCount { packets, rate_limited, ifname: name(ifname) };
    // The same interface name in two namespaces, on two CPUs; one CPU never saw the entry.
    let a = [count(3, 1, "eth0"), count(0, 0, "")];
    let b = [count(2, 0, ""), count(4, 2, "eth0")];
    let c = [count(5, 0, "veth1"), count(1, 0, "veth1")];
    let totals = DropTotals::sum(&enums(), [(key(3, 2, 1), &a[..]), (key(3, 2, 2), &b[..]), (key(12, 7, 1), &c[..])]);
    assert_eq!(totals.dropped.get(&("NO_SOCKET".into(), "eth0".into())), Some(&9));
    assert_eq!(totals.dropped.get(&("NETFILTER_DROP".into(), "veth1".into())), Some(&6));
    assert_eq!(totals.rate_limited, 3);
    let metric = totals.metric(10, 20);
    assert_eq!(metric.name, "network.packet.drops");
    let Some(opentelemetry_proto::tonic::metrics::v1::metric::Data::Sum(sum)) = metric.data else { panic!() };
    assert!(sum.is_monotonic);
    assert_eq!(sum.data_points.len(), 2);
}

/// Found by the `kernel_events` fuzz target: a time near the end of the
/// clock overflowed when turned into Unix time.
#[test]
fn a_time_at_the_end_of_the_clock_does_not_overflow() {
    let event = DropEvent { time_ns: u64::MAX, ..DropEvent::default() };
    let kallsyms = Kallsyms::parse("");
    let ctx = DropContext { enums: &enums(), kallsyms: &kallsyms, monotonic_to_unix_ns: 1 << 62, now_unix_ns: 2 };
    assert_eq!(drop_record(&event, None, &ctx).time_unix_nano, u64::MAX);
}
