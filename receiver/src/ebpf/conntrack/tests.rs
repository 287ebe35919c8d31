use super::{ctnetlink::*, *};
use crate::ebpf::kernel::netlink::{Message, messages};

fn tuple(source: &str, source_port: u16, destination: &str, destination_port: u16) -> Tuple {
    Tuple {
        protocol: 6,
        source: (source.parse().unwrap(), source_port),
        destination: (destination.parse().unwrap(), destination_port),
    }
}

/// A ctnetlink message as the kernel sends it: `kind` (0 new, 2 delete).
fn message(kind: u16, original: Tuple, reply: Tuple, status: u32) -> Vec<u8> {
    let mut message = Message::new((1 << 8) | kind, 0, 0, &[2, 0, 0, 0]);
    for (attribute, tuple) in [(1, original), (2, reply)] {
        let address = |ip: IpAddr| match ip {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        message.begin(attribute).begin(1);
        message.attribute(1, &address(tuple.source.0)).attribute(2, &address(tuple.destination.0));
        message.end().begin(2).attribute(1, &[tuple.protocol]);
        message.attribute(2, &tuple.source.1.to_be_bytes()).attribute(3, &tuple.destination.1.to_be_bytes());
        message.end().end();
    }
    message.be32(3, status);
    let mut out = Vec::new();
    message.finish(&mut out);
    out
}

fn connections(max: usize) -> Connections {
    Connections {
        by_original: HashMap::new(),
        views: HashMap::new(),
        max,
        retention: Duration::from_secs(60),
        last_sweep: Instant::now(),
        refused: Counter::default(),
    }
}

fn apply(connections: &mut Connections, bytes: &[u8]) {
    for message in messages(bytes) {
        on_message(connections, &message);
    }
}

/// A client 10.1.0.2:40000 to a server 10.2.0.2:80, masqueraded as 10.2.0.1:61000.
fn masqueraded() -> (Tuple, Tuple) {
    (tuple("10.1.0.2", 40000, "10.2.0.2", 80), tuple("10.2.0.2", 80, "10.2.0.1", 61000))
}

#[test]
fn every_view_of_a_masqueraded_connection_finds_it() {
    let (original, reply) = masqueraded();
    let mut table = connections(16);
    apply(&mut table, &message(0, original, reply, 0x10 | 0x8));
    for (seen, direction) in [
        (original, Direction::Original),
        (tuple("10.2.0.1", 61000, "10.2.0.2", 80), Direction::Original),
        (reply, Direction::Reply),
        (tuple("10.2.0.2", 80, "10.1.0.2", 40000), Direction::Reply),
    ] {
        let (connection, found) = table.find(&seen).expect("a view of the connection");
        assert_eq!(
            (connection.original, connection.reply, connection.nat, found),
            (original, reply, "snat", direction)
        );
    }
    let names: Vec<String> =
        nat_attributes(table.find(&original).unwrap().0, Direction::Original).into_iter().map(|kv| kv.key).collect();
    assert!(names.contains(&"network.conntrack.reply.destination.port".to_owned()), "{names:?}");
}

#[test]
fn connections_without_nat_are_not_kept() {
    let original = tuple("10.1.0.2", 40000, "10.2.0.2", 80);
    let mut table = connections(16);
    apply(&mut table, &message(0, original, original.reversed(), 0x8));
    assert!(table.by_original.is_empty());
}

#[test]
fn destroyed_connections_go_after_their_retention() {
    let (original, reply) = masqueraded();
    let mut table = connections(16);
    apply(&mut table, &message(0, original, reply, 0x10));
    apply(&mut table, &message(2, original, reply, 0x10));
    assert!(table.find(&original).is_some(), "kept for the flows' last reports");
    table.sweep(Instant::now() + Duration::from_secs(61));
    assert!(table.find(&original).is_none() && table.views.is_empty());
}

#[test]
fn a_full_table_refuses_and_counts() {
    let mut table = connections(1);
    let (original, reply) = masqueraded();
    apply(&mut table, &message(0, original, reply, 0x10));
    let other = tuple("10.1.0.3", 40001, "10.2.0.2", 80);
    apply(&mut table, &message(0, other, tuple("10.2.0.2", 80, "10.2.0.1", 61001), 0x10));
    assert_eq!(table.by_original.len(), 1);
    assert_eq!(table.refused.get(), 1);
}

#[test]
fn malformed_messages_are_no_events() {
    let (original, reply) = masqueraded();
    let bytes = message(0, original, reply, 0x10);
    for cut in [20, 40, 60] {
        let mut short = bytes[..cut].to_vec();
        short[..4].copy_from_slice(&(cut as u32).to_ne_bytes());
        assert!(messages(&short).all(|m| event(&m).is_none()), "cut at {cut}");
    }
}
