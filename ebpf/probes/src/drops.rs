//! Packet drops: `skb:kfree_skb`, through its BTF tracepoint or the classic
//! one. Every drop is counted per reason, interface and namespace; events
//! go out 1 in N, N rising past `max_events_per_second` or a filling ring
//! (each event says its N), and what that held back is counted too.

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_F_REUSE_STACKID, BPF_NOEXIST},
    cty::c_void,
    helpers::{bpf_ktime_get_ns, generated::bpf_probe_read_kernel},
    macros::map,
    maps::{HashMap, PerCpuArray, PerCpuHashMap, StackTrace},
    programs::tracing::StackIdContext,
};
use flowtel_ebpf_common::{
    DropCount, DropCountKey, DropEvent, DropSettings, EVENT_DROP, EventCounter, GOVERNOR_DROPS, HOOK_CONSUME_SKB,
    HOOK_KFREE_SKB, IP_V4, IP_V6, NAME_BYTES, PACKET_CAPTURE_BYTES, TraceContext, ipproto,
};

use crate::{
    filter,
    flows::global,
    journeys,
    kernel::{
        FLOWTEL_LAYOUT, admit, copy_length, count, device, network_packet, offset, read, read_at, read_into, send,
    },
    trace_context,
};

/// What the program loads with; set by userspace.
#[unsafe(no_mangle)]
static FLOWTEL_DROPS: DropSettings =
    DropSettings { consumed_reason: 0, not_dropped_reason: 0, max_events_per_second: 0, stack_trace: 0, snaplen: 0 };

/// Drops per reason, interface and namespace (one value per CPU).
#[map(name = "DROP_COUNTS")]
static DROP_COUNTS: PerCpuHashMap<DropCountKey, DropCount> = PerCpuHashMap::with_max_entries(4096, 0);

/// Reasons userspace asked never to report.
#[map(name = "EXCLUDED_DROP_REASONS")]
static EXCLUDED_DROP_REASONS: HashMap<u32, u8> = HashMap::with_max_entries(256, 0);

/// Kernel stacks of drops (only filled with `stack_trace`).
#[map(name = "DROP_STACKS")]
static DROP_STACKS: StackTrace = StackTrace::with_max_entries(8192, 0);

/// Where a [`DropEvent`] is built (the BPF stack is too small for it and the rest).
#[map(name = "DROP_EVENT_SCRATCH")]
static DROP_EVENT_SCRATCH: PerCpuArray<DropEvent> = PerCpuArray::with_max_entries(1, 0);

/// A value of [`FLOWTEL_DROPS`].
#[inline(always)]
fn setting(field: &u32) -> u32 {
    global(field)
}

#[inline(always)]
fn count_drop(key: &DropCountKey, name: &[u8; NAME_BYTES], limited: bool) {
    let limited = u64::from(limited);
    if let Some(value) = DROP_COUNTS.get_ptr_mut(key) {
        // SAFETY: this CPU's copy of a live map value.
        unsafe {
            (*value).packets += 1;
            (*value).rate_limited += limited;
        }
        return;
    }
    let value = DropCount { packets: 1, rate_limited: limited, ifname: *name };
    if DROP_COUNTS.insert(key, &value, u64::from(BPF_NOEXIST)).is_ok() {
        return;
    }
    match DROP_COUNTS.get_ptr_mut(key) {
        // Another CPU made the entry first; this CPU's copy starts at zero.
        // SAFETY: as above.
        Some(value) => unsafe {
            (*value).packets += 1;
            (*value).rate_limited += limited;
            (*value).ifname = *name;
        },
        None => count(EventCounter::DropCountMapFull),
    }
}

/// Handles one `kfree_skb`: `skb` is the `struct sk_buff *`, `location` the
/// caller's address, `reason` the `enum skb_drop_reason` value. With
/// `FILTERED`, a drop the packet filter does not match is only counted as such.
#[inline(always)]
pub fn on_kfree_skb<const FILTERED: bool, C: EbpfContext + StackIdContext>(
    ctx: &C,
    skb: *const u8,
    location: u64,
    reason: u32,
) {
    if reason == setting(&FLOWTEL_DROPS.consumed_reason) {
        // Older kernels free delivered packets through kfree_skb too.
        journeys::on_end(ctx, skb, HOOK_CONSUME_SKB, reason, location);
        return;
    }
    if reason == setting(&FLOWTEL_DROPS.not_dropped_reason) {
        return;
    }
    // SAFETY: a map lookup; the value is not used.
    if unsafe { EXCLUDED_DROP_REASONS.get(&reason) }.is_some() {
        return;
    }
    journeys::on_end(ctx, skb, HOOK_KFREE_SKB, reason, location);
    if FILTERED && !filter::matches_skb(skb) {
        count(EventCounter::DropsFilteredOut);
        return;
    }
    let dev = read::<*const u8>(skb, offset(&FLOWTEL_LAYOUT.skb_dev)).unwrap_or(core::ptr::null());
    let (ifindex, netns, ifname) = device(dev);
    // SAFETY: a helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let rate = admit(GOVERNOR_DROPS, u64::from(setting(&FLOWTEL_DROPS.max_events_per_second)), now);
    count_drop(&DropCountKey { reason, ifindex, netns, pad: 0 }, &ifname, rate == 0);
    if rate == 0 {
        return;
    }
    let Some(event) = DROP_EVENT_SCRATCH.get_ptr_mut(0) else { return };
    // SAFETY: this CPU's scratch slot; nothing else runs on it meanwhile.
    let event = unsafe { &mut *event };
    describe(event, skb, (reason, location), (ifindex, netns, ifname), now);
    event.sampling_rate = rate;
    if event.protocol == ipproto::TCP && event.has_ports == 1 {
        trace_context::current(
            event.ip_version,
            &event.src_addr,
            event.src_port,
            &event.dst_addr,
            event.dst_port,
            &mut event.trace,
        );
    }
    if setting(&FLOWTEL_DROPS.stack_trace) != 0 {
        event.stack_id = ctx.get_stackid(&DROP_STACKS, u64::from(BPF_F_REUSE_STACKID)).unwrap_or(-1);
    }
    send(ctx, event, EventCounter::DropRingBufferFull);
}

/// Writes what a drop event says of a packet freed at `location` for
/// `reason` on `device` (index, namespace, name) at `now`: its length,
/// tuple and first bytes; no stack, no trace context, sent as 1 in 1.
/// Field by field, into the event: a whole `DropEvent` built first would
/// sit on the stack.
#[inline(always)]
pub(crate) fn describe(
    event: &mut DropEvent,
    skb: *const u8,
    (reason, location): (u32, u64),
    (ifindex, netns, ifname): (u32, u32, [u8; NAME_BYTES]),
    now: u64,
) {
    event.kind = EVENT_DROP;
    event.reason = reason;
    event.time_ns = now;
    event.location = location;
    event.ifindex = ifindex;
    event.netns = netns;
    event.ifname = ifname;
    event.length = read::<u32>(skb, offset(&FLOWTEL_LAYOUT.skb_len)).unwrap_or(0);
    event.sampling_rate = 1;
    event.stack_id = -1;
    event.ip_version = 0;
    event.protocol = 0;
    event.has_ports = 0;
    event.src_addr = [0; 16];
    event.dst_addr = [0; 16];
    event.src_port = 0;
    event.dst_port = 0;
    event.trace = TraceContext::default();
    read_tuple(skb, event);
    event.captured = capture(skb, &mut event.packet);
}

/// Copies up to `snaplen` bytes of the packet from its network header into
/// `packet`; how many.
#[inline(always)]
fn capture(skb: *const u8, packet: &mut [u8; PACKET_CAPTURE_BYTES]) -> u32 {
    let snaplen = setting(&FLOWTEL_DROPS.snaplen) as usize;
    if snaplen == 0 {
        return 0;
    }
    let Some(network) = network_packet(skb) else { return 0 };
    let Some(wanted) = copy_length::<PACKET_CAPTURE_BYTES>((network.linear as usize).min(snaplen)) else {
        return 0;
    };
    // SAFETY: the helper checks the source; the destination is `wanted`
    // (1..=PACKET_CAPTURE_BYTES) bytes of the event.
    let copied =
        unsafe { bpf_probe_read_kernel(packet.as_mut_ptr().cast(), wanted as u32, network.start as *const c_void) };
    if copied == 0 { wanted as u32 } else { 0 }
}

/// Reads the addresses and ports from the packet's headers, where the
/// kernel has set its network header.
#[inline(always)]
fn read_tuple(skb: *const u8, event: &mut DropEvent) {
    const UNSET: u16 = 0xffff;
    let Some(head) = read::<*const u8>(skb, offset(&FLOWTEL_LAYOUT.skb_head)) else { return };
    let Some(network) = read::<u16>(skb, offset(&FLOWTEL_LAYOUT.skb_network_header)) else { return };
    let transport = read::<u16>(skb, offset(&FLOWTEL_LAYOUT.skb_transport_header)).unwrap_or(UNSET);
    if head.is_null() || network == UNSET {
        return;
    }
    // SAFETY: address arithmetic only; every read goes through the helper.
    let ip = unsafe { head.add(usize::from(network)) };
    let Some(first) = read_at::<u8>(ip) else { return };
    let l4_default = match first >> 4 {
        4 => {
            let Some(protocol) = read::<u8>(ip, 9) else { return };
            // Straight into the event (a map value): copies through the
            // stack left 5.10's verifier a spill it took as uninitialised.
            if !read_into(ip, 12, &mut event.src_addr[..4]) || !read_into(ip, 16, &mut event.dst_addr[..4]) {
                return;
            }
            event.ip_version = IP_V4;
            event.protocol = protocol;
            // A non-first fragment has no L4 header.
            let fragment = read::<[u8; 2]>(ip, 6).map(u16::from_be_bytes).unwrap_or(0) & 0x1fff;
            if fragment != 0 {
                return;
            }
            network + u16::from(first & 0x0f) * 4
        }
        6 => {
            let Some(protocol) = read::<u8>(ip, 6) else { return };
            if !read_into(ip, 8, &mut event.src_addr) || !read_into(ip, 24, &mut event.dst_addr) {
                return;
            }
            event.ip_version = IP_V6;
            event.protocol = protocol;
            network + 40
        }
        _ => return,
    };
    // The kernel's transport header, where set, is past any IPv6 extension headers.
    let l4 = if transport != UNSET && transport > network { transport } else { l4_default };
    // SAFETY: address arithmetic only.
    let l4 = unsafe { head.add(usize::from(l4)) };
    match event.protocol {
        ipproto::TCP | ipproto::UDP | ipproto::SCTP => {
            if let (Some(src), Some(dst)) = (read_at::<[u8; 2]>(l4), read::<[u8; 2]>(l4, 2)) {
                event.src_port = u16::from_be_bytes(src);
                event.dst_port = u16::from_be_bytes(dst);
                event.has_ports = 1;
            }
        }
        ipproto::ICMP | ipproto::ICMPV6 => {
            if let Some([kind, code]) = read_at::<[u8; 2]>(l4) {
                event.src_port = u16::from(kind);
                event.dst_port = u16::from(code);
                event.has_ports = 1;
            }
        }
        _ => {}
    }
}
