//! The nftables messages the trace needs: the batch that adds (and the one
//! that removes) flowtel's trace table, and reading the kernel's trace
//! events (`NFT_MSG_TRACE`). Numbers from the kernel's
//! `include/uapi/linux/netfilter/nf_tables.h` and `nfnetlink.h`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::ebpf::kernel::netlink::{self, F_ACK, F_APPEND, F_CREATE, F_REQUEST, Message};

/// `NFNL_SUBSYS_NFTABLES`.
const SUBSYSTEM: u16 = 10;
/// `NFNL_MSG_BATCH_BEGIN` and `_END`.
const BATCH_BEGIN: u16 = 0x10;
const BATCH_END: u16 = 0x11;
/// `NFT_MSG_*`.
const NEW_TABLE: u16 = 0;
const DELETE_TABLE: u16 = 2;
const NEW_CHAIN: u16 = 3;
const NEW_RULE: u16 = 6;
const TRACE: u16 = 17;
/// `NFNLGRP_NFTRACE`: the multicast group of trace events.
pub const TRACE_GROUP: u32 = 9;
/// `NFPROTO_INET`.
const FAMILY_INET: u8 = 1;
/// `NFT_TABLE_F_OWNER` (5.12+): the table goes when its socket closes.
const TABLE_OWNER: u32 = 0x2;

/// Attributes: `NFTA_TABLE_*`, `NFTA_CHAIN_*`, `NFTA_HOOK_*`, `NFTA_RULE_*`,
/// `NFTA_LIST_ELEM`, `NFTA_EXPR_*`, `NFTA_IMMEDIATE_*`, `NFTA_DATA_VALUE`, `NFTA_META_*`.
const TABLE_NAME: u16 = 1;
const TABLE_FLAGS: u16 = 2;
const CHAIN_TABLE: u16 = 1;
const CHAIN_NAME: u16 = 3;
const CHAIN_HOOK: u16 = 4;
const CHAIN_TYPE: u16 = 7;
const HOOK_NUMBER: u16 = 1;
const HOOK_PRIORITY: u16 = 2;
const RULE_TABLE: u16 = 1;
const RULE_CHAIN: u16 = 2;
const RULE_EXPRESSIONS: u16 = 4;
const LIST_ELEMENT: u16 = 1;
const EXPRESSION_NAME: u16 = 1;
const EXPRESSION_DATA: u16 = 2;
const IMMEDIATE_DESTINATION: u16 = 1;
const IMMEDIATE_DATA: u16 = 2;
const DATA_VALUE: u16 = 1;
const META_KEY: u16 = 2;
const META_SOURCE: u16 = 3;
/// `NFT_META_NFTRACE`.
const META_NFTRACE: u32 = 12;
/// `NFT_REG_1`.
const REGISTER_1: u32 = 1;

/// `NFTA_TRACE_*`.
const TRACE_TABLE: u16 = 1;
const TRACE_CHAIN: u16 = 2;
const TRACE_RULE_HANDLE: u16 = 3;
const TRACE_TYPE: u16 = 4;
const TRACE_VERDICT: u16 = 5;
const TRACE_NETWORK_HEADER: u16 = 8;
const TRACE_TRANSPORT_HEADER: u16 = 9;
const TRACE_POLICY: u16 = 16;
/// `NFTA_VERDICT_CODE`.
const VERDICT_CODE: u16 = 1;
/// `NFT_TRACETYPE_POLICY` and `_RULE`.
const TRACE_TYPE_POLICY: u32 = 1;
const TRACE_TYPE_RULE: u32 = 3;
/// `NF_DROP`.
const DROP: u32 = 0;

/// The table flowtel adds (family `inet`).
pub const TABLE: &str = "flowtel_trace";
/// Its chains: hook number (`NF_INET_PRE_ROUTING`, `NF_INET_LOCAL_OUT`) and
/// name. Priority -350 sets the trace bit before the raw (-300), conntrack
/// (-200) and filter (0) chains see the packet.
const CHAINS: [(u32, &str); 2] = [(0, "trace_prerouting"), (3, "trace_output")];
const PRIORITY: i32 = -350;

/// The `nfgenmsg` of a message about family `family`.
fn nfgen(family: u8, resource: u16) -> [u8; 4] {
    let resource = resource.to_be_bytes();
    [family, 0, resource[0], resource[1]]
}

fn kind(message: u16) -> u16 {
    (SUBSYSTEM << 8) | message
}

/// A batch of nftables messages, sequence numbers from `first`: begin,
/// `body`'s messages (each acknowledged), end. Returns the bytes and how
/// many acknowledgements to expect.
fn batch(first: u32, body: impl FnOnce(&mut dyn FnMut(u16, u16, &dyn Fn(&mut Message)))) -> (Vec<u8>, u32) {
    let mut out = Vec::new();
    let mut sequence = first;
    Message::new(BATCH_BEGIN, F_REQUEST, sequence, &nfgen(0, SUBSYSTEM)).finish(&mut out);
    let mut acknowledged = 0;
    body(&mut |message, flags, attributes| {
        sequence += 1;
        acknowledged += 1;
        let mut built = Message::new(kind(message), F_REQUEST | F_ACK | flags, sequence, &nfgen(FAMILY_INET, 0));
        attributes(&mut built);
        built.finish(&mut out);
    });
    Message::new(BATCH_END, F_REQUEST, sequence + 1, &nfgen(0, SUBSYSTEM)).finish(&mut out);
    (out, acknowledged)
}

/// The batch that (re)creates the trace table: a leftover one is replaced
/// atomically; `owner` ties the new one to the sending socket.
pub fn add_table(first: u32, owner: bool) -> (Vec<u8>, u32) {
    batch(first, |add| {
        // Creating then deleting removes a leftover table, and fails on none.
        add(NEW_TABLE, F_CREATE, &|m| {
            m.string(TABLE_NAME, TABLE);
        });
        add(DELETE_TABLE, 0, &|m| {
            m.string(TABLE_NAME, TABLE);
        });
        add(NEW_TABLE, F_CREATE, &|m| {
            m.string(TABLE_NAME, TABLE).be32(TABLE_FLAGS, if owner { TABLE_OWNER } else { 0 });
        });
        for (hook, chain) in CHAINS {
            add(NEW_CHAIN, F_CREATE, &|m| {
                m.string(CHAIN_TABLE, TABLE).string(CHAIN_NAME, chain).string(CHAIN_TYPE, "filter");
                m.begin(CHAIN_HOOK).be32(HOOK_NUMBER, hook).be32(HOOK_PRIORITY, PRIORITY as u32).end();
            });
            // `meta nftrace set 1`: 1 into register 1, then the meta set.
            add(NEW_RULE, F_CREATE | F_APPEND, &|m| {
                m.string(RULE_TABLE, TABLE).string(RULE_CHAIN, chain).begin(RULE_EXPRESSIONS);
                m.begin(LIST_ELEMENT).string(EXPRESSION_NAME, "immediate").begin(EXPRESSION_DATA);
                m.be32(IMMEDIATE_DESTINATION, REGISTER_1).begin(IMMEDIATE_DATA).attribute(DATA_VALUE, &[1]).end();
                m.end().end();
                m.begin(LIST_ELEMENT).string(EXPRESSION_NAME, "meta").begin(EXPRESSION_DATA);
                m.be32(META_KEY, META_NFTRACE).be32(META_SOURCE, REGISTER_1);
                m.end().end();
                m.end();
            });
        }
    })
}

/// The batch that removes the trace table.
pub fn delete_table(first: u32) -> (Vec<u8>, u32) {
    batch(first, |add| {
        add(DELETE_TABLE, 0, &|m| {
            m.string(TABLE_NAME, TABLE);
        });
    })
}

/// A packet's identity as the drop program and the trace both read it:
/// protocol, addresses and ports (ICMP: type and code; 0 without).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PacketKey {
    /// IP protocol.
    pub protocol: u8,
    /// Source address.
    pub source: IpAddr,
    /// Destination address.
    pub destination: IpAddr,
    /// Source port, or ICMP type.
    pub source_port: u16,
    /// Destination port, or ICMP code.
    pub destination_port: u16,
}

impl PacketKey {
    /// From an IPv4 or IPv6 header and what follows it.
    pub fn from_headers(network: &[u8], transport: &[u8]) -> Option<PacketKey> {
        let (protocol, source, destination) = match network.first()? >> 4 {
            4 => (
                *network.get(9)?,
                IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(network.get(12..16)?).ok()?)),
                IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(network.get(16..20)?).ok()?)),
            ),
            6 => (
                *network.get(6)?,
                IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(network.get(8..24)?).ok()?)),
                IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(network.get(24..40)?).ok()?)),
            ),
            _ => return None,
        };
        use flowtel_ebpf_common::ipproto::{ICMP, ICMPV6, SCTP, TCP, UDP};
        let (source_port, destination_port) = match protocol {
            TCP | UDP | SCTP => match transport.get(..4) {
                Some(p) => (u16::from_be_bytes([p[0], p[1]]), u16::from_be_bytes([p[2], p[3]])),
                None => (0, 0),
            },
            ICMP | ICMPV6 => match transport.get(..2) {
                Some(p) => (u16::from(p[0]), u16::from(p[1])),
                None => (0, 0),
            },
            _ => (0, 0),
        };
        Some(PacketKey { protocol, source, destination, source_port, destination_port })
    }
}

/// The nftables rule, or chain policy, that dropped a packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropVerdict {
    /// The table's family (`inet`, `ip`, `ip6`, `bridge`, `netdev`, `arp`).
    pub family: &'static str,
    /// The table.
    pub table: String,
    /// The chain.
    pub chain: String,
    /// The rule's handle; `None` when the chain's policy dropped it.
    pub handle: Option<u64>,
}

/// The family name of an `nfgenmsg` family.
fn family_name(family: u8) -> &'static str {
    match family {
        1 => "inet",
        2 => "ip",
        3 => "arp",
        5 => "netdev",
        7 => "bridge",
        10 => "ip6",
        _ => "unknown",
    }
}

/// A trace event's drop: the packet and what dropped it; `None` for every
/// other message (other verdicts, other types, malformed ones).
pub fn trace_drop(message: &netlink::Received<'_>) -> Option<(PacketKey, DropVerdict)> {
    if message.kind != kind(TRACE) {
        return None;
    }
    let family = *message.payload.first()?;
    let (mut table, mut chain, mut handle, mut trace_type) = (None, None, None, None);
    let (mut verdict, mut policy, mut network, mut transport) = (None, None, None, &[][..]);
    for (attribute, value) in netlink::attributes(message.payload.get(4..)?) {
        match attribute {
            TRACE_TABLE => table = Some(netlink::string(value)),
            TRACE_CHAIN => chain = Some(netlink::string(value)),
            TRACE_RULE_HANDLE => handle = netlink::be64(value),
            TRACE_TYPE => trace_type = netlink::be32(value),
            TRACE_VERDICT => {
                verdict =
                    netlink::attributes(value).find(|(a, _)| *a == VERDICT_CODE).and_then(|(_, v)| netlink::be32(v))
            }
            TRACE_POLICY => policy = netlink::be32(value),
            TRACE_NETWORK_HEADER => network = Some(value),
            TRACE_TRANSPORT_HEADER => transport = value,
            _ => {}
        }
    }
    let handle = match trace_type? {
        TRACE_TYPE_RULE if verdict == Some(DROP) => Some(handle?),
        TRACE_TYPE_POLICY if policy == Some(DROP) => None,
        _ => return None,
    };
    let key = PacketKey::from_headers(network?, transport)?;
    Some((key, DropVerdict { family: family_name(family), table: table?, chain: chain?, handle }))
}
