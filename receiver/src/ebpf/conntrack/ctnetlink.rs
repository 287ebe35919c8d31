//! Conntrack messages (ctnetlink): a connection's original and reply
//! tuples from its events and from a dump of the table. Numbers from the
//! kernel's `include/uapi/linux/netfilter/nfnetlink_conntrack.h`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::ebpf::kernel::netlink::{self, F_REQUEST, Message, Received};

/// `NFNL_SUBSYS_CTNETLINK`.
const SUBSYSTEM: u16 = 1;
/// `IPCTNL_MSG_CT_NEW`, `_GET`, `_DELETE`.
const NEW: u16 = 0;
const GET: u16 = 1;
const DELETE: u16 = 2;
/// `NFNLGRP_CONNTRACK_NEW`, `_UPDATE`, `_DESTROY` as a `bind` group mask.
pub const GROUPS: u32 = 0b111;
/// `NLM_F_DUMP`.
const F_DUMP: u16 = 0x300;
/// `CTA_TUPLE_ORIG`, `CTA_TUPLE_REPLY`, `CTA_STATUS`.
const TUPLE_ORIGINAL: u16 = 1;
const TUPLE_REPLY: u16 = 2;
const STATUS: u16 = 3;
/// `CTA_TUPLE_IP`, `CTA_TUPLE_PROTO`.
const TUPLE_IP: u16 = 1;
const TUPLE_PROTO: u16 = 2;
/// `CTA_IP_V4_SRC`, `_V4_DST`, `_V6_SRC`, `_V6_DST`.
const IP_V4_SOURCE: u16 = 1;
const IP_V4_DESTINATION: u16 = 2;
const IP_V6_SOURCE: u16 = 3;
const IP_V6_DESTINATION: u16 = 4;
/// `CTA_PROTO_NUM`, `_SRC_PORT`, `_DST_PORT`.
const PROTO_NUMBER: u16 = 1;
const PROTO_SOURCE_PORT: u16 = 2;
const PROTO_DESTINATION_PORT: u16 = 3;
/// `IPS_SRC_NAT`, `IPS_DST_NAT`.
const SOURCE_NAT: u32 = 1 << 4;
const DESTINATION_NAT: u32 = 1 << 5;

/// One direction of a connection: protocol, addresses and ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tuple {
    /// IP protocol.
    pub protocol: u8,
    /// Source address and port.
    pub source: (IpAddr, u16),
    /// Destination address and port.
    pub destination: (IpAddr, u16),
}

impl Tuple {
    /// The other direction.
    pub fn reversed(&self) -> Tuple {
        Tuple { protocol: self.protocol, source: self.destination, destination: self.source }
    }
}

/// What an event says of a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Created or changed: its tuples and its NAT.
    Update {
        /// As the first packet was sent.
        original: Tuple,
        /// As the replies are sent (after NAT).
        reply: Tuple,
        /// `snat`, `dnat`, `snat+dnat`, or `None` without NAT.
        nat: Option<&'static str>,
    },
    /// Gone from the table.
    Destroy {
        /// Its original tuple.
        original: Tuple,
    },
}

fn tuple(bytes: &[u8]) -> Option<Tuple> {
    let (mut source, mut destination, mut protocol, mut ports) = (None, None, None, (0, 0));
    for (kind, value) in netlink::attributes(bytes) {
        match kind {
            TUPLE_IP => {
                for (kind, value) in netlink::attributes(value) {
                    let address = match kind {
                        IP_V4_SOURCE | IP_V4_DESTINATION => {
                            IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(value).ok()?))
                        }
                        IP_V6_SOURCE | IP_V6_DESTINATION => {
                            IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(value).ok()?))
                        }
                        _ => continue,
                    };
                    if matches!(kind, IP_V4_SOURCE | IP_V6_SOURCE) {
                        source = Some(address);
                    } else {
                        destination = Some(address);
                    }
                }
            }
            TUPLE_PROTO => {
                for (kind, value) in netlink::attributes(value) {
                    let port = || Some(u16::from_be_bytes(value.get(..2)?.try_into().ok()?));
                    match kind {
                        PROTO_NUMBER => protocol = value.first().copied(),
                        PROTO_SOURCE_PORT => ports.0 = port()?,
                        PROTO_DESTINATION_PORT => ports.1 = port()?,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some(Tuple { protocol: protocol?, source: (source?, ports.0), destination: (destination?, ports.1) })
}

/// The event in a ctnetlink message (events and dump answers alike);
/// `None` for other messages and malformed ones.
pub fn event(message: &Received<'_>) -> Option<Event> {
    let kind = message.kind;
    if kind >> 8 != SUBSYSTEM || !matches!(kind & 0xff, NEW | DELETE) {
        return None;
    }
    let (mut original, mut reply, mut status) = (None, None, 0);
    for (attribute, value) in netlink::attributes(message.payload.get(4..)?) {
        match attribute {
            TUPLE_ORIGINAL => original = tuple(value),
            TUPLE_REPLY => reply = tuple(value),
            STATUS => status = netlink::be32(value).unwrap_or(0),
            _ => {}
        }
    }
    let original = original?;
    if kind & 0xff == DELETE {
        return Some(Event::Destroy { original });
    }
    let nat = match (status & SOURCE_NAT != 0, status & DESTINATION_NAT != 0) {
        (true, true) => Some("snat+dnat"),
        (true, false) => Some("snat"),
        (false, true) => Some("dnat"),
        (false, false) => None,
    };
    Some(Event::Update { original, reply: reply?, nat })
}

/// A request for every connection of `family` (`AF_INET`, `AF_INET6`).
pub fn dump_request(family: u8, sequence: u32) -> Vec<u8> {
    let mut out = Vec::new();
    Message::new((SUBSYSTEM << 8) | GET, F_REQUEST | F_DUMP, sequence, &[family, 0, 0, 0]).finish(&mut out);
    out
}
