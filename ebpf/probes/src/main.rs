//! flowtel's eBPF programs.
//!
//! Entry points stay thin: they hand the context to a function that does the
//! work, and never change a packet's verdict (`TC_ACT_PIPE` lets the next
//! classifier in the chain decide).
#![no_std]
#![no_main]

mod flows;
mod parse;
mod ring_fill;

use aya_ebpf::{bindings::TC_ACT_PIPE, macros::classifier, programs::TcContext};
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

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
