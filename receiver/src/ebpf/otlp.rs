//! OTLP building blocks every kernel program family's records and metrics use.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use flowtel_core::schema::MetricName;
use flowtel_ebpf_common::{IP_V4, TraceContext, ipproto};
use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, KeyValue, any_value::Value},
    logs::v1::LogRecord,
    metrics::v1::{AggregationTemporality, Metric, NumberDataPoint, Sum, metric::Data, number_data_point},
};
#[cfg(test)]
use std::collections::BTreeMap;

/// An empty log record carrying a kernel event's trace context in its own
/// `trace_id`, `span_id` and `flags` fields (none when it has none), for
/// `LogRecord { …, ..traced(&event.trace) }`.
pub fn traced(trace: &TraceContext) -> LogRecord {
    if !trace.is_present() {
        return LogRecord::default();
    }
    LogRecord {
        trace_id: trace.trace_id.to_vec(),
        span_id: trace.span_id.to_vec(),
        // The W3C trace flags are the low 8 bits of a record's flags.
        flags: u32::from(trace.flags),
        ..Default::default()
    }
}

/// An attribute.
pub fn kv(key: &str, value: impl Into<AnyValueOf>) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value.into().0) }), ..Default::default() }
}

/// Something that can be an attribute value.
pub struct AnyValueOf(Value);

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
impl From<bool> for AnyValueOf {
    fn from(b: bool) -> Self {
        AnyValueOf(Value::BoolValue(b))
    }
}
impl From<f64> for AnyValueOf {
    fn from(d: f64) -> Self {
        AnyValueOf(Value::DoubleValue(d))
    }
}
impl From<Vec<u8>> for AnyValueOf {
    fn from(bytes: Vec<u8>) -> Self {
        AnyValueOf(Value::BytesValue(bytes))
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
                Some(Value::BoolValue(b)) => b.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

/// A monotonic cumulative Sum.
pub fn cumulative_sum(metric: MetricName, description: &str, points: Vec<NumberDataPoint>) -> Metric {
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
pub fn int_point(attributes: Vec<KeyValue>, value: u64, start_unix_ns: u64, now_unix_ns: u64) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        start_time_unix_nano: start_unix_ns,
        time_unix_nano: now_unix_ns,
        value: Some(number_data_point::Value::AsInt(value as i64)),
        ..Default::default()
    }
}
