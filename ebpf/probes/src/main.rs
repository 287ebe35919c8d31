//! flowtel's eBPF programs.
//!
//! Entry points stay thin: they hand the context to a function that does the
//! work, and never change a packet's verdict (`TC_ACT_PIPE` lets the next
//! classifier in the chain decide).
#![no_std]
#![no_main]

mod flows;
mod parse;

use aya_ebpf::{
    bindings::TC_ACT_PIPE,
    macros::{classifier, map},
    maps::PerCpuArray,
    programs::TcContext,
};
use flowtel_ebpf_common::{DIRECTION_EGRESS, DIRECTION_INGRESS, DIRECTIONS, TrafficCounter};

/// Packets and bytes per direction, per CPU (so no atomics are needed).
#[map(name = "TRAFFIC_COUNTERS")]
static TRAFFIC_COUNTERS: PerCpuArray<TrafficCounter> = PerCpuArray::with_max_entries(DIRECTIONS, 0);

/// Observes traffic received on the interface it is attached to.
#[classifier]
pub fn flowtel_tc_ingress(ctx: TcContext) -> i32 {
    observe(&ctx, DIRECTION_INGRESS);
    TC_ACT_PIPE
}

/// Observes traffic sent from the interface it is attached to.
#[classifier]
pub fn flowtel_tc_egress(ctx: TcContext) -> i32 {
    observe(&ctx, DIRECTION_EGRESS);
    TC_ACT_PIPE
}

#[inline(always)]
fn observe(ctx: &TcContext, direction: u8) {
    if let Some(counter) = TRAFFIC_COUNTERS.get_ptr_mut(u32::from(direction)) {
        // SAFETY: the pointer comes from the map lookup and is only used on this CPU.
        let counter = unsafe { &mut *counter };
        counter.packets += 1;
        counter.bytes += u64::from(ctx.len());
    }
    flows::record(ctx, direction);
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
