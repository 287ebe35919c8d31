//! Request/response latency per TCP connection, from packet timing alone
//! (see `flowtel_ebpf_common::ExchangeKey`): the client's data segments
//! stamp the exchange; the server's first data segment after them closes it
//! and is timed. Counted in a histogram per server end (bounded: servers
//! past the map's size share one entry) and on the response's flow.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    macros::map,
    maps::{LruHashMap, PerCpuArray, PerCpuHashMap},
};
use flowtel_ebpf_common::{Exchange, ExchangeKey, FlowKey, ServerKey, histogram, tcp_flags};

use crate::flows::global;

/// Histogram slots of one server.
type Slots = [u64; histogram::SLOTS as usize];

/// 1 to time responses; set by userspace at load time.
#[unsafe(no_mangle)]
static FLOWTEL_RESPONSE_LATENCY: u32 = 0;

/// Each connection's current exchange, client first.
#[map(name = "TCP_EXCHANGES")]
static TCP_EXCHANGES: LruHashMap<ExchangeKey, Exchange> = LruHashMap::with_max_entries(65_536, 0);

/// Response latency histograms by server end. Not an LRU: when it is full,
/// new servers are counted in the all-zero entry userspace made at load.
#[map(name = "RESPONSE_LATENCY")]
static RESPONSE_LATENCY: PerCpuHashMap<ServerKey, Slots> = PerCpuHashMap::with_max_entries(1024, 0);

/// A zeroed histogram to insert new servers from (too big for the stack).
#[map(name = "EMPTY_HISTOGRAM")]
static EMPTY_HISTOGRAM: PerCpuArray<Slots> = PerCpuArray::with_max_entries(1, 0);

/// Whether responses are timed.
#[inline(always)]
pub fn enabled() -> bool {
    global(&FLOWTEL_RESPONSE_LATENCY) != 0
}

/// Follows the exchange a TCP packet belongs to; the latency in ns when
/// the packet is a response (the server's first data after its client's).
#[inline(always)]
pub fn on_tcp_packet(key: &FlowKey, flags: u8, payload: u32, now: u64) -> u64 {
    let forward = ExchangeKey {
        client_addr: key.src_addr,
        server_addr: key.dst_addr,
        client_port: key.src_port,
        server_port: key.dst_port,
        ifindex: key.ifindex,
    };
    let flags = u16::from(flags);
    if flags & (tcp_flags::FIN | tcp_flags::RST) != 0 {
        let backward = reversed(&forward);
        let _ = TCP_EXCHANGES.remove(&forward);
        let _ = TCP_EXCHANGES.remove(&backward);
        return 0;
    }
    if payload == 0 {
        // A SYN names the client; other segments without data change nothing.
        if flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN {
            let _ = TCP_EXCHANGES.insert(&forward, &Exchange::default(), 0);
        }
        return 0;
    }
    if let Some(exchange) = TCP_EXCHANGES.get_ptr_mut(&forward) {
        // SAFETY: a live map value.
        unsafe {
            (*exchange).request_ns = now;
            (*exchange).awaiting = 1;
        }
        return 0;
    }
    let backward = reversed(&forward);
    if let Some(exchange) = TCP_EXCHANGES.get_ptr_mut(&backward) {
        // SAFETY: a live map value.
        let exchange = unsafe { &mut *exchange };
        if exchange.awaiting == 0 {
            return 0;
        }
        exchange.awaiting = 0;
        let latency = now.saturating_sub(exchange.request_ns);
        observe(key, latency);
        return latency;
    }
    // A connection older than flowtel: the first end seen sending data is taken for the client.
    let _ = TCP_EXCHANGES.insert(&forward, &Exchange { request_ns: now, awaiting: 1 }, u64::from(BPF_NOEXIST));
    0
}

#[inline(always)]
fn reversed(key: &ExchangeKey) -> ExchangeKey {
    ExchangeKey {
        client_addr: key.server_addr,
        server_addr: key.client_addr,
        client_port: key.server_port,
        server_port: key.client_port,
        ifindex: key.ifindex,
    }
}

/// Adds a response's latency to its server's histogram (the response's
/// source is the server).
#[inline(always)]
fn observe(key: &FlowKey, latency_ns: u64) {
    let server =
        ServerKey { addr: key.src_addr, port: key.src_port, ip_version: key.ip_version, pad: 0, ifindex: key.ifindex };
    let slots = match RESPONSE_LATENCY.get_ptr_mut(&server) {
        Some(slots) => slots,
        None => {
            if let Some(empty) = EMPTY_HISTOGRAM.get_ptr(0) {
                // SAFETY: a live map value, only read.
                let _ = RESPONSE_LATENCY.insert(&server, unsafe { &*empty }, u64::from(BPF_NOEXIST));
            }
            match RESPONSE_LATENCY.get_ptr_mut(&server) {
                Some(slots) => slots,
                // Full: the overflow entry.
                None => match RESPONSE_LATENCY.get_ptr_mut(&ServerKey::default()) {
                    Some(slots) => slots,
                    None => return,
                },
            }
        }
    };
    let latency_us = latency_ns / 1000;
    let bucket = histogram::bucket(latency_us) as usize;
    // SAFETY: this CPU's copy of a live map value; the bucket is below BUCKETS.
    unsafe {
        let slots = &mut *slots;
        slots[bucket.min(histogram::BUCKETS as usize - 1)] += 1;
        slots[histogram::SUM_SLOT as usize] += latency_us;
    }
}
