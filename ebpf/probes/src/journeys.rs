//! Packet journeys: each hook a followed packet passes is kept in
//! [`JOURNEYS`] under its `sk_buff`'s address; its drop (`kfree_skb`) or
//! its delivery (`consume_skb`) sends the whole journey, within a budget of
//! journeys a second (what is over it is counted). Without the packet
//! filter every packet is followed and only drops are sent; with it, the
//! packets it matches at their first hook, dropped or delivered.

use aya_ebpf::{
    EbpfContext,
    helpers::bpf_ktime_get_ns,
    macros::map,
    maps::{Array, LruHashMap, PerCpuArray},
};
use flowtel_ebpf_common::{
    EVENT_JOURNEY, EventCounter, HOOK_KFREE_SKB, Hop, JOURNEY_STALE_NS, JOURNEYS_FOLLOWED, Journey, JourneyEvent,
    JourneySettings,
};

use crate::{
    drops::describe,
    filter,
    flows::global,
    kernel::{FLOWTEL_LAYOUT, count, device, offset, read, send},
};

/// What the programs load with; set by userspace.
#[unsafe(no_mangle)]
static FLOWTEL_JOURNEYS: JourneySettings = JourneySettings { enabled: 0, delivered: 0, max_per_second: 0, pad: 0 };

/// Followed packets by `sk_buff` address (sized by userspace).
#[map(name = "JOURNEYS")]
static JOURNEYS: LruHashMap<u64, Journey> = LruHashMap::with_max_entries(JOURNEYS_FOLLOWED, 0);

/// Where a new journey is built (too big for the BPF stack).
#[map(name = "JOURNEY_SCRATCH")]
static JOURNEY_SCRATCH: PerCpuArray<Journey> = PerCpuArray::with_max_entries(1, 0);

/// Where a finished journey's event is built.
#[map(name = "JOURNEY_EVENT_SCRATCH")]
static JOURNEY_EVENT_SCRATCH: PerCpuArray<JourneyEvent> = PerCpuArray::with_max_entries(1, 0);

/// The budget's current second (slot 0) and journeys sent in it (slot 1).
/// CPUs race on it without atomics: at worst a journey more or fewer.
#[map(name = "JOURNEY_BUDGET")]
static JOURNEY_BUDGET: Array<u64> = Array::with_max_entries(2, 0);

/// Whether journeys are followed at all (a load-time constant: the verifier
/// drops the rest when not).
#[inline(always)]
pub fn enabled() -> bool {
    global(&FLOWTEL_JOURNEYS.enabled) != 0
}

#[inline(always)]
fn fill(hop: &mut Hop, skb: *const u8, hook: u8, now: u64) {
    let dev = read::<*const u8>(skb, offset(&FLOWTEL_LAYOUT.skb_dev)).unwrap_or(core::ptr::null());
    let (ifindex, netns, ifname) = device(dev);
    hop.time_ns = now;
    hop.ifindex = ifindex;
    hop.netns = netns;
    hop.length = read::<u32>(skb, offset(&FLOWTEL_LAYOUT.skb_len)).unwrap_or(0);
    hop.hook = hook;
    hop.pad = [0; 3];
    hop.ifname = ifname;
}

/// A packet passes `hook`: added to its journey, or its journey starts
/// (with `FILTERED`, only when the filter matches it).
#[inline(always)]
pub fn on_hook<const FILTERED: bool>(skb: *const u8, hook: u8) {
    if !enabled() || skb.is_null() {
        return;
    }
    // SAFETY: a helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let key = skb as u64;
    if let Some(journey) = JOURNEYS.get_ptr_mut(&key) {
        // SAFETY: a live map value; one CPU handles one packet at a time.
        let journey = unsafe { &mut *journey };
        if now.saturating_sub(journey.first_ns) < JOURNEY_STALE_NS {
            let at = journey.count as usize;
            if let Some(hop) = journey.hops.get_mut(at) {
                fill(hop, skb, hook, now);
            }
            journey.count += 1;
            return;
        }
    }
    if FILTERED && !filter::matches_skb(skb) {
        return;
    }
    let Some(journey) = JOURNEY_SCRATCH.get_ptr_mut(0) else { return };
    // SAFETY: this CPU's scratch slot.
    let journey = unsafe { &mut *journey };
    journey.first_ns = now;
    journey.count = 1;
    journey.pad = 0;
    fill(&mut journey.hops[0], skb, hook, now);
    let _ = JOURNEYS.insert(&key, journey, 0);
}

/// Whether one more journey fits this second's budget.
#[inline(always)]
fn within_budget(now: u64) -> bool {
    let budget = u64::from(global(&FLOWTEL_JOURNEYS.max_per_second));
    let (Some(second), Some(sent)) = (JOURNEY_BUDGET.get_ptr_mut(0), JOURNEY_BUDGET.get_ptr_mut(1)) else {
        return false;
    };
    let this_second = now / 1_000_000_000;
    // SAFETY: live map values.
    unsafe {
        if *second != this_second {
            *second = this_second;
            *sent = 0;
        }
        if *sent >= budget {
            return false;
        }
        *sent += 1;
    }
    true
}

/// A followed packet ends at `hook`: dropped (`reason`, freed at
/// `location`) or delivered. Its journey is sent, within the budget.
#[inline(always)]
pub fn on_end<C: EbpfContext>(ctx: &C, skb: *const u8, hook: u8, reason: u32, location: u64) {
    let delivered = hook != HOOK_KFREE_SKB;
    if !enabled() {
        return;
    }
    let key = skb as u64;
    let Some(journey) = JOURNEYS.get_ptr(&key) else { return };
    // SAFETY: a helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let Some(event) = JOURNEY_EVENT_SCRATCH.get_ptr_mut(0) else { return };
    // SAFETY: this CPU's scratch slot; the journey is a live map value, copied before removal.
    let event = unsafe { &mut *event };
    event.journey = unsafe { *journey };
    let _ = JOURNEYS.remove(&key);
    // However long it waited (in a socket's queue, say), a journey ends here.
    if delivered && global(&FLOWTEL_JOURNEYS.delivered) == 0 {
        return;
    }
    if !within_budget(now) {
        count(EventCounter::JourneysOverBudget);
        return;
    }
    event.kind = EVENT_JOURNEY;
    event.delivered = u8::from(delivered);
    event.end_hook = hook;
    event.pad = [0; 5];
    event.skb = key;
    let dev = read::<*const u8>(skb, offset(&FLOWTEL_LAYOUT.skb_dev)).unwrap_or(core::ptr::null());
    describe(&mut event.end, skb, (reason, location), device(dev), now);
    send(ctx, event, EventCounter::JourneyRingBufferFull);
}
