//! `receivers::ebpf` config.

use std::{num::NonZeroU32, time::Duration};

use flowtel_core::config::Validate;
use flowtel_ebpf_common::PACKET_CAPTURE_BYTES;
use serde::Deserialize;

use super::{filter::CompiledFilter, flows::interfaces::InterfaceFilter};

/// `receivers::ebpf`: the kernel's view of the network.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EbpfReceiverConfig {
    /// Interfaces to watch, by name or glob (`eth*`, `veth*`). Empty: every
    /// interface that is up, except loopback (`lo` only when named).
    /// Interfaces that appear later and match are attached too.
    pub interfaces: Vec<String>,
    /// Interfaces never to watch, by name or glob.
    pub exclude_interfaces: Vec<String>,
    /// A pcap-filter expression (`tcp port 443 and net 10.0.0.0/8`, as
    /// tcpdump takes them), run in the kernel: packets it does not match
    /// make no flow, drop or TCP event. Empty: every packet.
    pub filter: String,
    /// How the TC programs attach: `auto` (TCX where the kernel has it,
    /// else a clsact qdisc), `tcx` or `netlink` (clsact).
    pub tc_attach: TcAttach,
    /// How kernel events reach userspace: `auto` (ring buffers where the
    /// kernel has them, 5.8+, else perf event arrays), `ring_buffer` or `perf_array`.
    pub event_transport: EventTransport,
    /// How often active flows are reported (as deltas since the last report).
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// A flow without packets for this long is ended and forgotten.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Count one packet in this many, in the kernel (1: every packet). The
    /// rate is written on every record as `flow.sampling_rate`.
    pub sampling: NonZeroU32,
    /// Size of the kernel's flow table; the least recently used flow is
    /// evicted when it is full (and counted).
    pub max_flows: NonZeroU32,
    /// How often the interface list is read again besides the kernel's
    /// rtnetlink link messages, which attach new interfaces as they come up:
    /// a safety net, and the retry of an interface that could not be attached.
    #[serde(with = "humantime_serde")]
    pub interface_poll_interval: Duration,
    /// Packet drops with the kernel's reason (`skb:kfree_skb`).
    pub drops: DropsConfig,
    /// TCP retransmits, resets, RTT, handshake latency and connections.
    pub tcp: TcpConfig,
    /// W3C trace context read from plaintext HTTP/1.x requests, carried by
    /// every kernel record of their connection.
    pub trace_context: TraceContextConfig,
    /// Request/response latency of TCP connections, from packet timing.
    pub response_latency: ResponseLatencyConfig,
    /// Conntrack and NAT: flow records of NATed connections name both tuples.
    pub conntrack: ConntrackConfig,
    /// Packet journeys across the stack's hooks, exported as traces.
    pub journeys: JourneysConfig,
    /// Lets flowtel change the system to see more (off by default): an
    /// nftables table of its own, `inet flowtel_trace`, traces every packet
    /// of its network namespace so that drops by nftables name the table,
    /// chain and rule (`network.netfilter.*`). Removed at shutdown.
    pub allow_system_changes: bool,
}

/// `response_latency`: the time from a client's last data segment to its
/// server's first one back, timed by the TC programs (so TLS too).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ResponseLatencyConfig {
    /// Whether responses are timed.
    pub enabled: bool,
    /// Server ends (address, port, interface) with a histogram of their own;
    /// servers past it are counted together in one without a server.
    pub max_servers: NonZeroU32,
}

impl Default for ResponseLatencyConfig {
    fn default() -> Self {
        ResponseLatencyConfig { enabled: true, max_servers: NonZeroU32::new(1024).unwrap_or(NonZeroU32::MIN) }
    }
}

/// `trace_context`: the `traceparent` header of HTTP/1.x requests, in the kernel.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TraceContextConfig {
    /// Whether the TC programs read `traceparent` headers.
    pub enabled: bool,
    /// Connections whose context the kernel keeps at once; a context of a
    /// new connection past it is not kept (and counted).
    pub max_connections: NonZeroU32,
}

impl Default for TraceContextConfig {
    fn default() -> Self {
        TraceContextConfig { enabled: true, max_connections: NonZeroU32::new(16_384).unwrap_or(NonZeroU32::MIN) }
    }
}

/// `conntrack`: the NATed connections of flowtel's network namespace, from
/// the kernel's connection tracking (ctnetlink).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConntrackConfig {
    /// Whether flow records of NATed connections name their original and
    /// reply tuples (`network.conntrack.*`).
    pub enabled: bool,
    /// NATed connections kept at most; more are counted in
    /// `flowtel_ebpf_conntrack_connections_refused_total` and their flows
    /// go without.
    pub max_connections: NonZeroU32,
}

impl Default for ConntrackConfig {
    fn default() -> Self {
        ConntrackConfig { enabled: false, max_connections: NonZeroU32::new(65_536).unwrap_or(NonZeroU32::MIN) }
    }
}

/// `journeys`: packets followed across the stack's hooks to their drop or
/// delivery, each exported as a trace (one span, an event per hook).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JourneysConfig {
    /// Whether packets are followed. Without `filter`, every packet is and
    /// the journeys of dropped ones are exported; with it, the packets it
    /// matches at their first hook, dropped or delivered.
    pub enabled: bool,
    /// Journeys exported a second at most; more are counted in
    /// `flowtel_ebpf_journeys_over_budget_total`.
    pub max_per_second: u32,
}

impl Default for JourneysConfig {
    fn default() -> Self {
        JourneysConfig { enabled: false, max_per_second: 100 }
    }
}

/// `drops`: packet drops from `skb:kfree_skb`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DropsConfig {
    /// Whether drops are watched.
    pub enabled: bool,
    /// Drop reasons never reported nor counted, by the kernel's name
    /// (`NOT_SPECIFIED`, or with its `SKB_DROP_REASON_` prefix). Normal
    /// frees (`SKB_CONSUMED`) are always skipped.
    pub exclude_reasons: Vec<String>,
    /// `network.packet.drop` records a second before the kernel starts
    /// sending 1 in N (N doubling each time the budget is spent again, halving
    /// after calm seconds; each record's `sampling.adjusted_count` says its
    /// N). Every drop is still counted in `network.packet.drops`, and what
    /// was not sent in `flowtel_ebpf_drop_events_rate_limited_total`. 0: no budget
    /// (only a filling ring buffer raises N).
    pub max_events_per_second: u32,
    /// Attach the kernel stack of each drop to its record (`network.drop.stack`).
    pub stack_trace: bool,
    /// Bytes of each dropped packet, from its IP header, put on its record
    /// (`network.packet.data`, for the `pcap` exporter); 0 (the default):
    /// none. At most 256.
    pub snaplen: u32,
    /// Which `kfree_skb` tracepoint: `auto` (the BTF one, else the classic
    /// one), `btf` or `classic`.
    pub tracepoint: DropTracepoint,
}

impl Default for DropsConfig {
    fn default() -> Self {
        DropsConfig {
            enabled: true,
            exclude_reasons: Vec::new(),
            max_events_per_second: 1000,
            stack_trace: false,
            snaplen: 0,
            tracepoint: DropTracepoint::Auto,
        }
    }
}

/// Which `kfree_skb` tracepoint the drop program attaches to.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DropTracepoint {
    /// The BTF tracepoint (`tp_btf/kfree_skb`), else the classic one.
    #[default]
    Auto,
    /// Only the BTF tracepoint.
    Btf,
    /// Only the classic tracepoint (`skb:kfree_skb`).
    Classic,
}

/// `tcp`: TCP events from the `tcp` and `sock` tracepoints.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TcpConfig {
    /// Whether TCP is watched.
    pub enabled: bool,
    /// Retransmit, reset and connection records a second before the kernel
    /// starts sending 1 in N, as `drops.max_events_per_second` does; the
    /// TCP metrics count every event. 0: no budget.
    pub max_events_per_second: u32,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig { enabled: true, max_events_per_second: 10_000 }
    }
}

impl Default for EbpfReceiverConfig {
    fn default() -> Self {
        EbpfReceiverConfig {
            interfaces: Vec::new(),
            exclude_interfaces: Vec::new(),
            filter: String::new(),
            tc_attach: TcAttach::Auto,
            event_transport: EventTransport::Auto,
            flush_interval: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            sampling: NonZeroU32::MIN,
            max_flows: NonZeroU32::new(65_536).unwrap_or(NonZeroU32::MIN),
            interface_poll_interval: Duration::from_secs(30),
            drops: DropsConfig::default(),
            tcp: TcpConfig::default(),
            trace_context: TraceContextConfig::default(),
            response_latency: ResponseLatencyConfig::default(),
            conntrack: ConntrackConfig::default(),
            journeys: JourneysConfig::default(),
            allow_system_changes: false,
        }
    }
}

/// How the TC programs are attached.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TcAttach {
    /// TCX when the kernel supports it (6.6+), else netlink.
    #[default]
    Auto,
    /// TCX links, first in the chain.
    Tcx,
    /// A clsact qdisc and direct-action filters at priority 1.
    Netlink,
}

/// How events reach userspace.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EventTransport {
    /// Ring buffers where the kernel has them, else perf event arrays.
    #[default]
    Auto,
    /// BPF ring buffer (kernel 5.8+): one buffer shared by all CPUs.
    RingBuffer,
    /// Perf event array: one buffer per CPU.
    PerfArray,
}

impl EbpfReceiverConfig {
    /// The compiled `filter`, if one is set; the error says what libpcap or
    /// the kernel side refused.
    pub fn packet_filter(&self) -> Result<Option<CompiledFilter>, String> {
        if self.filter.trim().is_empty() {
            return Ok(None);
        }
        let compiled = CompiledFilter::compile(&self.filter)?;
        if self.drops.enabled || self.tcp.enabled {
            compiled.network_layer()?;
        }
        Ok(Some(compiled))
    }
}

impl Validate for EbpfReceiverConfig {
    fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if let Err((field, message)) = InterfaceFilter::new(&self.interfaces, &self.exclude_interfaces) {
            problems.push((field.into(), message));
        }
        if let Err(message) = self.packet_filter() {
            problems.push(("filter".into(), message));
        }
        for (field, value) in [
            ("flush_interval", self.flush_interval),
            ("idle_timeout", self.idle_timeout),
            ("interface_poll_interval", self.interface_poll_interval),
        ] {
            if value.is_zero() {
                problems.push((field.into(), "must be more than 0".into()));
            }
        }
        if self.journeys.enabled && !self.drops.enabled {
            problems.push((
                "journeys.enabled".into(),
                "journeys end at drops, which drops.enabled: false turns off".into(),
            ));
        }
        if self.drops.snaplen as usize > PACKET_CAPTURE_BYTES {
            problems.push((
                "drops.snaplen".into(),
                format!("{} is more than the {PACKET_CAPTURE_BYTES} bytes a drop event carries", self.drops.snaplen),
            ));
        }
        for (index, reason) in self.drops.exclude_reasons.iter().enumerate() {
            if reason.is_empty() || !reason.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') {
                problems.push((
                    format!("drops.exclude_reasons[{index}]"),
                    format!("`{reason}` is not a drop reason name (upper case, like NO_SOCKET)"),
                ));
            }
        }
        problems
    }
}
