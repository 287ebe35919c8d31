//! Whether a flow answers another one (Hubble's `is_reply`), from what the
//! kernel saw of it. In order, the first rule that knows decides:
//!
//! 1. TCP whose first packet flowtel saw opens or answers a connection:
//!    `SYN` without `ACK` is the request side, `SYN|ACK` the reply side.
//! 2. ICMP echo, timestamp, information and address-mask messages: the
//!    request types are requests, their reply types replies.
//! 3. TCP, UDP and SCTP where exactly one port is in this host's ephemeral
//!    range (`net.ipv4.ip_local_port_range`): packets to the other port
//!    (the service) are requests, packets from it replies.
//!
//! Anything else (both ports ephemeral or both not, ICMP errors, other
//! protocols) is left unknown and counted, never guessed.

use std::ops::RangeInclusive;

use flowtel_ebpf_common::{FlowKey, ipproto, tcp_flags};

/// Linux's default `ip_local_port_range`.
const DEFAULT_EPHEMERAL: RangeInclusive<u16> = 32768..=60999;
/// Where Linux keeps the range.
const LOCAL_PORT_RANGE: &str = "/proc/sys/net/ipv4/ip_local_port_range";

/// ICMPv4 request types and the reply type of each.
const ICMPV4_PAIRS: [(u16, u16); 4] = [(8, 0), (13, 14), (15, 16), (17, 18)];
/// ICMPv6 echo request and reply.
const ICMPV6_PAIRS: [(u16, u16); 1] = [(128, 129)];

/// Decides [`is_reply`](ReplyRule::is_reply) for flows.
#[derive(Clone, Debug)]
pub struct ReplyRule {
    ephemeral: RangeInclusive<u16>,
}

impl Default for ReplyRule {
    fn default() -> Self {
        ReplyRule { ephemeral: DEFAULT_EPHEMERAL }
    }
}

impl ReplyRule {
    /// The rule with this host's ephemeral port range (Linux's default
    /// when it cannot be read).
    pub fn from_system() -> Self {
        std::fs::read_to_string(LOCAL_PORT_RANGE).ok().and_then(|text| Self::parse_range(&text)).unwrap_or_default()
    }

    /// The rule with `ephemeral` as the ephemeral port range.
    pub fn new(ephemeral: RangeInclusive<u16>) -> Self {
        ReplyRule { ephemeral }
    }

    fn parse_range(text: &str) -> Option<Self> {
        let mut ports = text.split_whitespace().map(str::parse::<u16>);
        let (low, high) = (ports.next()?.ok()?, ports.next()?.ok()?);
        (low <= high).then(|| ReplyRule::new(low..=high))
    }

    /// `Some(true)` for a flow that answers another, `Some(false)` for one
    /// that asks, `None` when no rule knows. `first_tcp_flags` are those of
    /// the flow's first packet flowtel saw.
    pub fn is_reply(&self, key: &FlowKey, first_tcp_flags: u8) -> Option<bool> {
        match key.protocol {
            ipproto::TCP => {
                let flags = u16::from(first_tcp_flags);
                match (flags & tcp_flags::SYN != 0, flags & tcp_flags::ACK != 0) {
                    (true, false) => Some(false),
                    (true, true) => Some(true),
                    _ => self.by_ports(key),
                }
            }
            ipproto::UDP | ipproto::SCTP => self.by_ports(key),
            // The flow key holds an ICMP message's type as its source port.
            ipproto::ICMP => icmp(&ICMPV4_PAIRS, key.src_port),
            ipproto::ICMPV6 => icmp(&ICMPV6_PAIRS, key.src_port),
            _ => None,
        }
    }

    fn by_ports(&self, key: &FlowKey) -> Option<bool> {
        let ephemeral = |port: u16| self.ephemeral.contains(&port);
        match (ephemeral(key.src_port), ephemeral(key.dst_port)) {
            (true, false) => Some(false),
            (false, true) => Some(true),
            _ => None,
        }
    }
}

fn icmp(pairs: &[(u16, u16)], kind: u16) -> Option<bool> {
    pairs.iter().find_map(|&(request, reply)| match kind {
        k if k == request => Some(false),
        k if k == reply => Some(true),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use flowtel_ebpf_common::tcp_flags::{ACK, PSH, SYN};

    use super::*;

    fn key(protocol: u8, src_port: u16, dst_port: u16) -> FlowKey {
        FlowKey { protocol, src_port, dst_port, ..FlowKey::default() }
    }

    #[test]
    fn a_tcp_handshake_seen_decides() {
        let rule = ReplyRule::default();
        // Even between two ephemeral ports, where the ports could not tell.
        assert_eq!(rule.is_reply(&key(ipproto::TCP, 40000, 50000), SYN as u8), Some(false));
        assert_eq!(rule.is_reply(&key(ipproto::TCP, 50000, 40000), (SYN | ACK) as u8), Some(true));
    }

    #[test]
    fn without_a_handshake_the_service_port_decides() {
        let rule = ReplyRule::default();
        let mid_connection = (ACK | PSH) as u8;
        assert_eq!(rule.is_reply(&key(ipproto::TCP, 45000, 5001), mid_connection), Some(false));
        assert_eq!(rule.is_reply(&key(ipproto::TCP, 5001, 45000), mid_connection), Some(true));
        assert_eq!(rule.is_reply(&key(ipproto::UDP, 40001, 53), 0), Some(false));
        assert_eq!(rule.is_reply(&key(ipproto::UDP, 53, 40001), 0), Some(true));
        // Both ports ephemeral, or both not: unknown.
        assert_eq!(rule.is_reply(&key(ipproto::UDP, 40001, 40002), 0), None);
        assert_eq!(rule.is_reply(&key(ipproto::UDP, 123, 123), 0), None);
        assert_eq!(rule.is_reply(&key(ipproto::TCP, 80, 5001), mid_connection), None);
    }

    #[test]
    fn icmp_requests_and_replies_by_type() {
        let rule = ReplyRule::default();
        assert_eq!(rule.is_reply(&key(ipproto::ICMP, 8, 0), 0), Some(false));
        assert_eq!(rule.is_reply(&key(ipproto::ICMP, 0, 0), 0), Some(true));
        assert_eq!(rule.is_reply(&key(ipproto::ICMPV6, 128, 0), 0), Some(false));
        assert_eq!(rule.is_reply(&key(ipproto::ICMPV6, 129, 0), 0), Some(true));
        // Destination unreachable answers nothing in particular.
        assert_eq!(rule.is_reply(&key(ipproto::ICMP, 3, 3), 0), None);
    }

    #[test]
    fn the_range_is_read_as_linux_writes_it() {
        let rule = ReplyRule::parse_range("1024\t2048\n").expect("a range");
        assert_eq!(rule.ephemeral, 1024..=2048);
        assert!(ReplyRule::parse_range("2048 1024").is_none());
        assert!(ReplyRule::parse_range("").is_none());
    }
}
