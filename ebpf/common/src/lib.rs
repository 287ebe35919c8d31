//! The kernel <-> userspace ABI of flowtel's eBPF programs.
//!
//! Every type here is `#[repr(C)]`, has no implicit padding and no `bool`, so
//! the eBPF programs (built for `bpfel-unknown-none`) and the userspace loader
//! agree on the bytes. With the `user` feature the types implement
//! [`aya::Pod`] and can be read straight out of BPF maps.
#![no_std]

/// Index of the ingress slot in per-direction maps.
pub const DIRECTION_INGRESS: u32 = 0;
/// Index of the egress slot in per-direction maps.
pub const DIRECTION_EGRESS: u32 = 1;
/// Number of per-direction slots.
pub const DIRECTIONS: u32 = 2;

/// Name of the per-CPU array of [`TrafficCounter`]s, indexed by direction.
pub const TRAFFIC_COUNTERS_MAP: &str = "TRAFFIC_COUNTERS";
/// Name of the TC classifier for ingress traffic.
pub const PROG_TC_INGRESS: &str = "flowtel_tc_ingress";
/// Name of the TC classifier for egress traffic.
pub const PROG_TC_EGRESS: &str = "flowtel_tc_egress";

/// Packets and bytes seen by a TC classifier in one direction on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrafficCounter {
    /// Packets seen.
    pub packets: u64,
    /// Bytes seen, counted as `skb->len` (the L2 frame without FCS).
    pub bytes: u64,
}

impl TrafficCounter {
    /// Adds another counter to this one (used to sum per-CPU values).
    pub fn merge(&mut self, other: &TrafficCounter) {
        self.packets = self.packets.wrapping_add(other.packets);
        self.bytes = self.bytes.wrapping_add(other.bytes);
    }
}

// SAFETY: `TrafficCounter` is `repr(C)`, made of two u64 fields with no padding,
// and every bit pattern is a valid value.
#[cfg(feature = "user")]
unsafe impl aya::Pod for TrafficCounter {}
