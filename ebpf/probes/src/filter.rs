//! The packet filter (a pcap-filter expression compiled by libpcap into
//! classic BPF), evaluated in the kernel by the `_filtered` variants of the
//! programs: the TC programs on the frame, the drop program on the dropped
//! packet from its network header, the TCP programs on a header built from
//! the socket's addresses and ports.
//!
//! Classic BPF runs on [`FilterMachine`], one instruction per `bpf_loop`
//! step (5.17+), so the verifier checks one step however long the program.

use aya_ebpf::{
    cty::c_void,
    helpers::{bpf_loop, bpf_skb_load_bytes, generated::bpf_probe_read_kernel},
    macros::map,
    maps::{Array, PerCpuArray},
    programs::TcContext,
};
use flowtel_ebpf_common::{
    FILTER_CAPTURE_BYTES, FILTER_LINK_LAYER, FILTER_NETWORK_LAYER, FilterMachine, PacketFilter, VERDICT_MATCH,
};

use crate::kernel::{FLOWTEL_LAYOUT, copy_length, network_packet, offset, read};

/// The link-layer and network-layer programs; set by userspace.
#[map(name = "PACKET_FILTERS")]
static PACKET_FILTERS: Array<PacketFilter> = Array::with_max_entries(2, 0);

/// This CPU's machine.
#[map(name = "FILTER_MACHINE")]
static FILTER_MACHINE: PerCpuArray<FilterMachine> = PerCpuArray::with_max_entries(1, 0);

/// What the `bpf_loop` callback is given (on the stack, as `bpf_loop` wants).
#[repr(C)]
struct Run {
    machine: *mut FilterMachine,
    program: *const PacketFilter,
}

/// `bpf_loop` callback: one instruction; stops the loop at the verdict.
unsafe extern "C" fn step(_index: u64, context: *mut c_void) -> i64 {
    // SAFETY: `context` is the caller's `Run`, alive for the whole loop; it
    // points at this CPU's machine and a program (map values).
    let (machine, program) = unsafe {
        let run = &*context.cast::<Run>();
        (&mut *run.machine, &*run.program)
    };
    i64::from(machine.step(program))
}

/// Runs filter `which` on the packet in `machine`.
#[inline(always)]
fn run(machine: &mut FilterMachine, which: u32) -> bool {
    let Some(program) = PACKET_FILTERS.get_ptr(which) else { return false };
    // SAFETY: a live map value.
    let length = unsafe { (*program).length };
    if length == 0 {
        return true;
    }
    let mut context = Run { machine, program };
    // Classic BPF jumps only forward: a verdict comes within `length` steps.
    // SAFETY: the callback only touches the machine and the program.
    unsafe { bpf_loop(length + 1, step as *mut c_void, (&mut context as *mut Run).cast(), 0) };
    machine.verdict == VERDICT_MATCH
}

/// This CPU's machine.
#[inline(always)]
fn machine() -> Option<&'static mut FilterMachine> {
    // SAFETY: this CPU's slot; a program runs to completion on one CPU.
    FILTER_MACHINE.get_ptr_mut(0).map(|machine| unsafe { &mut *machine })
}

/// How many of `available` bytes the filter sees.
#[inline(always)]
fn capture_length(available: usize) -> Option<usize> {
    copy_length::<FILTER_CAPTURE_BYTES>(available)
}

/// Whether the frame a TC program sees matches the link-layer filter.
#[inline(always)]
pub fn matches_frame(ctx: &TcContext) -> bool {
    let Some(machine) = machine() else { return false };
    let length = ctx.len();
    let Some(wanted) = capture_length(length as usize) else { return false };
    // SAFETY: the destination is `wanted` (1..=FILTER_CAPTURE_BYTES) bytes
    // of this CPU's machine; the helper checks the packet's bounds.
    let copied = unsafe { bpf_skb_load_bytes(ctx.skb.skb.cast(), 0, machine.bytes.as_mut_ptr().cast(), wanted as u32) };
    if copied != 0 {
        return false;
    }
    machine.reset(wanted as u32, length);
    run(machine, FILTER_LINK_LAYER)
}

/// Whether the packet of a kernel `struct sk_buff *` matches the network-layer
/// filter, read from its network header. A packet whose network header is
/// not set yet cannot be judged, so it does not match.
#[inline(always)]
pub fn matches_skb(skb: *const u8) -> bool {
    let Some(packet) = network_packet(skb) else { return false };
    let Some(machine) = machine() else { return false };
    let Some(wanted) = capture_length(packet.linear as usize) else { return false };
    // SAFETY: the helper checks the source; the destination is `wanted`
    // (1..=FILTER_CAPTURE_BYTES) bytes of this CPU's machine.
    let copied = unsafe {
        bpf_probe_read_kernel(machine.bytes.as_mut_ptr().cast(), wanted as u32, packet.start as *const c_void)
    };
    if copied != 0 {
        return false;
    }
    machine.reset(wanted as u32, packet.length);
    run(machine, FILTER_NETWORK_LAYER)
}

/// `AF_INET` and `AF_INET6`.
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
/// Bytes of an IPv4 and an IPv6 header without options, and of a TCP header.
const IPV4_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;
const TCP_HEADER: usize = 20;

/// Whether a TCP socket's traffic matches the network-layer filter: it is
/// judged by a header the socket would send (local address and port as the
/// source), with no flags and no payload. An IPv6 socket talking to an
/// IPv4-mapped address is judged as IPv4, as its packets are.
#[inline(always)]
pub fn matches_socket(sk: *const u8) -> bool {
    let layout = &FLOWTEL_LAYOUT;
    let Some(family) = read::<u16>(sk, offset(&layout.sock_family)) else { return false };
    let (Some(sport), Some(dport)) =
        (read::<[u8; 2]>(sk, offset(&layout.inet_sport)), read::<[u8; 2]>(sk, offset(&layout.sock_dport)))
    else {
        return false;
    };
    let Some(machine) = machine() else { return false };
    let bytes = &mut machine.bytes;
    let mut v6 = None;
    if family == AF_INET6 {
        let (Some(src), Some(dst)) = (
            read::<[u8; 16]>(sk, offset(&layout.sock_v6_rcv_saddr)),
            read::<[u8; 16]>(sk, offset(&layout.sock_v6_daddr)),
        ) else {
            return false;
        };
        let mapped = |a: &[u8; 16]| a[..10] == [0; 10] && a[10] == 0xff && a[11] == 0xff;
        if !(mapped(&src) && mapped(&dst)) {
            v6 = Some((src, dst));
        }
    } else if family != AF_INET {
        return false;
    }
    let tcp = match v6 {
        Some((src, dst)) => {
            bytes[..IPV6_HEADER].fill(0);
            bytes[0] = 0x60;
            bytes[4..6].copy_from_slice(&(TCP_HEADER as u16).to_be_bytes());
            bytes[6] = flowtel_ebpf_common::ipproto::TCP;
            bytes[7] = 64;
            bytes[8..24].copy_from_slice(&src);
            bytes[24..40].copy_from_slice(&dst);
            IPV6_HEADER
        }
        None => {
            let (Some(src), Some(dst)) =
                (read::<[u8; 4]>(sk, offset(&layout.sock_rcv_saddr)), read::<[u8; 4]>(sk, offset(&layout.sock_daddr)))
            else {
                return false;
            };
            bytes[..IPV4_HEADER].fill(0);
            bytes[0] = 0x45;
            bytes[2..4].copy_from_slice(&((IPV4_HEADER + TCP_HEADER) as u16).to_be_bytes());
            bytes[8] = 64;
            bytes[9] = flowtel_ebpf_common::ipproto::TCP;
            bytes[12..16].copy_from_slice(&src);
            bytes[16..20].copy_from_slice(&dst);
            IPV4_HEADER
        }
    };
    let header = &mut bytes[tcp..tcp + TCP_HEADER];
    header.fill(0);
    header[0..2].copy_from_slice(&sport);
    header[2..4].copy_from_slice(&dport);
    header[12] = (TCP_HEADER as u8 / 4) << 4;
    let length = (tcp + TCP_HEADER) as u32;
    machine.reset(length, length);
    run(machine, FILTER_NETWORK_LAYER)
}
