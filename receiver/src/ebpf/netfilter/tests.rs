use super::{
    nftables::{add_table as add_table_batch, delete_table, trace_drop},
    *,
};
use crate::ebpf::kernel::netlink::{F_REQUEST, Message, messages};

/// A trace event as the kernel sends it (`NFT_MSG_TRACE`, family inet).
fn trace_event(trace_type: u32, verdict: Option<u32>, policy: Option<u32>, handle: Option<u64>) -> Vec<u8> {
    let mut message = Message::new((10 << 8) | 17, 0, 0, &[1, 0, 0, 0]);
    message.string(1, "filter").string(2, "input").be32(4, trace_type);
    if let Some(handle) = handle {
        message.attribute(3, &handle.to_be_bytes());
    }
    if let Some(code) = verdict {
        message.begin(5).be32(1, code).end();
    }
    if let Some(policy) = policy {
        message.be32(16, policy);
    }
    let mut ip = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0];
    ip.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
    message.attribute(8, &ip).attribute(9, &[0x9c, 0x40, 0x1b, 0x58, 0, 8, 0, 0]);
    let mut out = Vec::new();
    message.finish(&mut out);
    out
}

fn key() -> PacketKey {
    PacketKey {
        protocol: 17,
        source: "10.0.0.1".parse().unwrap(),
        destination: "10.0.0.2".parse().unwrap(),
        source_port: 40000,
        destination_port: 7000,
    }
}

fn parse(bytes: &[u8]) -> Option<(PacketKey, DropVerdict)> {
    messages(bytes).next().and_then(|message| trace_drop(&message))
}

#[test]
fn a_rule_that_drops_is_named_with_its_handle() {
    let (packet, verdict) = parse(&trace_event(3, Some(0), None, Some(7))).expect("a drop");
    assert_eq!(packet, key());
    assert_eq!(verdict, DropVerdict { family: "inet", table: "filter".into(), chain: "input".into(), handle: Some(7) });
    let names: Vec<String> = attributes(&verdict).into_iter().map(|kv| kv.key).collect();
    assert!(names.contains(&"network.netfilter.rule.handle".to_owned()), "{names:?}");
}

#[test]
fn a_policy_drop_has_no_handle() {
    let (_, verdict) = parse(&trace_event(1, None, Some(0), None)).expect("a policy drop");
    assert_eq!(verdict.handle, None);
}

#[test]
fn accepts_and_other_messages_are_not_drops() {
    // Accept (1), continue (-1), a policy accept.
    assert_eq!(parse(&trace_event(3, Some(1), None, Some(7))), None);
    assert_eq!(parse(&trace_event(3, Some(u32::MAX), None, Some(7))), None);
    assert_eq!(parse(&trace_event(1, None, Some(1), None)), None);
    let mut other = Vec::new();
    Message::new((10 << 8) | 6, F_REQUEST, 0, &[1, 0, 0, 0]).finish(&mut other);
    assert_eq!(parse(&other), None);
    // Cut short: no packet, no drop.
    let event = trace_event(3, Some(0), None, Some(7));
    assert_eq!(parse(&event[..40]), None);
}

#[test]
fn the_setup_batch_asks_an_answer_for_each_change() {
    let (bytes, acknowledgements) = add_table_batch(1, true);
    let kinds: Vec<u16> = messages(&bytes).map(|m| m.kind).collect();
    // Begin; table added, removed, added; a chain and its rule twice; end.
    assert_eq!(kinds, vec![0x10, 0x0a00, 0x0a02, 0x0a00, 0x0a03, 0x0a06, 0x0a03, 0x0a06, 0x11]);
    assert_eq!(acknowledgements, 7);
    let (bytes, acknowledgements) = delete_table(1);
    assert_eq!(messages(&bytes).count(), 3);
    assert_eq!(acknowledgements, 1);
}

#[test]
fn verdicts_expire_and_stay_bounded() {
    let mut verdicts = Verdicts::default();
    let verdict = DropVerdict { family: "inet", table: "t".into(), chain: "c".into(), handle: None };
    for port in 0..(MAX_VERDICTS as u16 + 10) {
        verdicts.insert(PacketKey { source_port: port, ..key() }, verdict.clone());
    }
    assert!(verdicts.by_packet.len() <= MAX_VERDICTS);
    verdicts.by_packet.insert(key(), (verdict, Instant::now() - VERDICT_LIFETIME));
    assert_eq!(verdicts.get(&key()), None);
}
