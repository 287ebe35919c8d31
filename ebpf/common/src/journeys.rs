//! Packet journeys: a packet followed across the stack's tracepoints, by
//! its `struct sk_buff` (which stays the same across veth pairs, bridges
//! and NAT), from its first hook to its drop or its delivery.

use crate::{DropEvent, NAME_BYTES};

/// Name of the LRU hash of followed packets: `sk_buff` address (`u64`) → [`Journey`].
pub const JOURNEYS_MAP: &str = "JOURNEYS";
/// Packets followed at once at most (the size of [`JOURNEYS_MAP`]).
pub const JOURNEYS_FOLLOWED: u32 = 8192;
/// Name of the load-time constant [`JourneySettings`].
pub const GLOBAL_JOURNEYS: &str = "FLOWTEL_JOURNEYS";
/// [`JourneyEvent::kind`].
pub const EVENT_JOURNEY: u8 = 21;
/// The hooks a journey keeps at most (more are counted in [`Journey::count`]).
pub const JOURNEY_HOPS: usize = 12;
/// At a hook, a journey whose first hook is older than this is a new
/// packet's (the `sk_buff` was freed by a path without a tracepoint and
/// reused); its end is taken whenever it comes.
pub const JOURNEY_STALE_NS: u64 = 1_000_000_000;

/// The hooks: [`Hop::hook`] values, with their program and tracepoint names.
pub const HOOK_NET_DEV_QUEUE: u8 = 1;
/// `net:net_dev_start_xmit`: the driver sends it.
pub const HOOK_NET_DEV_START_XMIT: u8 = 2;
/// `net:netif_rx`: queued for receive (veth, loopback, tunnels).
pub const HOOK_NETIF_RX: u8 = 3;
/// `net:netif_receive_skb`: the stack takes it in.
pub const HOOK_NETIF_RECEIVE_SKB: u8 = 4;
/// `skb:kfree_skb`: dropped.
pub const HOOK_KFREE_SKB: u8 = 5;
/// `skb:consume_skb`: freed after use (delivered).
pub const HOOK_CONSUME_SKB: u8 = 6;
/// `skb:skb_copy_datagram_iovec`: copied to a reader of its socket
/// (delivered; its free may come much later, deferred to another CPU).
pub const HOOK_SKB_COPY_DATAGRAM_IOVEC: u8 = 7;

/// The BTF tracepoints a journey passes: program name (its `_filtered`
/// variant starts journeys only for packets the filter matches) and tracepoint.
pub const JOURNEY_HOOK_PROGRAMS: [(&str, &str); 4] = [
    ("flowtel_journey_net_dev_queue", "net_dev_queue"),
    ("flowtel_journey_net_dev_start_xmit", "net_dev_start_xmit"),
    ("flowtel_journey_netif_rx", "netif_rx"),
    ("flowtel_journey_netif_receive_skb", "netif_receive_skb"),
];
/// The programs ending a journey with a delivery, and their tracepoints.
pub const JOURNEY_DELIVERY_PROGRAMS: [(&str, &str); 2] = [
    ("flowtel_journey_consume_skb", "consume_skb"),
    ("flowtel_journey_skb_copy_datagram_iovec", "skb_copy_datagram_iovec"),
];

/// What the journey programs load with.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JourneySettings {
    /// 1: packets are followed.
    pub enabled: u32,
    /// 1: delivered packets' journeys are sent too (else only drops').
    pub delivered: u32,
    /// Journeys sent a second at most; more are counted, not sent.
    pub max_per_second: u32,
    /// Explicit padding; always zero.
    pub pad: u32,
}

/// One hook a packet passed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hop {
    /// `bpf_ktime_get_ns()` at the hook.
    pub time_ns: u64,
    /// The packet's device there (0: none).
    pub ifindex: u32,
    /// That device's network namespace inode (0: unknown).
    pub netns: u32,
    /// `skb->len` there.
    pub length: u32,
    /// `HOOK_*`.
    pub hook: u8,
    /// Explicit padding; always zero.
    pub pad: [u8; 3],
    /// The device's name.
    pub ifname: [u8; NAME_BYTES],
}

/// A packet being followed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Journey {
    /// `bpf_ktime_get_ns()` of its first hook.
    pub first_ns: u64,
    /// Hooks passed (more than [`JOURNEY_HOPS`]: the first ones are kept).
    pub count: u32,
    /// Explicit padding; always zero.
    pub pad: u32,
    /// The hooks, in order.
    pub hops: [Hop; JOURNEY_HOPS],
}

/// A finished journey, sent to userspace.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JourneyEvent {
    /// [`EVENT_JOURNEY`].
    pub kind: u8,
    /// 1: delivered, 0: dropped.
    pub delivered: u8,
    /// The hook that ended it (`HOOK_*`).
    pub end_hook: u8,
    /// Explicit padding; always zero.
    pub pad: [u8; 5],
    /// The `sk_buff`'s address: with `journey.first_ns`, the tracking id.
    pub skb: u64,
    /// The end: reason and location of a drop, the packet's tuple, its
    /// device and time there (`kind` is that of a drop event).
    pub end: DropEvent,
    /// The hooks before the end.
    pub journey: Journey,
}
