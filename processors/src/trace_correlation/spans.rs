//! Which TCP connection a span was on, from the semantic conventions'
//! address attributes (current and older names).

use std::net::{IpAddr, SocketAddr};

use flowtel_core::{
    attributes::{find, find_text, number},
    schema::attr,
};
use opentelemetry_proto::tonic::{
    common::v1::KeyValue,
    trace::v1::{Span, span::SpanKind},
};

use super::index::{Connection, SpanContext};

/// Where a span sits on its connection.
#[derive(Debug, PartialEq)]
pub enum Side {
    /// A server span: it names its peer (the client) and its own port.
    Server(Connection),
    /// A client span: its connection when it names its own end, else
    /// `None` (found later through the server span it called).
    Client(Option<Connection>),
}

/// The peer's address, most specific name first (`client.address` may be
/// a forwarded-for address rather than the socket's peer).
const PEER_ADDRESS: [&str; 4] =
    [attr::NETWORK_PEER_ADDRESS, attr::NET_SOCK_PEER_ADDR, attr::NET_PEER_IP, attr::CLIENT_ADDRESS];
const PEER_PORT: [&str; 4] =
    [attr::NETWORK_PEER_PORT, attr::NET_SOCK_PEER_PORT, attr::NET_PEER_PORT, attr::CLIENT_PORT];
const LOCAL_ADDRESS: [&str; 3] = [attr::NETWORK_LOCAL_ADDRESS, attr::NET_SOCK_HOST_ADDR, attr::NET_HOST_IP];
const LOCAL_PORT: [&str; 3] = [attr::NETWORK_LOCAL_PORT, attr::NET_SOCK_HOST_PORT, attr::NET_HOST_PORT];
/// A server span's own port.
const SERVER_OWN_PORT: [&str; 4] =
    [attr::SERVER_PORT, attr::NETWORK_LOCAL_PORT, attr::NET_SOCK_HOST_PORT, attr::NET_HOST_PORT];
/// The port a client span called.
const CALLED_PORT: [&str; 4] =
    [attr::SERVER_PORT, attr::NETWORK_PEER_PORT, attr::NET_SOCK_PEER_PORT, attr::NET_PEER_PORT];

fn first_ip(attributes: &[KeyValue], keys: &[&str]) -> Option<IpAddr> {
    // An IPv4 peer of a dual-stack socket shows as `::ffff:a.b.c.d`; the wire has a.b.c.d.
    // gRPC writes an IPv6 peer in brackets (`[::1]`).
    keys.iter()
        .find_map(|key| {
            find_text(attributes, key)?.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().ok()
        })
        .map(|ip| ip.to_canonical())
}

fn first_port(attributes: &[KeyValue], keys: &[&str]) -> Option<u16> {
    // Some instrumentations send ports as strings; `number` reads both.
    keys.iter().find_map(|key| u16::try_from(number(find(attributes, key)?)? as i64).ok().filter(|port| *port != 0))
}

/// The span's side of its connection, if it names one.
pub fn side(span: &Span) -> Option<Side> {
    let attributes = &span.attributes;
    if span.kind == SpanKind::Server as i32 {
        let client = SocketAddr::new(first_ip(attributes, &PEER_ADDRESS)?, first_port(attributes, &PEER_PORT)?);
        // Without its own port (some gRPC servers), the client's end alone identifies the connection.
        let server_port = first_port(attributes, &SERVER_OWN_PORT).unwrap_or(0);
        return Some(Side::Server(Connection { client, server_port }));
    }
    if span.kind == SpanKind::Client as i32 {
        let own = first_ip(attributes, &LOCAL_ADDRESS).zip(first_port(attributes, &LOCAL_PORT));
        let connection = own.map(|(ip, port)| Connection {
            client: SocketAddr::new(ip, port),
            server_port: first_port(attributes, &CALLED_PORT).unwrap_or(0),
        });
        return Some(Side::Client(connection));
    }
    None
}

/// The context a span gives kernel records of its connection: a server
/// span's caller (what the request's `traceparent` carried) where it has
/// one, else the span itself.
pub fn context(span: &Span, side: &Side) -> Option<SpanContext> {
    let trace_id: [u8; 16] = span.trace_id.as_slice().try_into().ok()?;
    let own: [u8; 8] = span.span_id.as_slice().try_into().ok()?;
    let span_id = match side {
        Side::Server(_) => span.parent_span_id.as_slice().try_into().unwrap_or(own),
        Side::Client(_) => own,
    };
    // The low 8 bits of a span's flags are its W3C trace flags; an SDK that
    // does not set them exported it, so it was sampled.
    let flags = match span.flags & 0xff {
        0 => 1,
        flags => flags,
    };
    Some(SpanContext { trace_id, span_id, flags, start: span.start_time_unix_nano, end: span.end_time_unix_nano })
}
