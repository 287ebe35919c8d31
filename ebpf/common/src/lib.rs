//! The kernel <-> userspace ABI of flowtel's eBPF programs.
//!
//! Every type here is `#[repr(C)]`, has explicit padding and no `bool`, so
//! the eBPF programs (built for `bpfel-unknown-none`) and the userspace
//! loader agree on the bytes. With the `user` feature the types implement
//! `aya::Pod` and can be read straight out of BPF maps.
#![no_std]

mod exchanges;
mod filter;
pub mod histogram;
mod journeys;
mod kernel_events;
mod layout;
mod trace_context;

pub use exchanges::*;
pub use filter::*;
pub use journeys::*;
pub use kernel_events::*;
pub use layout::*;
pub use trace_context::*;

/// [`FlowKey::direction`] of traffic an interface received.
pub const DIRECTION_INGRESS: u8 = 0;
/// [`FlowKey::direction`] of traffic an interface sent.
pub const DIRECTION_EGRESS: u8 = 1;
/// Name of the LRU hash of [`FlowKey`] → [`FlowStats`].
pub const FLOWS_MAP: &str = "FLOWS";
/// Name of the ring buffer of [`FlowEvent`]s.
pub const FLOW_EVENTS_RING: &str = "FLOW_EVENTS";
/// Name of the perf event array of [`FlowEvent`]s (the fallback transport).
pub const FLOW_EVENTS_PERF: &str = "FLOW_EVENTS_PERF";
/// Name of the load-time constant `u32`: count one packet in this many
/// (0 and 1: every packet).
pub const GLOBAL_SAMPLING: &str = "FLOWTEL_SAMPLING";
/// Name of the per-CPU array of loss and health counters, indexed by [`Counter`].
pub const FLOW_COUNTERS_MAP: &str = "FLOW_COUNTERS";
/// Name of the benchmark-only tracepoint program that writes one
/// [`FlowEvent`] (kind [`EVENT_BENCH`]) to the event ring buffer per call;
/// the receiver never attaches it.
pub const PROG_RING_FILL: &str = "flowtel_ring_fill";
/// Name of the benchmark-only TC classifier that does nothing (the
/// baseline of the flow programs' cost); the receiver never attaches it.
pub const PROG_TC_NOOP: &str = "flowtel_tc_noop";
/// Name of the TC classifier for ingress traffic.
pub const PROG_TC_INGRESS: &str = "flowtel_tc_ingress";
/// Name of the TC classifier for egress traffic.
pub const PROG_TC_EGRESS: &str = "flowtel_tc_egress";

/// `FlowKey::ip_version` of IPv4.
pub const IP_V4: u8 = 4;
/// `FlowKey::ip_version` of IPv6.
pub const IP_V6: u8 = 6;

/// IP protocol numbers the parser knows the ports of.
pub mod ipproto {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// SCTP.
    pub const SCTP: u8 = 132;
}

/// What identifies a flow: one direction of a conversation on one interface,
/// and for TCP the request in flight on the connection (its trace context),
/// so each traced request's packets are a flow of their own.
///
/// Addresses are 16 bytes; IPv4 uses the first 4. For ICMP and ICMPv6 the
/// ports hold the message type and code.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Source address (network byte order).
    pub src_addr: [u8; 16],
    /// Destination address (network byte order).
    pub dst_addr: [u8; 16],
    /// Source port (host order), or ICMP type.
    pub src_port: u16,
    /// Destination port (host order), or ICMP code.
    pub dst_port: u16,
    /// Interface index the packet was seen on.
    pub ifindex: u32,
    /// IP protocol number (TCP 6, UDP 17, …).
    pub protocol: u8,
    /// 4 or 6.
    pub ip_version: u8,
    /// [`DIRECTION_INGRESS`] or [`DIRECTION_EGRESS`].
    pub direction: u8,
    /// Explicit padding; always zero.
    pub pad: [u8; 5],
    /// The TCP connection's trace context when the packets were seen (all
    /// zero: none, or not TCP).
    pub trace: TraceContext,
}

/// TCP flag bits as in the TCP header (`FIN` = 0x01 … `CWR` = 0x80).
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u16 = 0x01;
    /// SYN.
    pub const SYN: u16 = 0x02;
    /// RST.
    pub const RST: u16 = 0x04;
    /// PSH.
    pub const PSH: u16 = 0x08;
    /// ACK.
    pub const ACK: u16 = 0x10;
    /// URG.
    pub const URG: u16 = 0x20;
    /// ECE.
    pub const ECE: u16 = 0x40;
    /// CWR.
    pub const CWR: u16 = 0x80;
}

/// What the kernel aggregated for one flow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// `bpf_ktime_get_ns()` of the first packet.
    pub first_seen_ns: u64,
    /// `bpf_ktime_get_ns()` of the latest packet.
    pub last_seen_ns: u64,
    /// Bytes (`skb->len`), of sampled packets only when sampling.
    pub bytes: u64,
    /// Packets, sampled only when sampling.
    pub packets: u64,
    /// Union of the TCP flags seen.
    pub tcp_flags: u16,
    /// The TCP flags of the flow's first packet (on this CPU): `SYN`
    /// without `ACK` opens a connection, `SYN|ACK` answers one.
    pub first_tcp_flags: u8,
    /// Explicit padding; always zero.
    pub pad: [u8; 5],
    /// Responses this direction carried (a server's first data segment
    /// after its client's data; see `ExchangeKey`).
    pub responses: u64,
    /// Their latencies summed, in nanoseconds.
    pub response_ns: u64,
}

/// [`FlowEvent::kind`]: a FIN or RST was seen.
pub const EVENT_FLOW_END: u8 = 2;
/// [`FlowEvent::kind`]: written by the benchmark's ring filler; ignored.
pub const EVENT_BENCH: u8 = 3;

/// A notification from the kernel about one flow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowEvent {
    /// The flow.
    pub key: FlowKey,
    /// Its stats when the event was raised.
    pub stats: FlowStats,
    /// [`EVENT_FLOW_END`] (or [`EVENT_BENCH`] from the benchmark).
    pub kind: u8,
    /// The TCP flags of the packet that raised the event.
    pub packet_tcp_flags: u8,
    /// Explicit padding; always zero.
    pub pad: [u8; 6],
}

/// Slots of the counters map.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Packets that reached a classifier.
    PacketsSeen = 0,
    /// Packets skipped by sampling.
    PacketsSampledOut = 1,
    /// Packets whose headers could not be read (truncated or unknown L2/L3).
    ParseFailures = 2,
    /// New flows that could not be inserted in the flow map.
    FlowMapInsertFailures = 3,
    /// Events lost because the ring buffer was full.
    RingBufferFull = 4,
    /// Events lost because the perf buffer could not take them.
    PerfOutputFailures = 5,
    /// Packets that were not IPv4 or IPv6 (ARP, LLDP, …); not an error.
    NonIpPackets = 6,
    /// HTTP/1.x requests whose `traceparent` was read.
    TraceContextsRead = 7,
    /// HTTP/1.x requests whose headers ended without a `traceparent`.
    TraceContextsAbsent = 8,
    /// `traceparent` headers that were not a valid version-`00` context.
    TraceContextsMalformed = 9,
    /// HTTP/1.x requests whose headers did not end within what the program
    /// reads of their first packet (split across segments, or too long), so
    /// whether they carry a context is unknown.
    TraceContextsUnreadable = 10,
    /// Contexts of new connections the full trace context map could not take.
    TraceContextMapFull = 11,
    /// Packets the packet filter did not match.
    PacketsFilteredOut = 12,
    /// Packets whose headers went on past the skb's linear area, parsed
    /// from copies (`bpf_skb_load_bytes`) rather than in place.
    HeadersCopied = 13,
}

/// Number of slots in the counters map.
pub const COUNTERS: u32 = 14;

// SAFETY (all below): `repr(C)` structs of integers and byte arrays with
// explicit padding fields, so every bit pattern is valid and there are no
// uninitialised bytes.
#[cfg(feature = "user")]
unsafe impl aya::Pod for PacketFilter {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for ServerKey {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for Governor {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for FlowKey {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for FlowStats {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for FlowEvent {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for KernelLayout {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for DropSettings {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for TcpSettings {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for DropCountKey {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for DropCount {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for DropEvent {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for SockOpen {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for JourneySettings {}

#[cfg(feature = "user")]
unsafe impl aya::Pod for TcpEvent {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for TraceContext {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for ConnectionKey {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for ConnectionTrace {}

#[cfg(test)]
mod tests {
    use core::mem::size_of;

    use super::*;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<FlowKey>(), 16 + 16 + 2 + 2 + 4 + 1 + 1 + 1 + 5 + size_of::<TraceContext>());
        assert_eq!(size_of::<FlowStats>(), 8 * 4 + 2 + 6 + 16);
        assert_eq!(size_of::<ExchangeKey>(), 16 + 16 + 2 + 2 + 4);
        assert_eq!(size_of::<ServerKey>(), 16 + 2 + 1 + 1 + 4);
        assert_eq!(size_of::<FlowEvent>(), size_of::<FlowKey>() + size_of::<FlowStats>() + 8);
        assert_eq!(size_of::<TraceContext>(), 16 + 8 + 8);
        assert_eq!(size_of::<ConnectionKey>(), 16 + 16 + 2 + 2 + 4);
        assert_eq!(size_of::<ConnectionTrace>(), size_of::<TraceContext>() + 8);
        assert_eq!(size_of::<KernelLayout>(), 2 * 40);
        assert_eq!(size_of::<KernelLayout>() % 8, 0);
        assert_eq!(size_of::<PacketFilter>(), 8 + 8 * FILTER_MAX_INSTRUCTIONS);
        assert_eq!(size_of::<DropCountKey>(), 16);
        assert_eq!(size_of::<DropCount>(), 8 + 8 + NAME_BYTES);
        assert_eq!(
            size_of::<DropEvent>(),
            4 + 4 + 8 + 8 + 32 + 4 + 4 + 4 + 4 + 8 + 8 + NAME_BYTES + size_of::<TraceContext>() + PACKET_CAPTURE_BYTES
        );
        assert_eq!(size_of::<SockOpen>(), 8 * 4 + 4 + 4 + NAME_BYTES);
        assert_eq!(
            size_of::<TcpEvent>(),
            8 + 8 + 8 * 4 + size_of::<SockOpen>() + size_of::<TraceContext>() + RECORD_BYTES
        );
        assert_eq!(size_of::<Governor>(), 8 * 5);
        assert_eq!(size_of::<Hop>(), 8 + 4 * 3 + 4 + NAME_BYTES);
        assert_eq!(size_of::<Journey>(), 16 + JOURNEY_HOPS * size_of::<Hop>());
        assert_eq!(size_of::<JourneyEvent>(), 16 + size_of::<DropEvent>() + size_of::<Journey>());
    }
}
