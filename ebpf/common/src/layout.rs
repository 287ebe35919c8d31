//! Where things are in this kernel's structs and tracepoint records.
//!
//! Rust eBPF has no CO-RE relocations, so userspace reads the field offsets
//! from the kernel's BTF (`/sys/kernel/btf/vmlinux`) and the tracepoint
//! record layouts from tracefs `format` files at startup, and hands them to
//! the programs as the load-time constant [`GLOBAL_LAYOUT`]. An offset the
//! kernel does not have is [`UNKNOWN`]; the programs skip what needs it.

/// Name of the load-time constant [`KernelLayout`].
pub const GLOBAL_LAYOUT: &str = "FLOWTEL_LAYOUT";

/// An offset this kernel does not have (or that could not be resolved).
pub const UNKNOWN: u16 = u16::MAX;

/// Byte offsets into kernel structs (from BTF) and tracepoint records (from
/// tracefs). Every field is an offset in bytes, or [`UNKNOWN`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelLayout {
    /// `sk_buff.head` (`unsigned char *`).
    pub skb_head: u16,
    /// `sk_buff.network_header` (`u16`, from `head`).
    pub skb_network_header: u16,
    /// `sk_buff.transport_header` (`u16`, from `head`; `0xffff` when unset).
    pub skb_transport_header: u16,
    /// `sk_buff.dev` (`struct net_device *`).
    pub skb_dev: u16,
    /// `sk_buff.len` (`unsigned int`).
    pub skb_len: u16,
    /// `net_device.ifindex` (`int`).
    pub dev_ifindex: u16,
    /// `net_device.name` (`char[16]`).
    pub dev_name: u16,
    /// `net_device.nd_net.net` (`struct net *`).
    pub dev_net: u16,
    /// `net.ns.inum` (`unsigned int`): the network namespace's inode.
    pub net_inum: u16,
    /// `sock.__sk_common.skc_net.net` (`struct net *`).
    pub sock_net: u16,
    /// `tcp_sock.srtt_us` (`u32`, microseconds << 3).
    pub tcp_srtt_us: u16,
    /// `tcp_sock.bytes_acked` (`u64`).
    pub tcp_bytes_acked: u16,
    /// `tcp_sock.bytes_received` (`u64`).
    pub tcp_bytes_received: u16,
    /// `skb:kfree_skb` record: `skbaddr`.
    pub kfree_skb_skbaddr: u16,
    /// `skb:kfree_skb` record: `location`.
    pub kfree_skb_location: u16,
    /// `skb:kfree_skb` record: `reason` (absent before 5.17).
    pub kfree_skb_reason: u16,
    /// `sock:inet_sock_set_state` record: `skaddr`.
    pub set_state_skaddr: u16,
    /// `sock:inet_sock_set_state` record: `oldstate`.
    pub set_state_oldstate: u16,
    /// `sock:inet_sock_set_state` record: `newstate`.
    pub set_state_newstate: u16,
    /// `sock:inet_sock_set_state` record: `protocol`.
    pub set_state_protocol: u16,
    /// `tcp:tcp_probe` record: `srtt` (`u32`, microseconds).
    pub tcp_probe_srtt: u16,
    /// `tcp:tcp_retransmit_skb` record: `skaddr`.
    pub retransmit_skaddr: u16,
    /// `tcp:tcp_send_reset` record: `skaddr` (null for a reset answering no socket).
    pub send_reset_skaddr: u16,
    /// `tcp:tcp_send_reset` record: `skbaddr` (the packet answered).
    pub send_reset_skbaddr: u16,
    /// `tcp:tcp_receive_reset` record: `skaddr`.
    pub receive_reset_skaddr: u16,
    /// `tcp:tcp_retransmit_skb` record: `skbaddr`.
    pub retransmit_skbaddr: u16,
    /// `sk_buff.cb` (the control buffer TCP keeps its per-packet state in).
    pub skb_cb: u16,
    /// `tcp_skb_cb.tcp_gso_segs` (`u16`): segments in a TCP packet.
    pub tcp_cb_gso_segs: u16,
    /// `sock.__sk_common.skc_family` (`unsigned short`).
    pub sock_family: u16,
    /// `sock.__sk_common.skc_daddr` (`__be32`): the peer's IPv4 address.
    pub sock_daddr: u16,
    /// `sock.__sk_common.skc_rcv_saddr` (`__be32`): the local IPv4 address.
    pub sock_rcv_saddr: u16,
    /// `sock.__sk_common.skc_dport` (`__be16`): the peer's port.
    pub sock_dport: u16,
    /// `inet_sock.inet_sport` (`__be16`): the local port (`skc_num` is
    /// already cleared when a socket's close is traced).
    pub inet_sport: u16,
    /// `sock.__sk_common.skc_v6_daddr` (`struct in6_addr`).
    pub sock_v6_daddr: u16,
    /// `sock.__sk_common.skc_v6_rcv_saddr` (`struct in6_addr`).
    pub sock_v6_rcv_saddr: u16,
    /// `sk_buff.data` (`unsigned char *`): where `len` bytes start.
    pub skb_data: u16,
    /// `tcp:tcp_probe` record: `skaddr` (absent on older kernels).
    pub tcp_probe_skaddr: u16,
    /// `sk_buff.tail` (`u32` from `head` on 64-bit kernels): the end of the
    /// linear data.
    pub skb_tail: u16,
    /// Explicit padding; always zero.
    pub pad: [u16; 2],
}

impl KernelLayout {
    /// A layout where nothing is known.
    pub const fn unknown() -> Self {
        KernelLayout {
            skb_head: UNKNOWN,
            skb_network_header: UNKNOWN,
            skb_transport_header: UNKNOWN,
            skb_dev: UNKNOWN,
            skb_len: UNKNOWN,
            dev_ifindex: UNKNOWN,
            dev_name: UNKNOWN,
            dev_net: UNKNOWN,
            net_inum: UNKNOWN,
            sock_net: UNKNOWN,
            tcp_srtt_us: UNKNOWN,
            tcp_bytes_acked: UNKNOWN,
            tcp_bytes_received: UNKNOWN,
            kfree_skb_skbaddr: UNKNOWN,
            kfree_skb_location: UNKNOWN,
            kfree_skb_reason: UNKNOWN,
            set_state_skaddr: UNKNOWN,
            set_state_oldstate: UNKNOWN,
            set_state_newstate: UNKNOWN,
            set_state_protocol: UNKNOWN,
            tcp_probe_srtt: UNKNOWN,
            retransmit_skaddr: UNKNOWN,
            send_reset_skaddr: UNKNOWN,
            send_reset_skbaddr: UNKNOWN,
            receive_reset_skaddr: UNKNOWN,
            retransmit_skbaddr: UNKNOWN,
            skb_cb: UNKNOWN,
            tcp_cb_gso_segs: UNKNOWN,
            sock_family: UNKNOWN,
            sock_daddr: UNKNOWN,
            sock_rcv_saddr: UNKNOWN,
            sock_dport: UNKNOWN,
            inet_sport: UNKNOWN,
            sock_v6_daddr: UNKNOWN,
            sock_v6_rcv_saddr: UNKNOWN,
            skb_data: UNKNOWN,
            tcp_probe_skaddr: UNKNOWN,
            skb_tail: UNKNOWN,
            pad: [0; 2],
        }
    }
}

impl Default for KernelLayout {
    fn default() -> Self {
        Self::unknown()
    }
}
