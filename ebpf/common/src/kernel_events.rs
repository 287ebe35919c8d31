//! Packet drops and TCP events: what the tracepoint programs send to
//! userspace, the settings they load with, and the maps they count in.
//!
//! Every event starts with a `u8` kind, so one buffer carries both shapes.

/// Name of the ring buffer of [`DropEvent`]s and [`TcpEvent`]s.
pub const KERNEL_EVENTS_RING: &str = "KERNEL_EVENTS";
/// Name of the perf event array carrying the same events (the fallback transport).
pub const KERNEL_EVENTS_PERF: &str = "KERNEL_EVENTS_PERF";
/// Name of the per-CPU hash of [`DropCountKey`] → [`DropCount`].
pub const DROP_COUNTS_MAP: &str = "DROP_COUNTS";
/// Name of the hash of drop reasons (`u32`) never reported (value unused).
pub const EXCLUDED_DROP_REASONS_MAP: &str = "EXCLUDED_DROP_REASONS";
/// Name of the stack trace map drop events point into.
pub const DROP_STACKS_MAP: &str = "DROP_STACKS";
/// Name of the per-CPU array of drop and TCP counters, indexed by [`EventCounter`].
pub const EVENT_COUNTERS_MAP: &str = "EVENT_COUNTERS";
/// Name of the per-CPU array of histograms (see `histogram`), [`Histogram`]
/// `h` at slots `h * histogram::SLOTS ..`.
pub const TCP_HISTOGRAMS_MAP: &str = "TCP_HISTOGRAMS";
/// Name of the LRU hash of socket address (`u64`) → [`SockOpen`].
pub const TCP_SOCKETS_MAP: &str = "TCP_SOCKETS";
/// Name of the load-time constant [`DropSettings`].
pub const GLOBAL_DROPS: &str = "FLOWTEL_DROPS";
/// Name of the load-time constant [`TcpSettings`].
pub const GLOBAL_TCP: &str = "FLOWTEL_TCP";

/// Name of the `tp_btf/kfree_skb` program.
pub const PROG_KFREE_SKB_BTF: &str = "flowtel_kfree_skb_btf";
/// Name of the classic `skb:kfree_skb` tracepoint program.
pub const PROG_KFREE_SKB: &str = "flowtel_kfree_skb";
/// Name of the `tcp:tcp_retransmit_skb` program.
pub const PROG_TCP_RETRANSMIT: &str = "flowtel_tcp_retransmit";
/// Name of the `tcp:tcp_send_reset` program.
pub const PROG_TCP_SEND_RESET: &str = "flowtel_tcp_send_reset";
/// Name of the `tcp:tcp_receive_reset` program.
pub const PROG_TCP_RECEIVE_RESET: &str = "flowtel_tcp_receive_reset";
/// Name of the `tcp:tcp_probe` program.
pub const PROG_TCP_PROBE: &str = "flowtel_tcp_probe";
/// Name of the `sock:inet_sock_set_state` program.
pub const PROG_SOCK_SET_STATE: &str = "flowtel_sock_set_state";

/// [`DropEvent::kind`].
pub const EVENT_DROP: u8 = 16;
/// [`TcpEvent::kind`]: `tcp:tcp_retransmit_skb`.
pub const EVENT_TCP_RETRANSMIT: u8 = 17;
/// [`TcpEvent::kind`]: `tcp:tcp_send_reset`.
pub const EVENT_TCP_RESET_SENT: u8 = 18;
/// [`TcpEvent::kind`]: `tcp:tcp_receive_reset`.
pub const EVENT_TCP_RESET_RECEIVED: u8 = 19;
/// [`TcpEvent::kind`]: a TCP socket closed (`sock:inet_sock_set_state` to `TCP_CLOSE`).
pub const EVENT_TCP_CONNECTION: u8 = 20;

/// Bytes of the tracepoint record copied into a [`TcpEvent`].
pub const RECORD_BYTES: usize = 128;
/// The most bytes of a dropped packet an event carries (`drops.snaplen`).
pub const PACKET_CAPTURE_BYTES: usize = 256;
/// Length of an interface name or a command (`IFNAMSIZ`, `TASK_COMM_LEN`).
pub const NAME_BYTES: usize = 16;

/// What the drop program is set up with at load time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropSettings {
    /// `SKB_CONSUMED`'s value in this kernel (a normal free, never reported).
    pub consumed_reason: u32,
    /// `SKB_NOT_DROPPED_YET`'s value (never a drop).
    pub not_dropped_reason: u32,
    /// Drop events sent per second before the sampling rate rises (0:
    /// none); every drop is still counted per reason.
    pub max_events_per_second: u32,
    /// 1: attach a kernel stack trace id to each drop event.
    pub stack_trace: u32,
    /// Bytes of each dropped packet copied into its event, from its network
    /// header (0: none; at most [`PACKET_CAPTURE_BYTES`]).
    pub snaplen: u32,
}

/// `TCP_*` socket states in this kernel (read from BTF) and what the TCP
/// programs count.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpSettings {
    /// `TCP_ESTABLISHED`.
    pub established: u32,
    /// `TCP_SYN_SENT`.
    pub syn_sent: u32,
    /// `TCP_SYN_RECV`.
    pub syn_recv: u32,
    /// `TCP_CLOSE`.
    pub close: u32,
    /// `TCP_LISTEN`.
    pub listen: u32,
    /// `IPPROTO_TCP`.
    pub protocol_tcp: u32,
    /// TCP events sent per second before the sampling rate rises (0: none).
    pub max_events_per_second: u32,
}

/// Key of the per-reason drop counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DropCountKey {
    /// The kernel's drop reason value.
    pub reason: u32,
    /// Interface index of `skb->dev` (0: no device).
    pub ifindex: u32,
    /// Inode of the device's network namespace (0: unknown).
    pub netns: u32,
    /// Explicit padding; always zero.
    pub pad: u32,
}

/// Value of the per-reason drop counters (one per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropCount {
    /// Packets dropped.
    pub packets: u64,
    /// Events not sent because of `max_events_per_second`.
    pub rate_limited: u64,
    /// The interface's name when the entry was made.
    pub ifname: [u8; NAME_BYTES],
}

/// One dropped packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropEvent {
    /// [`EVENT_DROP`].
    pub kind: u8,
    /// 4 or 6 when the addresses were read, else 0.
    pub ip_version: u8,
    /// IP protocol number (0 when not read).
    pub protocol: u8,
    /// 1 when the ports were read.
    pub has_ports: u8,
    /// The kernel's drop reason value.
    pub reason: u32,
    /// `bpf_ktime_get_ns()` of the drop.
    pub time_ns: u64,
    /// Kernel address of the caller that freed the packet.
    pub location: u64,
    /// Source address (network byte order; IPv4 in the first 4 bytes).
    pub src_addr: [u8; 16],
    /// Destination address.
    pub dst_addr: [u8; 16],
    /// Source port (host order), or ICMP type.
    pub src_port: u16,
    /// Destination port (host order), or ICMP code.
    pub dst_port: u16,
    /// Interface index of `skb->dev` (0: none).
    pub ifindex: u32,
    /// Inode of the network namespace of `skb->dev` (0: unknown).
    pub netns: u32,
    /// `skb->len`.
    pub length: u32,
    /// This event stands for this many drops (1 in N sent; see `Governor`).
    pub sampling_rate: u32,
    /// How many bytes of `packet` were copied (0: none).
    pub captured: u32,
    /// Stack id in [`DROP_STACKS_MAP`], or negative when there is none.
    pub stack_id: i64,
    /// The interface's name.
    pub ifname: [u8; NAME_BYTES],
    /// The TCP connection's trace context at the drop.
    pub trace: crate::TraceContext,
    /// The packet's first bytes from its network header (its IP header), as
    /// many as `captured` says.
    pub packet: [u8; PACKET_CAPTURE_BYTES],
}

/// What is known of a TCP socket while it is open.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockOpen {
    /// `bpf_ktime_get_ns()` of `SYN_SENT` (client) or `SYN_RECV` (server).
    pub opened_ns: u64,
    /// `bpf_ktime_get_ns()` of `ESTABLISHED` (0: never).
    pub established_ns: u64,
    /// Handshake duration in ns (0: not established).
    pub handshake_ns: u64,
    /// cgroup v2 id of the process that connected (client side only).
    pub cgroup_id: u64,
    /// Thread group id (pid) of the process that connected (0: unknown).
    pub pid: u32,
    /// [`SIDE_CLIENT`] or [`SIDE_SERVER`], 0: unknown (opened before flowtel).
    pub side: u32,
    /// Command of the process that connected.
    pub comm: [u8; NAME_BYTES],
}

/// [`SockOpen::side`]: this end connected.
pub const SIDE_CLIENT: u32 = 1;
/// [`SockOpen::side`]: this end accepted.
pub const SIDE_SERVER: u32 = 2;

/// A TCP event: the tracepoint's record as the kernel wrote it (userspace
/// decodes it with the tracepoint's tracefs format) and what the program
/// added.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpEvent {
    /// One of the `EVENT_TCP_*` kinds.
    pub kind: u8,
    /// Explicit padding; always zero.
    pub pad: u8,
    /// For [`EVENT_TCP_RETRANSMIT`]: segments in the retransmitted packet
    /// (more than one under TSO/GSO; 0: unknown).
    pub segments: u16,
    /// Inode of the socket's network namespace (0: unknown).
    pub netns: u32,
    /// This event stands for this many of its kind (1 in N sent; see `Governor`).
    pub sampling_rate: u32,
    /// Explicit padding; always zero.
    pub pad2: u32,
    /// `bpf_ktime_get_ns()` of the event.
    pub time_ns: u64,
    /// `tcp_sock.srtt_us` at the event (µs << 3; 0: unknown).
    pub srtt_us8: u64,
    /// `tcp_sock.bytes_acked` at the event.
    pub bytes_acked: u64,
    /// `tcp_sock.bytes_received` at the event.
    pub bytes_received: u64,
    /// For [`EVENT_TCP_CONNECTION`]: what was known of the socket.
    pub open: SockOpen,
    /// The connection's trace context at the event.
    pub trace: crate::TraceContext,
    /// The first [`RECORD_BYTES`] of the tracepoint's record.
    pub record: [u8; RECORD_BYTES],
}

impl Default for DropEvent {
    fn default() -> Self {
        DropEvent {
            kind: 0,
            ip_version: 0,
            protocol: 0,
            has_ports: 0,
            reason: 0,
            time_ns: 0,
            location: 0,
            src_addr: [0; 16],
            dst_addr: [0; 16],
            src_port: 0,
            dst_port: 0,
            ifindex: 0,
            netns: 0,
            length: 0,
            sampling_rate: 0,
            captured: 0,
            stack_id: 0,
            ifname: [0; NAME_BYTES],
            trace: crate::TraceContext::default(),
            packet: [0; PACKET_CAPTURE_BYTES],
        }
    }
}

impl Default for TcpEvent {
    fn default() -> Self {
        TcpEvent {
            kind: 0,
            pad: 0,
            segments: 0,
            netns: 0,
            sampling_rate: 0,
            pad2: 0,
            time_ns: 0,
            srtt_us8: 0,
            bytes_acked: 0,
            bytes_received: 0,
            open: SockOpen::default(),
            trace: crate::TraceContext::default(),
            record: [0; RECORD_BYTES],
        }
    }
}

/// Slots of the event counters map.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventCounter {
    /// Retransmitted segments (`tcp:tcp_retransmit_skb`, counted as the
    /// kernel's `TcpRetransSegs` counts them).
    Retransmits = 0,
    /// Resets sent.
    ResetsSent = 1,
    /// Resets received.
    ResetsReceived = 2,
    /// Events lost because the ring buffer was full.
    RingBufferFull = 3,
    /// Sockets that could not be tracked (the socket map refused the entry).
    SocketMapFull = 4,
    /// Drops whose per-reason counter could not be created (map full).
    DropCountMapFull = 5,
    /// Drop events lost because the ring buffer was full.
    DropRingBufferFull = 6,
    /// Drops the packet filter did not match (neither counted nor sent).
    DropsFilteredOut = 7,
    /// TCP tracepoint hits on sockets the packet filter did not match.
    TcpFilteredOut = 8,
    /// TCP events not sent: sampled out under pressure (counted in the metrics).
    TcpSampledOut = 9,
    /// Journeys not sent: over `journeys.max_per_second`.
    JourneysOverBudget = 10,
    /// Journeys lost because the ring buffer was full.
    JourneyRingBufferFull = 11,
}

/// Number of slots in the event counters map.
pub const EVENT_COUNTERS: u32 = 12;

/// [`GOVERNORS_MAP`] slot of the drop events.
pub const GOVERNOR_DROPS: u32 = 0;
/// [`GOVERNORS_MAP`] slot of the TCP events.
pub const GOVERNOR_TCP: u32 = 1;
/// Name of the array of [`Governor`]s, one per kind of event.
pub const GOVERNORS_MAP: &str = "GOVERNORS";
/// The highest sampling rate a governor goes to.
pub const MAX_SAMPLING_RATE: u64 = 1 << 16;

/// How one kind of event degrades under pressure: 1 in `rate` is sent, and
/// every sent event says so. The rate doubles when the second's budget is
/// spent or the event ring buffer is more than half full, and halves after a
/// second that used less than a quarter of its budget with the ring calm.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Governor {
    /// 1 in this many events is sent (0 is read as 1).
    pub rate: u64,
    /// `bpf_ktime_get_ns() / 1e9` of the current second.
    pub second: u64,
    /// Events sent in the current second at the current rate.
    pub sent: u64,
    /// Events offered since the rate last changed (1 in `rate` of them is sent).
    pub offered: u64,
    /// When the rate last rose.
    pub raised_ns: u64,
}

/// The histograms in [`TCP_HISTOGRAMS_MAP`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Histogram {
    /// Smoothed RTT samples from `tcp:tcp_probe`.
    Rtt = 0,
    /// Client-side handshakes: `SYN` sent to `SYN-ACK` received.
    HandshakeClient = 1,
    /// Server-side handshakes: `SYN-ACK` sent to the final `ACK` received.
    HandshakeServer = 2,
}

/// Number of histograms.
pub const HISTOGRAMS: u32 = 3;
