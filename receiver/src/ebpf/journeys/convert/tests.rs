use flowtel_ebpf_common::{DropEvent, IP_V4, Journey};

use super::*;
use crate::ebpf::kernel::{btf::KernelEnums, kallsyms::Kallsyms};

fn hop(hook: u8, time_ns: u64, interface: &str, netns: u32, length: u32) -> Hop {
    let mut ifname = [0u8; 16];
    ifname[..interface.len()].copy_from_slice(interface.as_bytes());
    Hop { time_ns, ifindex: 2, netns, length, hook, pad: [0; 3], ifname }
}

/// A datagram from namespace 1's veth0 into namespace 2's veth1, dropped there.
fn dropped() -> JourneyEvent {
    let mut journey = Journey { first_ns: 1_000, count: 3, ..Default::default() };
    journey.hops[0] = hop(HOOK_NET_DEV_QUEUE, 1_000, "veth0", 1, 228);
    journey.hops[1] = hop(HOOK_NET_DEV_START_XMIT, 2_000, "veth0", 1, 228);
    journey.hops[2] = hop(HOOK_NETIF_RECEIVE_SKB, 3_000, "veth1", 2, 214);
    let mut end = DropEvent {
        ip_version: IP_V4,
        protocol: 17,
        has_ports: 1,
        reason: 7,
        time_ns: 4_000,
        src_port: 40000,
        dst_port: 7000,
        netns: 2,
        length: 214,
        ..Default::default()
    };
    end.src_addr[..4].copy_from_slice(&[10, 77, 0, 1]);
    end.dst_addr[..4].copy_from_slice(&[10, 77, 0, 2]);
    end.ifname[..5].copy_from_slice(b"veth1");
    JourneyEvent { kind: 21, skb: 0xffff_8888_0000_1000, end, journey, ..Default::default() }
}

fn text(attributes: &[KeyValue], key: &str) -> Option<String> {
    flowtel_core::attributes::find_text(attributes, key).map(|t| t.into_owned())
}

#[test]
fn a_dropped_packet_is_a_span_with_its_hooks_in_order() {
    let mut enums = KernelEnums::default();
    enums.drop_reasons.insert(7, "NETFILTER_DROP".into());
    let kallsyms = Kallsyms::default();
    let ctx = DropContext { enums: &enums, kallsyms: &kallsyms, monotonic_to_unix_ns: 10_000, now_unix_ns: 0 };
    let span = journey_span(&dropped(), &ctx, [1; 16], [2; 8]);
    let hooks: Vec<&str> = span.events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(hooks, ["net_dev_queue", "net_dev_start_xmit", "netif_receive_skb", "kfree_skb"]);
    let times: Vec<u64> = span.events.iter().map(|e| e.time_unix_nano).collect();
    assert_eq!(times, [11_000, 12_000, 13_000, 14_000]);
    assert_eq!((span.start_time_unix_nano, span.end_time_unix_nano), (11_000, 14_000));
    assert_eq!(
        text(&span.events[2].attributes, "network.packet.journey.change").as_deref(),
        Some("interface veth0 → veth1, netns 1 → 2, length 228 → 214")
    );
    assert_eq!(text(&span.events[1].attributes, "network.packet.journey.change"), None, "nothing changed");
    assert_eq!(text(&span.events[3].attributes, "network.drop.reason").as_deref(), Some("NETFILTER_DROP"));
    assert_eq!(text(&span.attributes, "network.packet.journey.outcome").as_deref(), Some("dropped"));
    assert_eq!(text(&span.attributes, "source.port").as_deref(), Some("40000"));
    let status = span.status.expect("an error status");
    assert_eq!((status.code, status.message.as_str()), (status::StatusCode::Error as i32, "NETFILTER_DROP"));
}

#[test]
fn a_long_journey_keeps_its_first_hooks_and_counts_the_rest() {
    let mut event = dropped();
    event.journey.count = 20;
    for (index, hop) in event.journey.hops.iter_mut().enumerate() {
        *hop = super::tests::hop(HOOK_NETIF_RX, 1_000 + index as u64, "veth0", 1, 228);
    }
    let enums = KernelEnums::default();
    let kallsyms = Kallsyms::default();
    let ctx = DropContext { enums: &enums, kallsyms: &kallsyms, monotonic_to_unix_ns: 0, now_unix_ns: 0 };
    let span = journey_span(&event, &ctx, [1; 16], [2; 8]);
    assert_eq!(span.events.len(), JOURNEY_HOPS + 1);
    assert_eq!(span.dropped_events_count, 20 - JOURNEY_HOPS as u32);
    assert_eq!(text(&span.attributes, "network.packet.journey.hooks").as_deref(), Some("21"));
}
