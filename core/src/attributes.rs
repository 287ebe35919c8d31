//! Reading OTLP attributes: what receivers, processors and exporters share
//! when they look at a record's (or a point's) key-value list.

use std::{
    borrow::Cow,
    net::{IpAddr, SocketAddr},
};

use crate::schema::attr;
use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, KeyValue, any_value::Value},
    resource::v1::Resource,
};

/// A resource's attributes; none when the resource is absent.
pub fn of_resource(resource: Option<&Resource>) -> &[KeyValue] {
    resource.map_or(&[], |r| &r.attributes)
}

/// The value of `key`, if the list has it (the last one wins, as in OTLP).
pub fn find<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes.iter().rev().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

/// A scalar as text (`"tcp"`, `443`, `true`, `0.5`); `None` for arrays,
/// maps and bytes.
pub fn text(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::StringValue(s) => Some(Cow::Borrowed(s)),
        Value::IntValue(i) => Some(Cow::Owned(i.to_string())),
        Value::BoolValue(b) => Some(Cow::Owned(b.to_string())),
        Value::DoubleValue(d) => Some(Cow::Owned(d.to_string())),
        _ => None,
    }
}

/// A number (an integer, a double, or a string holding one).
pub fn number(value: &Value) -> Option<f64> {
    match value {
        Value::IntValue(i) => Some(*i as f64),
        Value::DoubleValue(d) => Some(*d),
        Value::StringValue(s) => s.parse().ok(),
        _ => None,
    }
}

/// The socket address an IP under `address_key` and a port under
/// `port_key` make (`source.address` and `source.port`), if both are there.
pub fn socket_address(attributes: &[KeyValue], address_key: &str, port_key: &str) -> Option<SocketAddr> {
    let ip: IpAddr = find_text(attributes, address_key)?.parse().ok()?;
    let port = find(attributes, port_key).and_then(number)?;
    Some(SocketAddr::new(ip, u16::try_from(port as i64).ok()?))
}

/// The text of `key`'s value.
pub fn find_text<'a>(attributes: &'a [KeyValue], key: &str) -> Option<Cow<'a, str>> {
    find(attributes, key).and_then(text)
}

/// A record's two ends as `address|port`: the conntrack original tuple of
/// a NATed connection (`network.conntrack.original.*`), else the record's
/// own source and destination; and whether the record's packets go the
/// connection's reply way.
fn connection_ends(attributes: &[KeyValue]) -> Option<(String, String, bool)> {
    let end = |address: &str, port: &str| -> Option<String> {
        let address = find_text(attributes, address)?;
        let port = find_text(attributes, port).unwrap_or(Cow::Borrowed(""));
        Some(format!("{address}|{port}"))
    };
    if let Some(source) =
        end(attr::NETWORK_CONNTRACK_ORIGINAL_SOURCE_ADDRESS, attr::NETWORK_CONNTRACK_ORIGINAL_SOURCE_PORT)
    {
        let destination = end(
            attr::NETWORK_CONNTRACK_ORIGINAL_DESTINATION_ADDRESS,
            attr::NETWORK_CONNTRACK_ORIGINAL_DESTINATION_PORT,
        )?;
        let reply = find_text(attributes, attr::NETWORK_CONNTRACK_DIRECTION).is_some_and(|d| d == "reply");
        return Some((source, destination, reply));
    }
    Some((
        end(attr::SOURCE_ADDRESS, attr::SOURCE_PORT)?,
        end(attr::DESTINATION_ADDRESS, attr::DESTINATION_PORT)?,
        false,
    ))
}

/// A flow's identity whatever its direction (`tcp|10.0.0.1|80|10.0.0.2|4711`,
/// the lower end first), from a record's `network.transport` and its
/// source and destination address and port; `None` without both addresses.
/// Both directions of a connection have the same identity, and so do its
/// records before and after NAT (by its conntrack original tuple).
pub fn flow_identity(attributes: &[KeyValue]) -> Option<String> {
    let (source, destination, _) = connection_ends(attributes)?;
    let transport = find_text(attributes, attr::NETWORK_TRANSPORT).unwrap_or(Cow::Borrowed(""));
    let (low, high) = if source <= destination { (source, destination) } else { (destination, source) };
    Some(format!("{transport}|{low}|{high}"))
}

/// A flow's identity in one direction (`tcp|10.0.0.1|4711|10.0.0.2|80`, or
/// with `|reply` for a NATed connection's replies): records of the same
/// packets seen on several interfaces, before and after NAT, share it.
pub fn directed_flow_identity(attributes: &[KeyValue]) -> Option<String> {
    let (source, destination, reply) = connection_ends(attributes)?;
    let transport = find_text(attributes, attr::NETWORK_TRANSPORT).unwrap_or(Cow::Borrowed(""));
    Some(format!("{transport}|{source}|{destination}{}", if reply { "|reply" } else { "" }))
}

/// Adds `key` with a string value unless the list already has `key`
/// (what an earlier tier set is kept).
pub fn insert_absent(attributes: &mut Vec<KeyValue>, key: &str, value: &str) {
    insert_absent_value(attributes, key, || Value::StringValue(value.to_owned()));
}

/// Adds `key` with the value `make` builds unless the list already has `key`.
pub fn insert_absent_value(attributes: &mut Vec<KeyValue>, key: &str, make: impl FnOnce() -> Value) {
    if !attributes.iter().any(|kv| kv.key == key) {
        attributes.push(KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue { value: Some(make()) }),
            ..Default::default()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: Value) -> KeyValue {
        KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
    }

    #[test]
    fn scalars_read_as_text_and_numbers() {
        let list = vec![
            kv("a", Value::StringValue("x".into())),
            kv("port", Value::IntValue(443)),
            kv("a", Value::StringValue("y".into())),
            kv("ratio", Value::DoubleValue(0.5)),
            kv("n", Value::StringValue("12".into())),
        ];
        assert_eq!(find_text(&list, "a").as_deref(), Some("y"), "the last one wins");
        assert_eq!(find_text(&list, "port").as_deref(), Some("443"));
        assert_eq!(find(&list, "ratio").and_then(number), Some(0.5));
        assert_eq!(find(&list, "n").and_then(number), Some(12.0));
        assert_eq!(find(&list, "missing"), None);
    }

    #[test]
    fn insert_absent_keeps_what_is_there() {
        let mut list = vec![kv("a", Value::StringValue("x".into()))];
        insert_absent(&mut list, "a", "y");
        insert_absent(&mut list, "b", "z");
        assert_eq!(find_text(&list, "a").as_deref(), Some("x"));
        assert_eq!(find_text(&list, "b").as_deref(), Some("z"));
        assert_eq!(list.len(), 2);
    }

    /// A record of `source` → `destination` (`address:port`), with the
    /// conntrack attributes of a connection masqueraded from 10.1.0.2:40000
    /// to 10.2.0.1:61000 towards 10.2.0.2:80 when `direction` is given.
    fn flow(source: (&str, i64), destination: (&str, i64), direction: Option<&str>) -> Vec<KeyValue> {
        let text = |s: &str| Value::StringValue(s.into());
        let mut list = vec![
            kv(attr::NETWORK_TRANSPORT, text("tcp")),
            kv(attr::SOURCE_ADDRESS, text(source.0)),
            kv(attr::SOURCE_PORT, Value::IntValue(source.1)),
            kv(attr::DESTINATION_ADDRESS, text(destination.0)),
            kv(attr::DESTINATION_PORT, Value::IntValue(destination.1)),
        ];
        if let Some(direction) = direction {
            list.extend([
                kv(attr::NETWORK_CONNTRACK_ORIGINAL_SOURCE_ADDRESS, text("10.1.0.2")),
                kv(attr::NETWORK_CONNTRACK_ORIGINAL_SOURCE_PORT, Value::IntValue(40000)),
                kv(attr::NETWORK_CONNTRACK_ORIGINAL_DESTINATION_ADDRESS, text("10.2.0.2")),
                kv(attr::NETWORK_CONNTRACK_ORIGINAL_DESTINATION_PORT, Value::IntValue(80)),
                kv(attr::NETWORK_CONNTRACK_DIRECTION, text(direction)),
            ]);
        }
        list
    }

    #[test]
    fn a_natted_connection_is_one_flow_on_both_sides() {
        let inside = flow(("10.1.0.2", 40000), ("10.2.0.2", 80), Some("original"));
        let outside = flow(("10.2.0.1", 61000), ("10.2.0.2", 80), Some("original"));
        let reply_outside = flow(("10.2.0.2", 80), ("10.2.0.1", 61000), Some("reply"));
        assert_eq!(flow_identity(&inside), flow_identity(&outside));
        assert_eq!(flow_identity(&inside), flow_identity(&reply_outside));
        assert_eq!(directed_flow_identity(&inside), directed_flow_identity(&outside));
        assert_ne!(directed_flow_identity(&inside), directed_flow_identity(&reply_outside));
        // Without conntrack, the two sides are two flows.
        let plain_outside = flow(("10.2.0.1", 61000), ("10.2.0.2", 80), None);
        assert_ne!(flow_identity(&inside), flow_identity(&plain_outside));
        assert_eq!(directed_flow_identity(&plain_outside).as_deref(), Some("tcp|10.2.0.1|61000|10.2.0.2|80"));
    }
}
