use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, KeyValue},
    logs::v1::{ResourceLogs, ScopeLogs},
};

use super::*;

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

/// A drop record on `interface` carrying a 28-byte IPv4/UDP packet.
fn drop_record(interface: &str) -> LogRecord {
    let mut packet = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
    packet.extend_from_slice(&[0x30, 0x39, 0x00, 0x35, 0, 8, 0, 0]);
    LogRecord {
        time_unix_nano: 1_700_000_000_123_456_789,
        event_name: event::PACKET_DROP.into(),
        attributes: vec![
            kv(attr::NETWORK_DROP_REASON, Value::StringValue("NETFILTER_DROP".into())),
            kv(attr::NETWORK_DROP_LOCATION, Value::StringValue("nft_do_chain".into())),
            kv(attr::NETWORK_INTERFACE_NAME, Value::StringValue(interface.into())),
            kv(attr::LINUX_NETNS_INODE, Value::IntValue(4026531840)),
            kv(attr::NETWORK_PACKET_DATA, Value::BytesValue(packet)),
        ],
        ..Default::default()
    }
}

fn logs(records: Vec<LogRecord>) -> Payload {
    Payload::Logs(vec![ResourceLogs {
        scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }],
        ..Default::default()
    }])
}

/// The block types of a pcap-ng file, in order.
fn block_types(bytes: &[u8]) -> Vec<u32> {
    let mut types = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let word = |offset: usize| u32::from_le_bytes(bytes[at + offset..at + offset + 4].try_into().expect("4 bytes"));
        types.push(word(0));
        at += word(4) as usize;
    }
    assert_eq!(at, bytes.len(), "blocks end where the file ends");
    types
}

#[tokio::test]
async fn one_interface_block_per_interface_and_a_packet_block_per_record() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("drops.pcapng");
    let exporter = PcapExporter::new(&PcapConfig { path: path.clone(), rotation: None }).expect("open");
    exporter.export(&logs(vec![drop_record("eth0"), drop_record("eth1")])).await.expect("write");
    // A record without packet bytes is no packet.
    let mut flow = drop_record("eth0");
    flow.attributes.retain(|kv| kv.key != attr::NETWORK_PACKET_DATA);
    exporter.export(&logs(vec![drop_record("eth0"), flow])).await.expect("write");
    let bytes = std::fs::read(&path).expect("read");
    assert_eq!(block_types(&bytes), vec![0x0A0D_0D0A, 1, 6, 1, 6, 6]);
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("drop NETFILTER_DROP at nft_do_chain"), "the packet's comment");

    // The nftables rule, when the record names it.
    let mut named = drop_record("eth0");
    for (key, value) in [
        (attr::NETWORK_NETFILTER_FAMILY, "inet"),
        (attr::NETWORK_NETFILTER_TABLE, "filter"),
        (attr::NETWORK_NETFILTER_CHAIN, "input"),
    ] {
        named.attributes.push(kv(key, Value::StringValue(value.into())));
    }
    named.attributes.push(kv(attr::NETWORK_NETFILTER_RULE_HANDLE, Value::IntValue(4)));
    assert_eq!(comment(&named), "drop NETFILTER_DROP at nft_do_chain by nftables inet filter input handle 4");
    assert!(text.contains("network namespace 4026531840"), "the interface's description");
}

#[tokio::test]
async fn a_rotated_file_starts_its_own_section() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("drops.pcapng");
    let exporter = PcapExporter::new(&PcapConfig { path: path.clone(), rotation: None }).expect("open");
    exporter.output.lock().expect("output").file.limit(200, 1);
    exporter.export(&logs(vec![drop_record("eth0")])).await.expect("write");
    exporter.export(&logs(vec![drop_record("eth0")])).await.expect("write");
    let newest = std::fs::read(&path).expect("read");
    let older = std::fs::read(format!("{}.1", path.display())).expect("backup");
    assert_eq!(block_types(&older), vec![0x0A0D_0D0A, 1, 6]);
    assert_eq!(block_types(&newest), vec![0x0A0D_0D0A, 1, 6]);
}

#[test]
fn config_checks_its_directory() {
    let config = PcapConfig { path: "/nonexistent/dir/drops.pcapng".into(), rotation: None };
    assert_eq!(config.validate()[0].0, "path");
}

#[tokio::test]
async fn a_journey_is_a_packet_commented_with_its_hooks() {
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span::Event};
    let record = drop_record("veth1");
    let hook = |name: &str, interface: &str| Event {
        name: name.into(),
        attributes: vec![kv(attr::NETWORK_INTERFACE_NAME, Value::StringValue(interface.into()))],
        ..Default::default()
    };
    let span = Span {
        name: event::PACKET_JOURNEY.into(),
        end_time_unix_nano: 1_700_000_000_000_000_000,
        attributes: record.attributes.clone(),
        events: vec![hook("net_dev_queue", "veth0"), hook("netif_receive_skb", "veth1"), hook("kfree_skb", "veth1")],
        ..Default::default()
    };
    let packet = Packet::of_journey(&span).expect("a packet");
    assert_eq!(packet.interface.0, "veth1");
    assert_eq!(
        packet.comment,
        "journey net_dev_queue veth0 → netif_receive_skb veth1 → kfree_skb veth1: drop NETFILTER_DROP at nft_do_chain"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("journeys.pcapng");
    let exporter = PcapExporter::new(&PcapConfig { path: path.clone(), rotation: None }).expect("open");
    let payload = Payload::Traces(vec![ResourceSpans {
        scope_spans: vec![ScopeSpans { spans: vec![span], ..Default::default() }],
        ..Default::default()
    }]);
    exporter.export(&payload).await.expect("write");
    assert_eq!(block_types(&std::fs::read(&path).expect("read")), vec![0x0A0D_0D0A, 1, 6]);
}
