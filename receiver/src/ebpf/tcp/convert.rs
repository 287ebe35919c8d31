//! TCP events and counters as OTLP: `network.tcp.retransmit`,
//! `network.tcp.reset` and `network.tcp.connection` log records, the
//! `network.tcp.retransmits` and `network.tcp.resets` sums and the
//! `network.tcp.rtt` and `network.tcp.handshake.duration` histograms.
//!
//! Events carry their tracepoint's record as the kernel wrote it; the
//! fields are read here with the record layouts from tracefs, so a kernel
//! that moved or renamed a field is read right (or the field is left out).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use flowtel_core::{
    linux::container_id,
    schema::{MetricName, attr, event, metric},
};
use flowtel_ebpf_common::{
    EVENT_TCP_CONNECTION, EVENT_TCP_RESET_RECEIVED, EVENT_TCP_RESET_SENT, EVENT_TCP_RETRANSMIT, SIDE_CLIENT,
    SIDE_SERVER, TcpEvent, histogram,
};
use opentelemetry_proto::tonic::{
    common::v1::KeyValue,
    logs::v1::LogRecord,
    metrics::v1::{AggregationTemporality, HistogramDataPoint, Metric, metric::Data},
};

use crate::ebpf::{
    kernel::{btf::KernelEnums, cgroups::Cgroups, events::c_name, tracefs::Format},
    otlp::{cumulative_sum, int_point, kv, traced},
};

const AF_INET: u64 = 2;
const AF_INET6: u64 = 10;

/// Record layouts of the TCP tracepoints.
#[derive(Clone, Debug, Default)]
pub struct TcpFormats {
    /// `tcp:tcp_retransmit_skb`.
    pub retransmit: Format,
    /// `tcp:tcp_send_reset`.
    pub send_reset: Format,
    /// `tcp:tcp_receive_reset`.
    pub receive_reset: Format,
    /// `sock:inet_sock_set_state`.
    pub set_state: Format,
}

/// Addresses and ports as a record states them: `s*` is the socket's own end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuple {
    /// `saddr` / `sport`.
    pub local: (IpAddr, u16),
    /// `daddr` / `dport`.
    pub remote: (IpAddr, u16),
}

impl Tuple {
    /// The same tuple seen from the other end.
    pub fn reversed(self) -> Tuple {
        Tuple { local: self.remote, remote: self.local }
    }
}

/// An IPv4-mapped IPv6 address is shown as the IPv4 address it is.
fn unmap(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

/// A `struct sockaddr_in` / `sockaddr_in6` as some records carry them.
fn sockaddr(bytes: &[u8]) -> Option<(IpAddr, u16)> {
    let family = u64::from(u16::from_ne_bytes(bytes.get(..2)?.try_into().ok()?));
    let port = u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?);
    let address = match family {
        AF_INET => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes.get(4..8)?).ok()?)),
        AF_INET6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes.get(8..24)?).ok()?)),
        _ => return None,
    };
    Some((unmap(address), port))
}

/// The tuple of a record: `saddr`/`daddr` as socket addresses, or `family`,
/// `sport`/`dport` (host order) and `saddr`/`saddr_v6`.
pub fn tuple(format: &Format, record: &[u8]) -> Option<Tuple> {
    if format.field("saddr").is_some_and(|f| f.size >= 16) {
        return Some(Tuple {
            local: sockaddr(format.bytes(record, "saddr")?)?,
            remote: sockaddr(format.bytes(record, "daddr")?)?,
        });
    }
    let port = |name| format.read_uint(record, name).map(|p| p as u16);
    let address = |v4: &str, v6: &str| -> Option<IpAddr> {
        let mapped = || Some(unmap(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(format.bytes(record, v6)?).ok()?))));
        if format.field("family").is_none() {
            // Older kernels' reset records have no `family` (5.10's): their IPv6 fields
            // hold an IPv4 socket's addresses mapped (`::ffff:a.b.c.d`).
            return mapped();
        }
        match format.read_uint(record, "family")? {
            AF_INET => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(format.bytes(record, v4)?).ok()?))),
            AF_INET6 => mapped(),
            _ => None,
        }
    };
    Some(Tuple {
        local: (address("saddr", "saddr_v6")?, port("sport")?),
        remote: (address("daddr", "daddr_v6")?, port("dport")?),
    })
}

/// What turning TCP events into records needs.
pub struct TcpContext<'a> {
    /// The tracepoints' record layouts.
    pub formats: &'a TcpFormats,
    /// TCP state and reset reason names.
    pub enums: &'a KernelEnums,
    /// Add to a kernel monotonic time to get Unix time.
    pub monotonic_to_unix_ns: u64,
    /// Unix time now.
    pub now_unix_ns: u64,
}

fn tuple_attributes(attributes: &mut Vec<KeyValue>, source: (IpAddr, u16), destination: (IpAddr, u16)) {
    let network_type = if source.0.is_ipv4() { "ipv4" } else { "ipv6" };
    attributes.push(kv(attr::NETWORK_TYPE, network_type));
    attributes.push(kv(attr::NETWORK_TRANSPORT, "tcp"));
    attributes.push(kv(attr::SOURCE_ADDRESS, source.0.to_string()));
    attributes.push(kv(attr::SOURCE_PORT, i64::from(source.1)));
    attributes.push(kv(attr::DESTINATION_ADDRESS, destination.0.to_string()));
    attributes.push(kv(attr::DESTINATION_PORT, i64::from(destination.1)));
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// The log record of a TCP event, or `None` when its record cannot be read.
/// `cgroups` resolves the connecting process's cgroup (none without cgroup v2).
pub fn tcp_record(event: &TcpEvent, ctx: &TcpContext<'_>, cgroups: Option<&mut Cgroups>) -> Option<LogRecord> {
    let formats = ctx.formats;
    let record = &event.record[..];
    let state_name = |format: &Format, field: &str| {
        let value = format.read_uint(record, field)?;
        Some(ctx.enums.tcp_states.get(&value).cloned().unwrap_or_else(|| value.to_string()))
    };
    let mut attributes = Vec::with_capacity(20);
    let event_name = match event.kind {
        EVENT_TCP_RETRANSMIT => {
            let tuple = tuple(&formats.retransmit, record)?;
            tuple_attributes(&mut attributes, tuple.local, tuple.remote);
            if let Some(state) = state_name(&formats.retransmit, "state") {
                attributes.push(kv(attr::NETWORK_TCP_STATE, state));
            }
            if event.segments != 0 {
                attributes.push(kv(attr::NETWORK_TCP_RETRANSMIT_SEGMENTS, i64::from(event.segments)));
            }
            if let Some(err) = formats.retransmit.read_uint(record, "err").map(|e| e as u32 as i32)
                && err != 0
            {
                attributes.push(kv(attr::NETWORK_TCP_RETRANSMIT_ERROR, i64::from(err)));
            }
            event::TCP_RETRANSMIT
        }
        EVENT_TCP_RESET_SENT | EVENT_TCP_RESET_RECEIVED => {
            let sent = event.kind == EVENT_TCP_RESET_SENT;
            let format = if sent { &formats.send_reset } else { &formats.receive_reset };
            // Source is the end that sent the reset.
            let tuple = tuple(format, record)?;
            let tuple = if sent { tuple } else { tuple.reversed() };
            tuple_attributes(&mut attributes, tuple.local, tuple.remote);
            attributes.push(kv(attr::NETWORK_IO_DIRECTION, if sent { "transmit" } else { "receive" }));
            if let Some(state) = state_name(format, "state").filter(|s| s != "0") {
                attributes.push(kv(attr::NETWORK_TCP_STATE, state));
            }
            if sent
                && let Some(reason) = format.read_uint(record, "reason")
                && let Some(name) = ctx.enums.reset_reasons.get(&reason)
            {
                attributes.push(kv(attr::NETWORK_TCP_RESET_REASON, name.clone()));
            }
            event::TCP_RESET
        }
        EVENT_TCP_CONNECTION => {
            let tuple = tuple(&formats.set_state, record)?;
            connection_attributes(&mut attributes, event, tuple, cgroups);
            if let Some(state) = state_name(&formats.set_state, "oldstate") {
                attributes.push(kv(attr::NETWORK_TCP_STATE, state));
            }
            event::TCP_CONNECTION
        }
        _ => return None,
    };
    if event.netns != 0 {
        attributes.push(kv(attr::LINUX_NETNS_INODE, i64::from(event.netns)));
    }
    attributes.push(kv(attr::SAMPLING_ADJUSTED_COUNT, i64::from(event.sampling_rate.max(1))));
    Some(LogRecord {
        time_unix_nano: event.time_ns.saturating_add(ctx.monotonic_to_unix_ns),
        observed_time_unix_nano: ctx.now_unix_ns,
        event_name: event_name.into(),
        attributes,
        ..traced(&event.trace)
    })
}

/// A connection's attributes; source is the end that connected.
fn connection_attributes(
    attributes: &mut Vec<KeyValue>,
    event: &TcpEvent,
    tuple: Tuple,
    cgroups: Option<&mut Cgroups>,
) {
    let open = &event.open;
    let (tuple, side) = match open.side {
        SIDE_CLIENT => (tuple, Some("client")),
        SIDE_SERVER => (tuple.reversed(), Some("server")),
        _ => (tuple, None),
    };
    tuple_attributes(attributes, tuple.local, tuple.remote);
    if let Some(side) = side {
        attributes.push(kv(attr::NETWORK_TCP_SIDE, side));
    }
    if open.pid != 0 {
        attributes.push(kv(attr::PROCESS_PID, i64::from(open.pid)));
        attributes.push(kv(attr::PROCESS_EXECUTABLE_NAME, c_name(&open.comm)));
    }
    if let Some(path) = cgroups.and_then(|c| c.path(open.cgroup_id)) {
        let container = container_id(path).map(str::to_owned);
        attributes.push(kv(attr::PROCESS_LINUX_CGROUP, path.to_owned()));
        if let Some(container) = container {
            attributes.push(kv(attr::CONTAINER_ID, container));
        }
    }
    if open.opened_ns != 0 {
        attributes
            .push(kv(attr::NETWORK_TCP_CONNECTION_DURATION, seconds(event.time_ns.saturating_sub(open.opened_ns))));
    }
    if open.handshake_ns != 0 {
        attributes.push(kv(attr::NETWORK_TCP_HANDSHAKE_DURATION, seconds(open.handshake_ns)));
    }
    if event.srtt_us8 != 0 {
        attributes.push(kv(attr::NETWORK_TCP_SRTT, (event.srtt_us8 >> 3) as f64 / 1e6));
    }
    attributes.push(kv(attr::NETWORK_TCP_BYTES_ACKED, event.bytes_acked as i64));
    attributes.push(kv(attr::NETWORK_TCP_BYTES_RECEIVED, event.bytes_received as i64));
}

/// The histograms' bucket bounds in seconds (`2^(j/4)` µs).
pub fn bounds_seconds() -> Vec<f64> {
    (0..histogram::BOUNDS).map(|j| (f64::from(j) / 4.0).exp2() / 1e6).collect()
}

/// One histogram's data point from its map slots (summed over CPUs).
pub fn histogram_point(slots: &[u64], attributes: Vec<KeyValue>, start: u64, now: u64) -> HistogramDataPoint {
    let buckets = &slots[..histogram::BUCKETS as usize];
    let sum_us = slots.get(histogram::SUM_SLOT as usize).copied().unwrap_or(0);
    HistogramDataPoint {
        attributes,
        start_time_unix_nano: start,
        time_unix_nano: now,
        count: buckets.iter().sum(),
        sum: Some(sum_us as f64 / 1e6),
        bucket_counts: buckets.to_vec(),
        explicit_bounds: bounds_seconds(),
        ..Default::default()
    }
}

/// The kernel's TCP counters and histograms, summed over CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TcpTotals {
    /// Retransmitted segments.
    pub retransmits: u64,
    /// Resets sent.
    pub resets_sent: u64,
    /// Resets received.
    pub resets_received: u64,
    /// RTT histogram slots.
    pub rtt: Vec<u64>,
    /// Client handshake histogram slots.
    pub handshake_client: Vec<u64>,
    /// Server handshake histogram slots.
    pub handshake_server: Vec<u64>,
}

impl TcpTotals {
    /// The TCP metrics, cumulative since `start`.
    pub fn metrics(&self, start: u64, now: u64) -> Vec<Metric> {
        let histogram = |metric: MetricName, description: &str, points: Vec<HistogramDataPoint>| Metric {
            name: metric.name.into(),
            description: description.into(),
            unit: metric.unit.into(),
            data: Some(Data::Histogram(opentelemetry_proto::tonic::metrics::v1::Histogram {
                data_points: points,
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
            ..Default::default()
        };
        let direction = |d: &str| vec![kv(attr::NETWORK_IO_DIRECTION, d)];
        vec![
            cumulative_sum(
                metric::TCP_RETRANSMITS,
                "TCP segments retransmitted.",
                vec![int_point(Vec::new(), self.retransmits, start, now)],
            ),
            cumulative_sum(
                metric::TCP_RESETS,
                "TCP resets sent (transmit) and received (receive).",
                vec![
                    int_point(direction("transmit"), self.resets_sent, start, now),
                    int_point(direction("receive"), self.resets_received, start, now),
                ],
            ),
            histogram(
                metric::TCP_RTT,
                "Smoothed round-trip time of TCP connections, one sample per segment received.",
                vec![histogram_point(&self.rtt, Vec::new(), start, now)],
            ),
            histogram(
                metric::TCP_HANDSHAKE_DURATION,
                "TCP handshakes: SYN to SYN-ACK on the client, SYN-ACK to ACK on the server.",
                vec![
                    histogram_point(&self.handshake_client, vec![kv(attr::NETWORK_TCP_SIDE, "client")], start, now),
                    histogram_point(&self.handshake_server, vec![kv(attr::NETWORK_TCP_SIDE, "server")], start, now),
                ],
            ),
        ]
    }
}

#[cfg(test)]
mod tests;
