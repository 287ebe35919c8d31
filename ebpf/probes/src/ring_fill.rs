//! Benchmark only: a tracepoint program that writes one event to the flow
//! event ring buffer each time it runs, so `kernel_bench` can measure how
//! many events per second a reader drains. The receiver never attaches it.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use flowtel_ebpf_common::{Counter, EVENT_BENCH, FlowEvent};

use crate::flows::{FLOW_EVENTS, count};

/// Writes one benchmark event.
#[tracepoint]
pub fn flowtel_ring_fill(_ctx: TracePointContext) -> u32 {
    let event = FlowEvent { kind: EVENT_BENCH, ..FlowEvent::default() };
    if FLOW_EVENTS.output::<FlowEvent>(&event, 0).is_err() {
        count(Counter::RingBufferFull);
    }
    0
}
