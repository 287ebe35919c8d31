//! Flow reports as OTLP: `network.flow` log records, and the
//! `network.flow.bytes`, `network.flow.packets` and `network.flows.active`
//! metrics. Pure functions of their inputs.

use std::collections::BTreeMap;

use flowtel_core::{
    schema::{attr, event, metric},
    time::rfc3339_millis,
};
use flowtel_ebpf_common::{DIRECTION_INGRESS, FlowKey, ServerKey, ipproto, tcp_flags};
use opentelemetry_proto::tonic::{
    logs::v1::LogRecord,
    metrics::v1::{AggregationTemporality, Gauge, Histogram, Metric, NumberDataPoint, metric::Data},
};

use super::table::FlowReport;
use crate::ebpf::{
    otlp::{address, cumulative_sum, int_point, kv, network_type, traced, transport},
    tcp::convert::histogram_point,
};

/// `network.io.direction`: `receive` for ingress, `transmit` for egress.
pub fn direction(direction: u8) -> &'static str {
    if direction == DIRECTION_INGRESS { "receive" } else { "transmit" }
}

/// TCP flags as `SYN|ACK|FIN`, in header order from the high bit.
pub fn tcp_flag_names(flags: u16) -> String {
    const NAMES: [(u16, &str); 8] = [
        (tcp_flags::CWR, "CWR"),
        (tcp_flags::ECE, "ECE"),
        (tcp_flags::URG, "URG"),
        (tcp_flags::ACK, "ACK"),
        (tcp_flags::PSH, "PSH"),
        (tcp_flags::RST, "RST"),
        (tcp_flags::SYN, "SYN"),
        (tcp_flags::FIN, "FIN"),
    ];
    NAMES.iter().filter(|(bit, _)| flags & bit != 0).map(|(_, name)| *name).collect::<Vec<_>>().join("|")
}

/// What a flow record needs beyond the report.
pub struct RecordContext<'a> {
    /// Interface names by index.
    pub interface_name: &'a dyn Fn(u32) -> String,
    /// The in-kernel sampling rate (1: every packet).
    pub sampling: u32,
    /// Add to a kernel monotonic time to get Unix time.
    pub monotonic_to_unix_ns: u64,
    /// Unix time now.
    pub now_unix_ns: u64,
}

fn is_icmp(protocol: u8) -> bool {
    protocol == ipproto::ICMP || protocol == ipproto::ICMPV6
}

fn has_ports(protocol: u8) -> bool {
    matches!(protocol, ipproto::TCP | ipproto::UDP | ipproto::SCTP)
}

/// A `network.flow` log record.
pub fn flow_record(report: &FlowReport, ctx: &RecordContext<'_>) -> LogRecord {
    let key: &FlowKey = &report.key;
    let mut attributes = vec![
        kv(attr::NETWORK_TYPE, network_type(key.ip_version)),
        kv(attr::NETWORK_TRANSPORT, transport(key.protocol)),
        kv(attr::SOURCE_ADDRESS, address(key.ip_version, &key.src_addr).to_string()),
    ];
    if has_ports(key.protocol) {
        attributes.push(kv(attr::SOURCE_PORT, i64::from(key.src_port)));
    }
    attributes.push(kv(attr::DESTINATION_ADDRESS, address(key.ip_version, &key.dst_addr).to_string()));
    if has_ports(key.protocol) {
        attributes.push(kv(attr::DESTINATION_PORT, i64::from(key.dst_port)));
    }
    if is_icmp(key.protocol) {
        attributes.push(kv(attr::NETWORK_ICMP_TYPE, i64::from(key.src_port)));
        attributes.push(kv(attr::NETWORK_ICMP_CODE, i64::from(key.dst_port)));
    }
    attributes.push(kv(attr::NETWORK_INTERFACE_NAME, (ctx.interface_name)(key.ifindex)));
    attributes.push(kv(attr::NETWORK_IO_DIRECTION, direction(key.direction)));
    attributes.push(kv(attr::FLOW_BYTES, report.bytes as i64));
    attributes.push(kv(attr::FLOW_PACKETS, report.packets as i64));
    attributes
        .push(kv(attr::FLOW_START, rfc3339_millis(report.first_seen_ns.saturating_add(ctx.monotonic_to_unix_ns))));
    if key.protocol == ipproto::TCP {
        attributes.push(kv(attr::NETWORK_TCP_FLAGS, tcp_flag_names(report.tcp_flags)));
    }
    if let Some(is_reply) = report.is_reply {
        attributes.push(kv(attr::FLOW_IS_REPLY, is_reply));
    }
    if let Some(end) = report.end {
        attributes.push(kv(attr::FLOW_END_REASON, end.as_str()));
    }
    if report.responses > 0 {
        attributes.push(kv(attr::NETWORK_TCP_RESPONSES, report.responses as i64));
        attributes
            .push(kv(attr::NETWORK_TCP_RESPONSE_DURATION, report.response_ns as f64 / report.responses as f64 / 1e9));
    }
    attributes.push(kv(attr::FLOW_SAMPLING_RATE, i64::from(ctx.sampling)));
    LogRecord {
        time_unix_nano: report.last_seen_ns.saturating_add(ctx.monotonic_to_unix_ns),
        observed_time_unix_nano: ctx.now_unix_ns,
        event_name: event::FLOW.into(),
        attributes,
        ..traced(&key.trace)
    }
}

/// The attributes of a `network.flow.bytes` / `.packets` point, all read
/// from the flow records it counts (how exemplars find their point).
pub const FLOW_SERIES: [&str; 4] =
    [attr::NETWORK_TYPE, attr::NETWORK_TRANSPORT, attr::NETWORK_IO_DIRECTION, attr::NETWORK_INTERFACE_NAME];

/// The bounded attribute set of the flow metrics.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct SeriesKey {
    network_type: &'static str,
    transport: String,
    direction: &'static str,
    interface: String,
}

/// Cumulative flow metrics since the receiver started.
#[derive(Debug, Default)]
pub struct FlowMetrics {
    start_unix_ns: u64,
    totals: BTreeMap<SeriesKey, (u64, u64)>,
}

impl FlowMetrics {
    /// Sums starting at `start_unix_ns`.
    pub fn new(start_unix_ns: u64) -> Self {
        FlowMetrics { start_unix_ns, totals: BTreeMap::new() }
    }

    /// When the sums started.
    pub fn start_unix_ns(&self) -> u64 {
        self.start_unix_ns
    }

    /// Adds a report, scaled by the sampling rate (so the sums estimate all traffic).
    pub fn add(&mut self, report: &FlowReport, interface: String, sampling: u32) {
        let key = SeriesKey {
            network_type: network_type(report.key.ip_version),
            transport: transport(report.key.protocol),
            direction: direction(report.key.direction),
            interface,
        };
        let total = self.totals.entry(key).or_default();
        total.0 += report.bytes * u64::from(sampling);
        total.1 += report.packets * u64::from(sampling);
    }

    /// `network.flow.bytes`, `network.flow.packets` and `network.flows.active`
    /// (per interface) at `now_unix_ns`.
    pub fn metrics(&self, now_unix_ns: u64, active: &BTreeMap<String, usize>) -> Vec<Metric> {
        let series = |pick: fn(&(u64, u64)) -> u64| -> Vec<NumberDataPoint> {
            self.totals
                .iter()
                .map(|(key, total)| {
                    let [network_type, transport, direction, interface] = FLOW_SERIES;
                    let attributes = vec![
                        kv(network_type, key.network_type),
                        kv(transport, key.transport.clone()),
                        kv(direction, key.direction),
                        kv(interface, key.interface.clone()),
                    ];
                    int_point(attributes, pick(total), self.start_unix_ns, now_unix_ns)
                })
                .collect()
        };
        let active_points = active
            .iter()
            .map(|(interface, count)| {
                int_point(vec![kv(attr::NETWORK_INTERFACE_NAME, interface.clone())], *count as u64, 0, now_unix_ns)
            })
            .collect();
        vec![
            cumulative_sum(metric::FLOW_BYTES, "Bytes seen by flowtel's TC programs.", series(|t| t.0)),
            cumulative_sum(metric::FLOW_PACKETS, "Packets seen by flowtel's TC programs.", series(|t| t.1)),
            Metric {
                name: metric::FLOWS_ACTIVE.name.into(),
                description: "Flows in the kernel's flow table.".into(),
                unit: metric::FLOWS_ACTIVE.unit.into(),
                data: Some(Data::Gauge(Gauge { data_points: active_points })),
                ..Default::default()
            },
        ]
    }
}

/// `network.tcp.response.duration`: a cumulative histogram per server end
/// (`server.address`, `server.port`, `network.interface.name`); the servers
/// past `max_servers` share one point without them.
pub fn response_latency_metric(
    servers: &[(ServerKey, Vec<u64>)],
    interface_name: &dyn Fn(u32) -> String,
    start_unix_ns: u64,
    now_unix_ns: u64,
) -> Metric {
    let points = servers
        .iter()
        .filter(|(_, slots)| slots.iter().any(|&n| n > 0))
        .map(|(server, slots)| {
            let attributes = if server.ip_version == 0 {
                Vec::new()
            } else {
                vec![
                    kv(attr::SERVER_ADDRESS, address(server.ip_version, &server.addr).to_string()),
                    kv(attr::SERVER_PORT, i64::from(server.port)),
                    kv(attr::NETWORK_INTERFACE_NAME, interface_name(server.ifindex)),
                ]
            };
            histogram_point(slots, attributes, start_unix_ns, now_unix_ns)
        })
        .collect();
    Metric {
        name: metric::TCP_RESPONSE_DURATION.name.into(),
        description:
            "TCP request/response latency: from a client's last data segment to its server's first one back, by server."
                .into(),
        unit: metric::TCP_RESPONSE_DURATION.unit.into(),
        data: Some(Data::Histogram(Histogram {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
