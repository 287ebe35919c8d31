//! Conntrack and NAT (`conntrack.enabled`): flowtel follows the kernel's
//! connection tracking in its network namespace (ctnetlink events, and a
//! dump of the table at startup) and keeps the connections that are NATed.
//! A flow record whose 5-tuple is one of such a connection's four views
//! (each direction, before and after NAT) names the connection's original
//! and reply tuples and its direction, so the copies of one connection seen
//! before and after NAT are one flow to `log_dedup`, the sampler and the
//! load balancer.

mod ctnetlink;

use std::{
    collections::HashMap,
    io,
    net::IpAddr,
    os::fd::OwnedFd,
    time::{Duration, Instant},
};

use flowtel_core::{schema::attr, self_telemetry::Counter};
use opentelemetry_proto::tonic::common::v1::KeyValue;

use self::ctnetlink::Event;
pub use self::ctnetlink::Tuple;
use crate::ebpf::{
    kernel::netlink::{self, Listener, MSG_ERROR, Received},
    otlp::kv,
};

/// `NLMSG_DONE`: the end of a dump.
const MSG_DONE: u16 = 3;
/// How long a dump may take before startup goes on without the rest.
const DUMP_TIMEOUT: Duration = Duration::from_secs(5);
/// How often destroyed connections past their retention are let go.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Which way a packet goes on its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// As the first packet went.
    Original,
    /// The answers.
    Reply,
}

/// A NATed connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    /// As the first packet was sent.
    pub original: Tuple,
    /// As the replies are sent.
    pub reply: Tuple,
    /// `snat`, `dnat` or `snat+dnat`.
    pub nat: &'static str,
    destroyed: Option<Instant>,
}

impl Connection {
    /// The four tuples its packets can be seen with, and their direction.
    fn views(&self) -> [(Tuple, Direction); 4] {
        [
            (self.original, Direction::Original),
            (self.reply.reversed(), Direction::Original),
            (self.reply, Direction::Reply),
            (self.original.reversed(), Direction::Reply),
        ]
    }
}

/// The NATed connections, by original tuple, and every view of them.
struct Connections {
    by_original: HashMap<Tuple, Connection>,
    views: HashMap<Tuple, (Tuple, Direction)>,
    max: usize,
    /// How long a destroyed connection still names its flows (their last
    /// reports come at the next flush).
    retention: Duration,
    last_sweep: Instant,
    /// Connections not kept because `max` were.
    refused: Counter,
}

impl Connections {
    fn remove(&mut self, original: &Tuple) {
        if let Some(connection) = self.by_original.remove(original) {
            for (view, _) in connection.views() {
                if self.views.get(&view).is_some_and(|(owner, _)| owner == original) {
                    self.views.remove(&view);
                }
            }
        }
    }

    fn sweep(&mut self, now: Instant) {
        self.last_sweep = now;
        let retention = self.retention;
        let expired: Vec<Tuple> = self
            .by_original
            .values()
            .filter(|c| c.destroyed.is_some_and(|at| now.duration_since(at) >= retention))
            .map(|c| c.original)
            .collect();
        for original in expired {
            self.remove(&original);
        }
    }

    fn apply(&mut self, event: Event) {
        let now = Instant::now();
        if now.duration_since(self.last_sweep) >= SWEEP_INTERVAL {
            self.sweep(now);
        }
        match event {
            Event::Update { nat: None, .. } => {}
            Event::Update { original, reply, nat: Some(nat) } => {
                if !self.by_original.contains_key(&original) && self.by_original.len() >= self.max {
                    self.sweep(now);
                    if self.by_original.len() >= self.max {
                        self.refused.inc();
                        return;
                    }
                }
                self.remove(&original);
                let connection = Connection { original, reply, nat, destroyed: None };
                for (view, direction) in connection.views() {
                    self.views.insert(view, (original, direction));
                }
                self.by_original.insert(original, connection);
            }
            Event::Destroy { original } => {
                if let Some(connection) = self.by_original.get_mut(&original) {
                    connection.destroyed.get_or_insert(now);
                }
            }
        }
    }

    fn find(&self, seen: &Tuple) -> Option<(&Connection, Direction)> {
        let (original, direction) = self.views.get(seen)?;
        Some((self.by_original.get(original)?, *direction))
    }
}

fn on_message(connections: &mut Connections, message: &Received<'_>) {
    if let Some(event) = ctnetlink::event(message) {
        connections.apply(event);
    }
}

/// The NATed connections of flowtel's network namespace, kept current.
pub struct Conntrack {
    listener: Listener<Connections>,
}

/// flowtel's own counters of the conntrack listener.
pub struct ConntrackCounters {
    /// Events the socket could not hold.
    pub lost: Counter,
    /// NATed connections not kept because `max_connections` were.
    pub refused: Counter,
}

impl Conntrack {
    /// Subscribes to conntrack events, then reads the connections that
    /// exist already; keeps at most `max` NATed connections, destroyed ones
    /// for `retention`.
    pub fn start(max: usize, retention: Duration, counters: ConntrackCounters) -> io::Result<Conntrack> {
        let socket = netlink::socket(libc::NETLINK_NETFILTER, ctnetlink::GROUPS)?;
        // Best effort: the default buffer still works, overruns are counted.
        let _ = netlink::set_option(&socket, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 4 << 20);
        let mut connections = Connections {
            by_original: HashMap::new(),
            views: HashMap::new(),
            max,
            retention,
            last_sweep: Instant::now(),
            refused: counters.refused,
        };
        for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
            dump(family, &mut connections)?;
        }
        let listener = Listener::spawn("conntrack", socket, connections, on_message, counters.lost)?;
        Ok(Conntrack { listener })
    }

    /// The NAT attributes of a flow seen as `seen`, if its connection is
    /// NATed. A connection's event comes at its first packet, long before
    /// its flow's first report, so what the thread read is enough.
    pub fn attributes(&self, seen: &Tuple) -> Vec<KeyValue> {
        self.listener.peek(|connections| {
            let Some((connection, direction)) = connections.find(seen) else { return Vec::new() };
            nat_attributes(connection, direction)
        })
    }
}

/// The attributes naming a NATed connection on one of its flows.
fn nat_attributes(connection: &Connection, direction: Direction) -> Vec<KeyValue> {
    let end = |(address_key, port_key): (&str, &str), (address, port): (IpAddr, u16)| {
        [kv(address_key, address.to_string()), kv(port_key, i64::from(port))]
    };
    let mut attributes = Vec::with_capacity(10);
    let (original, reply) = (&connection.original, &connection.reply);
    use attr::*;
    attributes.extend(end(
        (NETWORK_CONNTRACK_ORIGINAL_SOURCE_ADDRESS, NETWORK_CONNTRACK_ORIGINAL_SOURCE_PORT),
        original.source,
    ));
    attributes.extend(end(
        (NETWORK_CONNTRACK_ORIGINAL_DESTINATION_ADDRESS, NETWORK_CONNTRACK_ORIGINAL_DESTINATION_PORT),
        original.destination,
    ));
    attributes.extend(end((NETWORK_CONNTRACK_REPLY_SOURCE_ADDRESS, NETWORK_CONNTRACK_REPLY_SOURCE_PORT), reply.source));
    attributes.extend(end(
        (NETWORK_CONNTRACK_REPLY_DESTINATION_ADDRESS, NETWORK_CONNTRACK_REPLY_DESTINATION_PORT),
        reply.destination,
    ));
    let direction = match direction {
        Direction::Original => "original",
        Direction::Reply => "reply",
    };
    attributes.push(kv(attr::NETWORK_CONNTRACK_DIRECTION, direction));
    attributes.push(kv(attr::NETWORK_CONNTRACK_NAT, connection.nat));
    attributes
}

/// Reads every connection of `family` into `connections`.
fn dump(family: u8, connections: &mut Connections) -> io::Result<()> {
    let socket: OwnedFd = netlink::socket(libc::NETLINK_NETFILTER, 0)?;
    netlink::exchange(&socket, &ctnetlink::dump_request(family, 1), DUMP_TIMEOUT, false, |message| {
        match message.kind {
            MSG_DONE => return true,
            MSG_ERROR => {}
            _ => on_message(connections, message),
        }
        false
    })
}

#[cfg(test)]
mod tests;
