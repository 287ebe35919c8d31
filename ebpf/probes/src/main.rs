//! flowtel's eBPF programs.
//!
//! Entry points stay thin: they hand the context to a function that does the
//! work, and never change a packet's verdict (`TC_ACT_PIPE` lets the next
//! classifier in the chain decide).
#![no_std]
#![no_main]
// aya-ebpf's map methods take `impl Borrow<T>`: passing references keeps
// keys and values from being copied again on the 512-byte BPF stack.
#![allow(clippy::needless_borrows_for_generic_args)]
// The program macros wrap each entry point in an exported function of their
// own, which does not carry the entry point's doc comment.
#![allow(missing_docs)]

mod drops;
mod exchanges;
mod filter;
mod flows;
mod journeys;
mod kernel;
mod parse;
#[cfg(not(feature = "perf-events"))]
mod ring_fill;
mod tcp;
mod trace_context;

use aya_ebpf::{
    bindings::TC_ACT_PIPE,
    macros::{btf_tracepoint, classifier, tracepoint},
    programs::{BtfTracePointContext, TcContext, TracePointContext},
};
use flowtel_ebpf_common::{DIRECTION_EGRESS, DIRECTION_INGRESS};

// Each program comes twice: as itself, and as its `_filtered` variant,
// which applies the packet filter first (and needs `bpf_loop`, 5.17+, so
// the plain ones stay loadable on older kernels).

/// A TC classifier for one direction, plain and filtered.
macro_rules! flow_programs {
    ($plain:ident, $filtered:ident, $direction:expr, $what:literal) => {
        #[doc = concat!("Observes traffic ", $what, " the interface it is attached to.")]
        #[classifier]
        pub fn $plain(ctx: TcContext) -> i32 {
            flows::record::<false>(&ctx, $direction);
            TC_ACT_PIPE
        }

        #[doc = concat!("Observes traffic ", $what, " the interface it is attached to that the packet filter matches.")]
        #[classifier]
        pub fn $filtered(ctx: TcContext) -> i32 {
            flows::record::<true>(&ctx, $direction);
            TC_ACT_PIPE
        }
    };
}

flow_programs!(flowtel_tc_ingress, flowtel_tc_ingress_filtered, DIRECTION_INGRESS, "received on");
flow_programs!(flowtel_tc_egress, flowtel_tc_egress_filtered, DIRECTION_EGRESS, "sent from");

/// Benchmark only: does nothing, so `kernel_bench` can tell the flow
/// programs' own cost from what running any TC program costs. Never attached.
#[classifier]
pub fn flowtel_tc_noop(_ctx: TcContext) -> i32 {
    TC_ACT_PIPE
}

/// Reads the `traceparent` of an HTTP/1.x request a TC program handed over
/// (the target of their tail call; never attached).
#[classifier]
pub fn flowtel_tc_trace_context(ctx: TcContext) -> i32 {
    trace_context::read_request(&ctx);
    TC_ACT_PIPE
}

/// `kfree_skb(skb, location, reason, …)` as a BTF tracepoint: arguments,
/// not a record, so no offsets are needed to find them.
#[inline(always)]
fn kfree_skb_btf<const FILTERED: bool>(ctx: &BtfTracePointContext) {
    let skb: u64 = ctx.arg(0);
    let location: u64 = ctx.arg(1);
    let reason: u32 = ctx.arg(2);
    drops::on_kfree_skb::<FILTERED, _>(ctx, skb as *const u8, location, reason);
}

/// `skb:kfree_skb` as a classic tracepoint, for kernels that refuse the BTF one.
#[inline(always)]
fn kfree_skb<const FILTERED: bool>(ctx: &TracePointContext) {
    let layout = &kernel::FLOWTEL_LAYOUT;
    let skb = kernel::field::<u64>(ctx, &layout.kfree_skb_skbaddr).unwrap_or(0);
    let location = kernel::field::<u64>(ctx, &layout.kfree_skb_location).unwrap_or(0);
    // Before 5.17 the record has no reason; userspace reports those drops as not specified.
    let reason = kernel::field::<u32>(ctx, &layout.kfree_skb_reason).unwrap_or(u32::MAX);
    drops::on_kfree_skb::<FILTERED, _>(ctx, skb as *const u8, location, reason);
}

#[btf_tracepoint(function = "kfree_skb")]
pub fn flowtel_kfree_skb_btf(ctx: BtfTracePointContext) -> i32 {
    kfree_skb_btf::<false>(&ctx);
    0
}

#[btf_tracepoint(function = "kfree_skb")]
pub fn flowtel_kfree_skb_btf_filtered(ctx: BtfTracePointContext) -> i32 {
    kfree_skb_btf::<true>(&ctx);
    0
}

#[tracepoint(category = "skb", name = "kfree_skb")]
pub fn flowtel_kfree_skb(ctx: TracePointContext) -> i32 {
    kfree_skb::<false>(&ctx);
    0
}

#[tracepoint(category = "skb", name = "kfree_skb")]
pub fn flowtel_kfree_skb_filtered(ctx: TracePointContext) -> i32 {
    kfree_skb::<true>(&ctx);
    0
}

/// A classic tracepoint program, plain and filtered, handing its context to `$module::$handler`.
macro_rules! tracepoint_programs {
    ($plain:ident, $filtered:ident, $category:literal, $name:literal, $module:ident::$handler:ident) => {
        #[tracepoint(category = $category, name = $name)]
        pub fn $plain(ctx: TracePointContext) -> i32 {
            $module::$handler::<false>(&ctx);
            0
        }

        #[tracepoint(category = $category, name = $name)]
        pub fn $filtered(ctx: TracePointContext) -> i32 {
            $module::$handler::<true>(&ctx);
            0
        }
    };
}

// A retransmitted segment; a reset sent; a reset received; a segment
// received on an established connection (an RTT sample); a socket that
// changed state.
tracepoint_programs!(
    flowtel_tcp_retransmit,
    flowtel_tcp_retransmit_filtered,
    "tcp",
    "tcp_retransmit_skb",
    tcp::on_retransmit
);
tracepoint_programs!(
    flowtel_tcp_send_reset,
    flowtel_tcp_send_reset_filtered,
    "tcp",
    "tcp_send_reset",
    tcp::on_send_reset
);
tracepoint_programs!(
    flowtel_tcp_receive_reset,
    flowtel_tcp_receive_reset_filtered,
    "tcp",
    "tcp_receive_reset",
    tcp::on_receive_reset
);
tracepoint_programs!(flowtel_tcp_probe, flowtel_tcp_probe_filtered, "tcp", "tcp_probe", tcp::on_probe);
tracepoint_programs!(
    flowtel_sock_set_state,
    flowtel_sock_set_state_filtered,
    "sock",
    "inet_sock_set_state",
    tcp::on_set_state
);

/// A BTF tracepoint whose first argument is the `struct sk_buff *`, as a
/// hook of packet journeys, plain and filtered.
macro_rules! journey_programs {
    ($plain:ident, $filtered:ident, $function:literal, $hook:expr) => {
        #[btf_tracepoint(function = $function)]
        pub fn $plain(ctx: BtfTracePointContext) -> i32 {
            let skb: u64 = ctx.arg(0);
            journeys::on_hook::<false>(skb as *const u8, $hook);
            0
        }

        #[btf_tracepoint(function = $function)]
        pub fn $filtered(ctx: BtfTracePointContext) -> i32 {
            let skb: u64 = ctx.arg(0);
            journeys::on_hook::<true>(skb as *const u8, $hook);
            0
        }
    };
}

journey_programs!(
    flowtel_journey_net_dev_queue,
    flowtel_journey_net_dev_queue_filtered,
    "net_dev_queue",
    flowtel_ebpf_common::HOOK_NET_DEV_QUEUE
);
journey_programs!(
    flowtel_journey_net_dev_start_xmit,
    flowtel_journey_net_dev_start_xmit_filtered,
    "net_dev_start_xmit",
    flowtel_ebpf_common::HOOK_NET_DEV_START_XMIT
);
journey_programs!(
    flowtel_journey_netif_rx,
    flowtel_journey_netif_rx_filtered,
    "netif_rx",
    flowtel_ebpf_common::HOOK_NETIF_RX
);
journey_programs!(
    flowtel_journey_netif_receive_skb,
    flowtel_journey_netif_receive_skb_filtered,
    "netif_receive_skb",
    flowtel_ebpf_common::HOOK_NETIF_RECEIVE_SKB
);

/// A BTF tracepoint whose first argument is the `struct sk_buff *`, as the
/// delivery that ends a journey.
macro_rules! journey_delivery_program {
    ($name:ident, $function:literal, $hook:expr) => {
        #[btf_tracepoint(function = $function)]
        pub fn $name(ctx: BtfTracePointContext) -> i32 {
            let skb: u64 = ctx.arg(0);
            journeys::on_end(&ctx, skb as *const u8, $hook, 0, 0);
            0
        }
    };
}

// Freed after use; copied to a reader of its socket (its free may be
// deferred to another CPU, long after).
journey_delivery_program!(flowtel_journey_consume_skb, "consume_skb", flowtel_ebpf_common::HOOK_CONSUME_SKB);
journey_delivery_program!(
    flowtel_journey_skb_copy_datagram_iovec,
    "skb_copy_datagram_iovec",
    flowtel_ebpf_common::HOOK_SKB_COPY_DATAGRAM_IOVEC
);

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
