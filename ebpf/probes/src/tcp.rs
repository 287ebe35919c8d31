//! TCP: retransmits and resets as events carrying the tracepoint's own
//! record, RTT and handshake latency into in-kernel histograms, and one
//! connection event when a socket closes, with the process that opened it.

use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns,
        bpf_probe_read_kernel_buf,
    },
    macros::map,
    maps::{LruHashMap, PerCpuArray},
    programs::TracePointContext,
};
use flowtel_ebpf_common::{
    EVENT_TCP_CONNECTION, EVENT_TCP_RESET_RECEIVED, EVENT_TCP_RESET_SENT, EVENT_TCP_RETRANSMIT, EventCounter,
    GOVERNOR_TCP, HISTOGRAMS, Histogram, SIDE_CLIENT, SIDE_SERVER, SockOpen, TcpEvent, TcpSettings, UNKNOWN, histogram,
};

use crate::{
    filter,
    flows::global,
    kernel::{FLOWTEL_LAYOUT, add, admit, count, device, field, offset, read, send, sock_netns},
    trace_context,
};

/// Socket states and protocol numbers of this kernel; set by userspace.
#[unsafe(no_mangle)]
static FLOWTEL_TCP: TcpSettings = TcpSettings {
    established: 0,
    syn_sent: 0,
    syn_recv: 0,
    close: 0,
    listen: 0,
    protocol_tcp: 0,
    max_events_per_second: 0,
};

/// Open TCP sockets by address, from `SYN_SENT` / `SYN_RECV` to `CLOSE`.
#[map(name = "TCP_SOCKETS")]
static TCP_SOCKETS: LruHashMap<u64, SockOpen> = LruHashMap::with_max_entries(65_536, 0);

/// RTT and handshake histograms (see `flowtel_ebpf_common::histogram`).
#[map(name = "TCP_HISTOGRAMS")]
static TCP_HISTOGRAMS: PerCpuArray<u64> = PerCpuArray::with_max_entries(HISTOGRAMS * histogram::SLOTS, 0);

/// Where a [`TcpEvent`] is built (too big for the 512-byte stack with the rest).
#[map(name = "TCP_EVENT_SCRATCH")]
static TCP_EVENT_SCRATCH: PerCpuArray<TcpEvent> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn observe(which: Histogram, value_us: u64) {
    let base = which as u32 * histogram::SLOTS;
    if let Some(slot) = TCP_HISTOGRAMS.get_ptr_mut(base + histogram::bucket(value_us)) {
        // SAFETY: a per-CPU slot, only touched by this CPU.
        unsafe { *slot += 1 };
    }
    if let Some(sum) = TCP_HISTOGRAMS.get_ptr_mut(base + histogram::SUM_SLOT) {
        // SAFETY: as above.
        unsafe { *sum += value_us };
    }
}

/// Sends a [`TcpEvent`] of `kind` for the socket `sk` (may be null):
/// the record, the socket's namespace and, for connections, its TCP state.
#[inline(always)]
fn send_event(ctx: &TracePointContext, kind: u8, sk: *const u8, netns: u32, open: Option<SockOpen>, segments: u16) {
    // SAFETY: a helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let rate = admit(GOVERNOR_TCP, u64::from(global(&FLOWTEL_TCP.max_events_per_second)), now);
    if rate == 0 {
        count(EventCounter::TcpSampledOut);
        return;
    }
    let Some(event) = TCP_EVENT_SCRATCH.get_ptr_mut(0) else { return };
    // SAFETY: this CPU's scratch slot; nothing else runs on it meanwhile.
    let event = unsafe { &mut *event };
    event.kind = kind;
    event.sampling_rate = rate;
    event.pad2 = 0;
    event.segments = segments;
    event.netns = if sk.is_null() { netns } else { sock_netns(sk) };
    trace_context::of_socket(sk, &mut event.trace);
    event.time_ns = now;
    if let Some(open) = open {
        event.open = open;
        event.srtt_us8 = u64::from(read::<u32>(sk, offset(&FLOWTEL_LAYOUT.tcp_srtt_us)).unwrap_or(0));
        event.bytes_acked = read::<u64>(sk, offset(&FLOWTEL_LAYOUT.tcp_bytes_acked)).unwrap_or(0);
        event.bytes_received = read::<u64>(sk, offset(&FLOWTEL_LAYOUT.tcp_bytes_received)).unwrap_or(0);
    } else {
        event.open = SockOpen::default();
        event.srtt_us8 = 0;
        event.bytes_acked = 0;
        event.bytes_received = 0;
    }
    // SAFETY: the helper checks the source; the record may be shorter than
    // the copy, and what follows it in the trace buffer is ignored by userspace.
    if unsafe { bpf_probe_read_kernel_buf(ctx.as_ptr().cast::<u8>(), &mut event.record) }.is_err() {
        event.record = [0; flowtel_ebpf_common::RECORD_BYTES];
    }
    send(ctx, event, EventCounter::RingBufferFull);
}

/// `tcp:tcp_retransmit_skb`: counts the packet's segments, then sends the record.
#[inline(always)]
pub fn on_retransmit<const FILTERED: bool>(ctx: &TracePointContext) {
    let sk = field::<u64>(ctx, &FLOWTEL_LAYOUT.retransmit_skaddr).unwrap_or(0) as *const u8;
    if !wanted::<FILTERED>(|| filter::matches_socket(sk)) {
        return;
    }
    let skb = field::<u64>(ctx, &FLOWTEL_LAYOUT.retransmit_skbaddr).unwrap_or(0) as *const u8;
    let cb = offset(&FLOWTEL_LAYOUT.skb_cb);
    let segs_in_cb = offset(&FLOWTEL_LAYOUT.tcp_cb_gso_segs);
    let segments = if cb == UNKNOWN || segs_in_cb == UNKNOWN {
        0
    } else {
        read::<u16>(skb, cb.wrapping_add(segs_in_cb)).unwrap_or(0)
    };
    add(EventCounter::Retransmits, u64::from(segments.max(1)));
    send_event(ctx, EVENT_TCP_RETRANSMIT, sk, 0, None, segments);
}

/// `tcp:tcp_receive_reset`: count, then send the record.
#[inline(always)]
pub fn on_receive_reset<const FILTERED: bool>(ctx: &TracePointContext) {
    let sk = field::<u64>(ctx, &FLOWTEL_LAYOUT.receive_reset_skaddr).unwrap_or(0) as *const u8;
    if !wanted::<FILTERED>(|| filter::matches_socket(sk)) {
        return;
    }
    count(EventCounter::ResetsReceived);
    send_event(ctx, EVENT_TCP_RESET_RECEIVED, sk, 0, None, 0);
}

/// `tcp:tcp_send_reset`: like the others, but a reset answering a packet
/// that found no socket has none; its namespace is the packet's device's.
#[inline(always)]
pub fn on_send_reset<const FILTERED: bool>(ctx: &TracePointContext) {
    let sk = field::<u64>(ctx, &FLOWTEL_LAYOUT.send_reset_skaddr).unwrap_or(0) as *const u8;
    let skb = field::<u64>(ctx, &FLOWTEL_LAYOUT.send_reset_skbaddr).unwrap_or(0) as *const u8;
    // Without a socket, the filter judges the packet the reset answers.
    if !wanted::<FILTERED>(|| if sk.is_null() { filter::matches_skb(skb) } else { filter::matches_socket(sk) }) {
        return;
    }
    count(EventCounter::ResetsSent);
    let mut netns = 0;
    if sk.is_null() {
        let dev = read::<*const u8>(skb, offset(&FLOWTEL_LAYOUT.skb_dev)).unwrap_or(core::ptr::null());
        netns = device(dev).1;
    }
    send_event(ctx, EVENT_TCP_RESET_SENT, sk, netns, None, 0);
}

/// `tcp:tcp_probe`: one smoothed-RTT sample per segment received.
#[inline(always)]
pub fn on_probe<const FILTERED: bool>(ctx: &TracePointContext) {
    // Kernels whose record has no socket leave the filter nothing to judge.
    let sk = || field::<u64>(ctx, &FLOWTEL_LAYOUT.tcp_probe_skaddr).unwrap_or(0) as *const u8;
    if !wanted::<FILTERED>(|| filter::matches_socket(sk())) {
        return;
    }
    if let Some(srtt_us) = field::<u32>(ctx, &FLOWTEL_LAYOUT.tcp_probe_srtt)
        && srtt_us != 0
    {
        observe(Histogram::Rtt, u64::from(srtt_us));
    }
}

/// `sock:inet_sock_set_state`: handshake latency and connection lifetimes.
#[inline(always)]
pub fn on_set_state<const FILTERED: bool>(ctx: &TracePointContext) {
    let tcp = |field: &u32| global(field);
    let Some(protocol) = field::<u16>(ctx, &FLOWTEL_LAYOUT.set_state_protocol) else { return };
    if u32::from(protocol) != tcp(&FLOWTEL_TCP.protocol_tcp) {
        return;
    }
    let (Some(old), Some(new), Some(sk)) = (
        field::<i32>(ctx, &FLOWTEL_LAYOUT.set_state_oldstate),
        field::<i32>(ctx, &FLOWTEL_LAYOUT.set_state_newstate),
        field::<u64>(ctx, &FLOWTEL_LAYOUT.set_state_skaddr),
    ) else {
        return;
    };
    if !wanted::<FILTERED>(|| filter::matches_socket(sk as *const u8)) {
        return;
    }
    let (old, new) = (old as u32, new as u32);
    // SAFETY: a helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    if new == tcp(&FLOWTEL_TCP.syn_sent) {
        // connect(): runs in the connecting process.
        let open = SockOpen {
            opened_ns: now,
            pid: (bpf_get_current_pid_tgid() >> 32) as u32,
            // SAFETY: a helper without preconditions.
            cgroup_id: unsafe { bpf_get_current_cgroup_id() },
            comm: bpf_get_current_comm().unwrap_or([0; 16]),
            side: SIDE_CLIENT,
            ..SockOpen::default()
        };
        track(sk, &open);
    } else if new == tcp(&FLOWTEL_TCP.syn_recv) {
        track(sk, &SockOpen { opened_ns: now, side: SIDE_SERVER, ..SockOpen::default() });
    } else if new == tcp(&FLOWTEL_TCP.established) {
        on_established(sk, old, now);
    } else if new == tcp(&FLOWTEL_TCP.close) && old != tcp(&FLOWTEL_TCP.listen) {
        // SAFETY: copied out of a live map value.
        let open = unsafe { TCP_SOCKETS.get(&sk) }.copied().unwrap_or_default();
        let _ = TCP_SOCKETS.remove(&sk);
        send_event(ctx, EVENT_TCP_CONNECTION, sk as *const u8, 0, Some(open), 0);
    }
}

/// With `FILTERED`: whether the packet filter matches (`matches` runs it;
/// counted when it does not). Without, always, and `matches` never runs.
#[inline(always)]
fn wanted<const FILTERED: bool>(matches: impl FnOnce() -> bool) -> bool {
    if !FILTERED || matches() {
        return true;
    }
    count(EventCounter::TcpFilteredOut);
    false
}

#[inline(always)]
fn track(sk: u64, open: &SockOpen) {
    if TCP_SOCKETS.insert(&sk, open, 0).is_err() {
        count(EventCounter::SocketMapFull);
    }
}

#[inline(always)]
fn on_established(sk: u64, old: u32, now: u64) {
    let syn_recv = global(&FLOWTEL_TCP.syn_recv);
    if TCP_SOCKETS.get_ptr(&sk).is_none() && old == syn_recv {
        track(sk, &SockOpen { opened_ns: now, side: SIDE_SERVER, ..SockOpen::default() });
    }
    let Some(open) = TCP_SOCKETS.get_ptr_mut(&sk) else { return };
    // SAFETY: a live map value.
    let open = unsafe { &mut *open };
    let handshake_ns = if open.side == SIDE_CLIENT && old == global(&FLOWTEL_TCP.syn_sent) {
        let took = now.saturating_sub(open.opened_ns);
        observe(Histogram::HandshakeClient, took / 1000);
        took
    } else if open.side == SIDE_SERVER && old == syn_recv {
        // The kernel measured the SYN-ACK to ACK round trip into srtt_us just before.
        let srtt_us = u64::from(read::<u32>(sk as *const u8, offset(&FLOWTEL_LAYOUT.tcp_srtt_us)).unwrap_or(0) >> 3);
        if srtt_us != 0 {
            observe(Histogram::HandshakeServer, srtt_us);
        }
        srtt_us * 1000
    } else {
        0
    };
    open.established_ns = now;
    open.handshake_ns = handshake_ns;
}
