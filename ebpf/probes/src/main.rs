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
mod flows;
mod kernel;
mod parse;
mod ring_fill;
mod tcp;
mod trace_context;

use aya_ebpf::{
    bindings::TC_ACT_PIPE,
    macros::{btf_tracepoint, classifier, tracepoint},
    programs::{BtfTracePointContext, TcContext, TracePointContext},
};
use flowtel_ebpf_common::{DIRECTION_EGRESS, DIRECTION_INGRESS};

/// Observes traffic received on the interface it is attached to.
#[classifier]
pub fn flowtel_tc_ingress(ctx: TcContext) -> i32 {
    flows::record(&ctx, DIRECTION_INGRESS);
    TC_ACT_PIPE
}

/// Observes traffic sent from the interface it is attached to.
#[classifier]
pub fn flowtel_tc_egress(ctx: TcContext) -> i32 {
    flows::record(&ctx, DIRECTION_EGRESS);
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
#[btf_tracepoint(function = "kfree_skb")]
pub fn flowtel_kfree_skb_btf(ctx: BtfTracePointContext) -> i32 {
    let skb: u64 = ctx.arg(0);
    let location: u64 = ctx.arg(1);
    let reason: u32 = ctx.arg(2);
    drops::on_kfree_skb(&ctx, skb as *const u8, location, reason);
    0
}

/// `skb:kfree_skb` as a classic tracepoint, for kernels that refuse the BTF one.
#[tracepoint(category = "skb", name = "kfree_skb")]
pub fn flowtel_kfree_skb(ctx: TracePointContext) -> i32 {
    let layout = &kernel::FLOWTEL_LAYOUT;
    let skb = kernel::field::<u64>(&ctx, &layout.kfree_skb_skbaddr).unwrap_or(0);
    let location = kernel::field::<u64>(&ctx, &layout.kfree_skb_location).unwrap_or(0);
    // Before 5.17 the record has no reason; userspace reports those drops as not specified.
    let reason = kernel::field::<u32>(&ctx, &layout.kfree_skb_reason).unwrap_or(u32::MAX);
    drops::on_kfree_skb(&ctx, skb as *const u8, location, reason);
    0
}

/// A retransmitted segment.
#[tracepoint(category = "tcp", name = "tcp_retransmit_skb")]
pub fn flowtel_tcp_retransmit(ctx: TracePointContext) -> i32 {
    tcp::on_retransmit(&ctx);
    0
}

/// A reset sent.
#[tracepoint(category = "tcp", name = "tcp_send_reset")]
pub fn flowtel_tcp_send_reset(ctx: TracePointContext) -> i32 {
    tcp::on_send_reset(&ctx);
    0
}

/// A reset received.
#[tracepoint(category = "tcp", name = "tcp_receive_reset")]
pub fn flowtel_tcp_receive_reset(ctx: TracePointContext) -> i32 {
    tcp::on_receive_reset(&ctx);
    0
}

/// A segment received on an established connection: an RTT sample.
#[tracepoint(category = "tcp", name = "tcp_probe")]
pub fn flowtel_tcp_probe(ctx: TracePointContext) -> i32 {
    tcp::on_probe(&ctx);
    0
}

/// A socket changed state.
#[tracepoint(category = "sock", name = "inet_sock_set_state")]
pub fn flowtel_sock_set_state(ctx: TracePointContext) -> i32 {
    tcp::on_set_state(&ctx);
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
