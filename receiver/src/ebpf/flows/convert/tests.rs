use std::collections::BTreeMap;

use flowtel_ebpf_common::{DIRECTION_EGRESS, FlowKey, IP_V6, ipproto};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;

use super::*;
use crate::ebpf::flows::table::{EndReason, FlowReport};
use crate::ebpf::otlp::attribute_texts;
use opentelemetry_proto::tonic::metrics::v1::number_data_point;

fn context<'a>(name: &'a dyn Fn(u32) -> String) -> RecordContext<'a> {
    RecordContext { interface_name: name, sampling: 1, monotonic_to_unix_ns: 1_700_000_000_000_000_000, now_unix_ns: 1 }
}

#[test]
fn a_tcp_flow_over_ipv4() {
    let mut key = FlowKey {
        protocol: ipproto::TCP,
        ip_version: 4,
        src_port: 43_210,
        dst_port: 443,
        ifindex: 7,
        ..FlowKey::default()
    };
    key.src_addr[..4].copy_from_slice(&[10, 0, 0, 1]);
    key.dst_addr[..4].copy_from_slice(&[10, 0, 0, 2]);
    key.direction = DIRECTION_EGRESS;
    let report = FlowReport {
        key,
        first_seen_ns: 5_000_000,
        last_seen_ns: 9_000_000,
        bytes: 1500,
        packets: 3,
        tcp_flags: 0x1b,
        is_reply: Some(false),
        end: Some(EndReason::Fin),
        responses: 2,
        response_ns: 61_000_000,
    };
    let name = |i: u32| format!("eth{i}");
    let record = flow_record(&report, &context(&name));
    assert_eq!(record.event_name, "network.flow");
    assert_eq!(record.time_unix_nano, 1_700_000_000_009_000_000);
    let expected: BTreeMap<String, String> = [
        ("network.type", "ipv4"),
        ("network.transport", "tcp"),
        ("source.address", "10.0.0.1"),
        ("source.port", "43210"),
        ("destination.address", "10.0.0.2"),
        ("destination.port", "443"),
        ("network.interface.name", "eth7"),
        ("network.io.direction", "transmit"),
        ("flow.bytes", "1500"),
        ("flow.packets", "3"),
        ("flow.start", "2023-11-14T22:13:20.005Z"),
        ("network.tcp.flags", "ACK|PSH|SYN|FIN"),
        ("flow.is_reply", "false"),
        ("flow.end_reason", "fin"),
        ("network.tcp.responses", "2"),
        ("network.tcp.response.duration", "0.0305"),
        ("flow.sampling_rate", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(attribute_texts(&record), expected);
}

#[test]
fn icmpv6_has_type_and_code_instead_of_ports() {
    let mut key =
        FlowKey { protocol: ipproto::ICMPV6, ip_version: IP_V6, src_port: 128, dst_port: 0, ..FlowKey::default() };
    key.src_addr[0] = 0xfd;
    key.src_addr[15] = 1;
    let report = FlowReport {
        key,
        first_seen_ns: 0,
        last_seen_ns: 0,
        bytes: 1,
        packets: 1,
        tcp_flags: 0,
        is_reply: None,
        end: None,
        responses: 0,
        response_ns: 0,
    };
    let name = |_| "veth0".to_owned();
    let found = attribute_texts(&flow_record(&report, &context(&name)));
    assert_eq!(found["source.address"], "fd00::1");
    assert_eq!(found["network.icmp.type"], "128");
    assert!(!found.contains_key("source.port") && !found.contains_key("network.tcp.flags"));
}

#[test]
fn metrics_are_cumulative_and_scaled_by_sampling() {
    let key = FlowKey { protocol: ipproto::UDP, ip_version: 4, ..FlowKey::default() };
    let report = FlowReport {
        key,
        first_seen_ns: 0,
        last_seen_ns: 0,
        bytes: 100,
        packets: 2,
        tcp_flags: 0,
        is_reply: None,
        end: None,
        responses: 0,
        response_ns: 0,
    };
    let mut metrics = FlowMetrics::new(10);
    metrics.add(&report, "eth0".into(), 4);
    metrics.add(&report, "eth0".into(), 4);
    let active = BTreeMap::from([("eth0".to_owned(), 1usize)]);
    let out = metrics.metrics(20, &active);
    let Some(Data::Sum(bytes)) = &out[0].data else { panic!("bytes is a sum") };
    assert_eq!(out[0].name, "network.flow.bytes");
    assert!(bytes.is_monotonic);
    assert_eq!(bytes.data_points[0].value, Some(number_data_point::Value::AsInt(800)));
    assert_eq!(bytes.data_points[0].start_time_unix_nano, 10);
    let Some(Data::Gauge(active)) = &out[2].data else { panic!("active is a gauge") };
    assert_eq!(active.data_points[0].value, Some(number_data_point::Value::AsInt(1)));
}
