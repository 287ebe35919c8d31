//! Flow reports as OTLP: `network.flow` log records, and the
//! `network.flow.bytes`, `network.flow.packets` and `network.flows.active`
//! metrics. Pure functions of their inputs.

use flowtel_core::schema::{MetricName, attr, event, metric};
use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use flowtel_core::time::rfc3339_millis;
use flowtel_ebpf_common::{DIRECTION_INGRESS, FlowKey, IP_V4, ipproto, tcp_flags};
use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value},
    logs::v1::LogRecord,
    metrics::v1::{AggregationTemporality, Gauge, Metric, NumberDataPoint, Sum, metric::Data, number_data_point},
    resource::v1::Resource,
};

use super::flow_table::FlowReport;

/// The instrumentation scope of everything the receiver produces.
pub fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "flowtel.receiver.ebpf".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    }
}

/// The resource: `service.name=flowtel` and `host.name`.
pub fn resource(host_name: &str) -> Resource {
    Resource {
        attributes: vec![kv(attr::SERVICE_NAME, "flowtel"), kv(attr::HOST_NAME, host_name)],
        ..Default::default()
    }
}

/// An attribute.
pub(crate) fn kv(key: &str, value: impl Into<AnyValueOf>) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value.into().0) }), ..Default::default() }
}

/// Something that can be an attribute value.
pub(crate) struct AnyValueOf(Value);

impl From<&str> for AnyValueOf {
    fn from(s: &str) -> Self {
        AnyValueOf(Value::StringValue(s.to_owned()))
    }
}
impl From<String> for AnyValueOf {
    fn from(s: String) -> Self {
        AnyValueOf(Value::StringValue(s))
    }
}
impl From<i64> for AnyValueOf {
    fn from(i: i64) -> Self {
        AnyValueOf(Value::IntValue(i))
    }
}
impl From<f64> for AnyValueOf {
    fn from(d: f64) -> Self {
        AnyValueOf(Value::DoubleValue(d))
    }
}
impl From<Vec<String>> for AnyValueOf {
    fn from(items: Vec<String>) -> Self {
        let values = items.into_iter().map(|s| AnyValue { value: Some(Value::StringValue(s)) }).collect();
        AnyValueOf(Value::ArrayValue(opentelemetry_proto::tonic::common::v1::ArrayValue { values }))
    }
}

/// An address of a flow key.
pub fn address(ip_version: u8, bytes: &[u8; 16]) -> IpAddr {
    if ip_version == IP_V4 {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*bytes))
    }
}

/// `network.transport`: the protocol's name, or its IANA number.
pub fn transport(protocol: u8) -> String {
    match protocol {
        ipproto::TCP => "tcp".into(),
        ipproto::UDP => "udp".into(),
        ipproto::ICMP => "icmp".into(),
        ipproto::ICMPV6 => "icmpv6".into(),
        ipproto::SCTP => "sctp".into(),
        other => other.to_string(),
    }
}

/// `network.type`.
pub fn network_type(ip_version: u8) -> &'static str {
    if ip_version == IP_V4 { "ipv4" } else { "ipv6" }
}

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
    if let Some(end) = report.end {
        attributes.push(kv(attr::FLOW_END_REASON, end.as_str()));
    }
    attributes.push(kv(attr::FLOW_SAMPLING_RATE, i64::from(ctx.sampling)));
    LogRecord {
        time_unix_nano: report.last_seen_ns.saturating_add(ctx.monotonic_to_unix_ns),
        observed_time_unix_nano: ctx.now_unix_ns,
        event_name: event::FLOW.into(),
        attributes,
        ..Default::default()
    }
}

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
                    let attributes = vec![
                        kv(attr::NETWORK_TYPE, key.network_type),
                        kv(attr::NETWORK_TRANSPORT, key.transport.clone()),
                        kv(attr::NETWORK_IO_DIRECTION, key.direction),
                        kv(attr::NETWORK_INTERFACE_NAME, key.interface.clone()),
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

/// A record's attributes as text, for tests that compare them.
#[cfg(test)]
pub(crate) fn attribute_texts(record: &LogRecord) -> BTreeMap<String, String> {
    record
        .attributes
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                Some(Value::IntValue(i)) => i.to_string(),
                Some(Value::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

/// A monotonic cumulative Sum.
pub(crate) fn cumulative_sum(metric: MetricName, description: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: metric.name.into(),
        description: description.into(),
        unit: metric.unit.into(),
        data: Some(Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

/// An integer data point.
pub(crate) fn int_point(
    attributes: Vec<KeyValue>,
    value: u64,
    start_unix_ns: u64,
    now_unix_ns: u64,
) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        start_time_unix_nano: start_unix_ns,
        time_unix_nano: now_unix_ns,
        value: Some(number_data_point::Value::AsInt(value as i64)),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
