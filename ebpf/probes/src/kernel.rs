//! What the tracepoint programs share: the kernel layout handed over at load
//! time, safe reads of kernel memory through it, the event buffers and the
//! event counters.

#[cfg(feature = "perf-events")]
use aya_ebpf::maps::PerfEventByteArray;
#[cfg(not(feature = "perf-events"))]
use aya_ebpf::maps::RingBuf;
use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_probe_read_kernel, bpf_probe_read_kernel_buf},
    macros::map,
    maps::{Array, PerCpuArray},
    programs::TracePointContext,
};
use flowtel_ebpf_common::{
    EVENT_COUNTERS, EventCounter, Governor, KernelLayout, MAX_SAMPLING_RATE, NAME_BYTES, UNKNOWN,
};

/// Field offsets of this kernel; set by userspace at load time.
#[unsafe(no_mangle)]
pub(crate) static FLOWTEL_LAYOUT: KernelLayout = KernelLayout::unknown();

/// Bytes of the drop and TCP event ring buffer.
#[cfg(not(feature = "perf-events"))]
const KERNEL_EVENTS_BYTES: u32 = 512 * 1024;

/// Drop and TCP events (kernel 5.8+).
#[cfg(not(feature = "perf-events"))]
#[map(name = "KERNEL_EVENTS")]
static KERNEL_EVENTS: RingBuf = RingBuf::with_byte_size(KERNEL_EVENTS_BYTES, 0);

/// How each kind of event degrades under pressure (`GOVERNOR_DROPS`, `GOVERNOR_TCP`).
#[map(name = "GOVERNORS")]
static GOVERNORS: Array<Governor> = Array::with_max_entries(2, 0);

/// `BPF_RB_AVAIL_DATA`: bytes written and not yet read.
#[cfg(not(feature = "perf-events"))]
const BPF_RB_AVAIL_DATA: u64 = 0;
/// How soon after a rise the ring's fill may raise the rate again.
const RAISE_EVERY_NS: u64 = 1_000_000;

/// Whether the event ring buffer is more than half full (never, on perf buffers).
#[inline(always)]
fn ring_pressure() -> bool {
    #[cfg(not(feature = "perf-events"))]
    return KERNEL_EVENTS.query(BPF_RB_AVAIL_DATA) > u64::from(KERNEL_EVENTS_BYTES / 2);
    #[cfg(feature = "perf-events")]
    false
}

/// Whether one more event of the kind `which` (`budget` a second, 0: no
/// budget) is sent: the sampling rate to write on it, or 0 when it is
/// sampled out (see `Governor`).
#[inline(always)]
pub(crate) fn admit(which: u32, budget: u64, now: u64) -> u32 {
    let Some(governor) = GOVERNORS.get_ptr_mut(which) else { return 1 };
    // SAFETY: a live map value. CPUs race on it without atomics, which at
    // worst sends an event more or fewer around a change of rate.
    let governor = unsafe { &mut *governor };
    let second = now / 1_000_000_000;
    let mut rate = governor.rate.max(1);
    let pressure = ring_pressure();
    if governor.second != second {
        let quiet_second = second > governor.second + 1;
        let calm = (budget == 0 || governor.sent * 4 < budget) && !pressure;
        if quiet_second {
            rate = 1;
        } else if calm && rate > 1 {
            rate /= 2;
        }
        if rate != governor.rate.max(1) {
            governor.offered = 0;
        }
        governor.second = second;
        governor.sent = 0;
    }
    let over_budget = budget != 0 && governor.sent >= budget;
    let filling = pressure && now.saturating_sub(governor.raised_ns) >= RAISE_EVERY_NS;
    if (over_budget || filling) && rate < MAX_SAMPLING_RATE {
        rate *= 2;
        governor.offered = 0;
        governor.sent = 0;
        governor.raised_ns = now;
    }
    governor.rate = rate;
    let offered = governor.offered;
    governor.offered = offered + 1;
    // `checked_rem`: no division-by-zero panic path for the verifier to refuse.
    if offered.checked_rem(rate).is_some_and(|left| left != 0) {
        return 0;
    }
    governor.sent += 1;
    rate as u32
}

/// The same events through per-CPU perf buffers, in the build for them.
#[cfg(feature = "perf-events")]
#[map(name = "KERNEL_EVENTS_PERF")]
static KERNEL_EVENTS_PERF: PerfEventByteArray = PerfEventByteArray::new(0);

/// Counters of the drop and TCP programs, indexed by `EventCounter`.
#[map(name = "EVENT_COUNTERS")]
static EVENT_COUNTERS_MAP: PerCpuArray<u64> = PerCpuArray::with_max_entries(EVENT_COUNTERS, 0);

/// An offset of [`FLOWTEL_LAYOUT`] (volatile, so the compiler keeps the read).
#[inline(always)]
pub(crate) fn offset(field: &u16) -> u16 {
    // SAFETY: a reference to a static is valid to read.
    unsafe { core::ptr::read_volatile(field) }
}

/// `base + offset`; `None` when the base is null or the offset unknown.
#[inline(always)]
fn field_address(base: *const u8, offset: u16) -> Option<*const u8> {
    if base.is_null() || offset == UNKNOWN {
        return None;
    }
    // SAFETY: address arithmetic only; every read goes through a helper.
    Some(unsafe { base.add(usize::from(offset)) })
}

/// Reads a `T` at `base + offset` of kernel memory; `None` when the base is
/// null, the offset unknown or the memory unreadable.
#[inline(always)]
pub(crate) fn read<T>(base: *const u8, offset: u16) -> Option<T> {
    let address = field_address(base, offset)?;
    // SAFETY: the helper checks the address; a fault is an error, not a crash.
    unsafe { bpf_probe_read_kernel(address.cast::<T>()).ok() }
}

/// Reads kernel memory at `base + offset` into `out` (no copy on the small
/// stack); false when it cannot.
#[inline(always)]
pub(crate) fn read_into(base: *const u8, offset: u16, out: &mut [u8]) -> bool {
    let Some(address) = field_address(base, offset) else { return false };
    // SAFETY: the helper checks the address; a fault is an error, not a crash.
    unsafe { bpf_probe_read_kernel_buf(address, out) }.is_ok()
}

/// A packet's bytes from its network header, in a `struct sk_buff`.
pub(crate) struct NetworkPacket {
    /// Kernel address of the network header.
    pub start: u64,
    /// Bytes from there to the packet's end, paged fragments included.
    pub length: u32,
    /// Of those, the bytes in the linear area (readable in one copy).
    pub linear: u32,
}

/// Where a `struct sk_buff *`'s network header is, or `None` while the
/// kernel has not set it.
#[inline(always)]
pub(crate) fn network_packet(skb: *const u8) -> Option<NetworkPacket> {
    const UNSET: u16 = 0xffff;
    let layout = &FLOWTEL_LAYOUT;
    let head = read::<u64>(skb, offset(&layout.skb_head))?;
    let data = read::<u64>(skb, offset(&layout.skb_data))?;
    let network = read::<u16>(skb, offset(&layout.skb_network_header))?;
    let length = read::<u32>(skb, offset(&layout.skb_len))?;
    if head == 0 || network == UNSET {
        return None;
    }
    let start = head + u64::from(network);
    // `len` counts from `data`; the network header may be before or after it.
    let length = (data + u64::from(length)).saturating_sub(start).min(u64::from(u16::MAX)) as u32;
    let linear = match read::<u32>(skb, offset(&layout.skb_tail)) {
        Some(tail) => u64::from(tail).saturating_sub(u64::from(network)).min(u64::from(length)) as u32,
        None => length,
    };
    Some(NetworkPacket { start, length, linear })
}

/// How many of `available` bytes to copy into a buffer of `MAX`: 1..=MAX,
/// or `None` for none. Computed as one less, bounded, plus one, so that
/// older verifiers (6.1's learns nothing from `!= 0`) see a copy length of
/// at least 1, as the copy helpers require.
#[inline(always)]
pub(crate) fn copy_length<const MAX: usize>(available: usize) -> Option<usize> {
    let last = available.checked_sub(1)?;
    Some(last.min(MAX - 1) + 1)
}

/// Reads a `T` at a kernel address.
#[inline(always)]
pub(crate) fn read_at<T>(address: *const u8) -> Option<T> {
    read(address, 0)
}

/// A field of a tracepoint's record at a layout offset.
#[inline(always)]
pub(crate) fn field<T>(ctx: &TracePointContext, at: &u16) -> Option<T> {
    let at = offset(at);
    if at == UNKNOWN {
        return None;
    }
    // SAFETY: the helper checks the address.
    unsafe { ctx.read_at::<T>(usize::from(at)) }.ok()
}

/// The inode of the network namespace of a `struct net *`.
#[inline(always)]
pub(crate) fn netns_inode(net: *const u8) -> u32 {
    read::<u32>(net, offset(&FLOWTEL_LAYOUT.net_inum)).unwrap_or(0)
}

/// The network namespace inode of a socket.
#[inline(always)]
pub(crate) fn sock_netns(sk: *const u8) -> u32 {
    let net = read::<*const u8>(sk, offset(&FLOWTEL_LAYOUT.sock_net)).unwrap_or(core::ptr::null());
    netns_inode(net)
}

/// `(ifindex, netns inode, name)` of a `struct net_device *` (zeros when null).
#[inline(always)]
pub(crate) fn device(dev: *const u8) -> (u32, u32, [u8; NAME_BYTES]) {
    if dev.is_null() {
        return (0, 0, [0; NAME_BYTES]);
    }
    let ifindex = read::<i32>(dev, offset(&FLOWTEL_LAYOUT.dev_ifindex)).unwrap_or(0) as u32;
    let name = read::<[u8; NAME_BYTES]>(dev, offset(&FLOWTEL_LAYOUT.dev_name)).unwrap_or([0; NAME_BYTES]);
    let net = read::<*const u8>(dev, offset(&FLOWTEL_LAYOUT.dev_net)).unwrap_or(core::ptr::null());
    (ifindex, netns_inode(net), name)
}

/// Adds one to an event counter.
#[inline(always)]
pub(crate) fn count(counter: EventCounter) {
    add(counter, 1);
}

/// Adds `value` to an event counter.
#[inline(always)]
pub(crate) fn add(counter: EventCounter, value: u64) {
    if let Some(slot) = EVENT_COUNTERS_MAP.get_ptr_mut(counter as u32) {
        // SAFETY: a per-CPU slot, only touched by this CPU.
        unsafe { *slot += value };
    }
}

/// Sends an event (a `repr(C)` struct starting with its kind byte) on the
/// build's transport; a full ring buffer counts `lost`.
#[inline(always)]
pub(crate) fn send<C: EbpfContext, T>(ctx: &C, event: &T, lost: EventCounter) {
    #[cfg(feature = "perf-events")]
    {
        let _ = lost;
        // SAFETY: `T` is plain data; the slice covers exactly the value.
        let bytes = unsafe { core::slice::from_raw_parts((event as *const T).cast::<u8>(), size_of::<T>()) };
        KERNEL_EVENTS_PERF.output(ctx, bytes, 0);
    }
    #[cfg(not(feature = "perf-events"))]
    if KERNEL_EVENTS.output::<T>(event, 0).is_err() {
        let _ = ctx;
        count(lost);
    }
}
