//! Per-flow aggregation in an LRU hash, and the new-flow and flow-end
//! events. Every way an event or a count can be lost has a counter.

#[cfg(feature = "perf-events")]
use aya_ebpf::maps::PerfEventArray;
#[cfg(not(feature = "perf-events"))]
use aya_ebpf::maps::RingBuf;
use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_get_prandom_u32, bpf_ktime_get_ns},
    macros::map,
    maps::{LruPerCpuHashMap, PerCpuArray},
    programs::TcContext,
};
use flowtel_ebpf_common::{COUNTERS, Counter, EVENT_FLOW_END, FlowEvent, FlowKey, FlowStats, ipproto, tcp_flags};

use crate::{
    exchanges, filter,
    parse::{PACKET, Packet, Skip, parse},
    trace_context,
};

/// Active flows, one value per CPU so updates need no atomics (userspace
/// sums them). Userspace reads and deletes entries; the kernel evicts the
/// least recently used when full (userspace notices and counts that).
#[map(name = "FLOWS")]
static FLOWS: LruPerCpuHashMap<FlowKey, FlowStats> = LruPerCpuHashMap::with_max_entries(65_536, 0);

/// New-flow and flow-end events (kernel 5.8+).
#[cfg(not(feature = "perf-events"))]
#[map(name = "FLOW_EVENTS")]
pub(crate) static FLOW_EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// The same events, in the build for perf buffers.
#[cfg(feature = "perf-events")]
#[map(name = "FLOW_EVENTS_PERF")]
static FLOW_EVENTS_PERF: PerfEventArray<FlowEvent> = PerfEventArray::new(0);

/// Count one packet in this many; set by userspace at load time (a
/// constant to the verifier, so it costs no map lookup per packet).
#[unsafe(no_mangle)]
static FLOWTEL_SAMPLING: u32 = 1;

/// Reads a load-time constant (volatile, so the compiler keeps the read).
#[inline(always)]
pub(crate) fn global(value: &u32) -> u32 {
    // SAFETY: a reference to a static is valid to read.
    unsafe { core::ptr::read_volatile(value) }
}

/// Loss and health counters, indexed by `Counter`.
#[map(name = "FLOW_COUNTERS")]
static FLOW_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTERS, 0);

#[inline(always)]
pub(crate) fn count(counter: Counter) {
    if let Some(slot) = FLOW_COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: a per-CPU slot, only touched by this CPU.
        unsafe { *slot += 1 };
    }
}

/// What one packet adds to its flow.
struct Update {
    bytes: u64,
    now: u64,
    flags: u8,
    /// A response's latency (0: the packet is no response).
    response_ns: u64,
}

#[inline(always)]
fn add(stats: *mut FlowStats, update: &Update) {
    // SAFETY: `stats` points at this CPU's copy of a live map value.
    unsafe {
        if (*stats).packets == 0 {
            (*stats).first_seen_ns = update.now;
            (*stats).first_tcp_flags = update.flags;
        }
        (*stats).bytes += update.bytes;
        (*stats).packets += 1;
        (*stats).last_seen_ns = update.now;
        if update.flags != 0 {
            (*stats).tcp_flags |= u16::from(update.flags);
        }
        if update.response_ns != 0 {
            (*stats).responses += 1;
            (*stats).response_ns += update.response_ns;
        }
    }
}

/// Counts one packet the TC program saw; with `FILTERED`, only when it
/// matches the packet filter.
#[inline(always)]
pub fn record<const FILTERED: bool>(ctx: &TcContext, direction: u8) {
    count(Counter::PacketsSeen);
    if FILTERED && !filter::matches_frame(ctx) {
        count(Counter::PacketsFilteredOut);
        return;
    }
    let sampling = global(&FLOWTEL_SAMPLING);
    // SAFETY: a helper without preconditions.
    if sampling > 1 && unsafe { bpf_get_prandom_u32() } % sampling != 0 {
        count(Counter::PacketsSampledOut);
        return;
    }
    let Some(packet) = PACKET.get_ptr_mut(0) else { return };
    // SAFETY: this CPU's slot; nothing else runs on this CPU meanwhile.
    let packet = unsafe { &mut *packet };
    match parse(ctx, packet) {
        Ok(()) => {}
        Err(Skip::NotIp) => {
            count(Counter::NonIpPackets);
            return;
        }
        Err(Skip::Malformed) => {
            count(Counter::ParseFailures);
            return;
        }
    }
    packet.key.direction = direction;
    // SAFETY: the context's skb pointer is valid for the program's run.
    packet.key.ifindex = unsafe { (*ctx.skb.skb).ifindex };
    if packet.key.protocol == ipproto::TCP {
        // A request's first packet goes to the header reader, which counts
        // it under its new context; this returns when there is none to read.
        trace_context::hand_over(ctx, packet);
    }
    count_packet(ctx, packet);
}

/// Counts a parsed packet in its flow (for TCP, the flow of the request in
/// flight on its connection, and the exchange it belongs to) and raises a
/// flow-end event on FIN or RST.
#[inline(always)]
pub fn count_packet(ctx: &TcContext, packet: &mut Packet) {
    let tcp_flags = packet.tcp_flags;
    let key = &mut packet.key;
    if key.protocol == ipproto::TCP {
        trace_context::current(
            key.ip_version,
            &key.src_addr,
            key.src_port,
            &key.dst_addr,
            key.dst_port,
            &mut key.trace,
        );
    }
    let key = &*key;
    // SAFETY: a helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let bytes = u64::from(ctx.len());
    let response_ns = if key.protocol == ipproto::TCP && exchanges::enabled() {
        // `tcp_payload` is 0 where the TCP header was not read: no payload known.
        let payload = if packet.tcp_payload == 0 { 0 } else { ctx.len().saturating_sub(packet.tcp_payload) };
        exchanges::on_tcp_packet(key, tcp_flags, payload, now)
    } else {
        0
    };
    let update = Update { bytes, now, flags: tcp_flags, response_ns };

    match FLOWS.get_ptr_mut(key) {
        Some(stats) => add(stats, &update),
        None => {
            let mut stats = FlowStats::default();
            add(&mut stats, &update);
            // A new flow raises no event: userspace finds it in the table at
            // its next flush, and the ring keeps its room for flow ends.
            if FLOWS.insert(key, &stats, u64::from(BPF_NOEXIST)).is_err() {
                if let Some(stats) = FLOWS.get_ptr_mut(key) {
                    // Another CPU inserted it first (this CPU's copy starts at zero).
                    add(stats, &update);
                } else {
                    count(Counter::FlowMapInsertFailures);
                    return;
                }
            }
        }
    }
    if key.protocol == ipproto::TCP && u16::from(tcp_flags) & (tcp_flags::FIN | tcp_flags::RST) != 0 {
        emit(ctx, key, EVENT_FLOW_END, tcp_flags);
    }
}

#[inline(always)]
fn emit(ctx: &TcContext, key: &FlowKey, kind: u8, packet_tcp_flags: u8) {
    let stats = match FLOWS.get_ptr(key) {
        // SAFETY: a live map value, copied out.
        Some(stats) => unsafe { *stats },
        None => FlowStats::default(),
    };
    let event = FlowEvent { key: *key, stats, kind, packet_tcp_flags, pad: [0; 6] };
    // Perf buffer losses are reported to userspace by the perf ring itself.
    #[cfg(feature = "perf-events")]
    FLOW_EVENTS_PERF.output(ctx, &event, 0);
    #[cfg(not(feature = "perf-events"))]
    if FLOW_EVENTS.output::<FlowEvent>(&event, 0).is_err() {
        let _ = ctx;
        count(Counter::RingBufferFull);
    }
}
