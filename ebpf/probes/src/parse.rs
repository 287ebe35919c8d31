//! Packet header parsing for the TC programs: Ethernet with up to two VLAN
//! tags, IPv4 (with options) and IPv6 (with extension headers), then the
//! ports of TCP, UDP and SCTP or the type and code of ICMP and ICMPv6.
//!
//! Every read goes through `bpf_skb_load_bytes`, so a truncated packet is
//! an error, never a misread. Non-first fragments carry no L4 header: their
//! ports are left at zero.

use aya_ebpf::{macros::map, maps::PerCpuArray, programs::TcContext};
use flowtel_ebpf_common::{FlowKey, IP_V4, IP_V6, ipproto};

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;
/// IPv6 extension headers walked before giving up.
const MAX_IPV6_EXTENSIONS: usize = 6;

/// Why a packet gave no flow key.
pub enum Skip {
    /// Not IP (ARP, LLDP, …).
    NotIp,
    /// A header could not be read or is malformed.
    Malformed,
}

/// A parsed packet: its flow key, TCP flags and, for TCP, where its payload
/// starts (0: not TCP, or unknown). The parser fills in all but the key's
/// interface, direction and trace context.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Packet {
    pub key: FlowKey,
    pub tcp_payload: u32,
    pub tcp_flags: u8,
    pub pad: [u8; 3],
}

/// The packet being handled on this CPU (a flow key with its trace context
/// is too big to copy around on the 512-byte stack). The header reader a
/// flow program tail-calls finds it here too.
#[map(name = "PACKET")]
pub static PACKET: PerCpuArray<Packet> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn load_u8(ctx: &TcContext, offset: usize) -> Result<u8, Skip> {
    ctx.load::<u8>(offset).map_err(|_| Skip::Malformed)
}

#[inline(always)]
fn load_be16(ctx: &TcContext, offset: usize) -> Result<u16, Skip> {
    ctx.load::<u16>(offset).map(u16::from_be).map_err(|_| Skip::Malformed)
}

/// Parses the packet into `packet`.
#[inline(always)]
pub fn parse(ctx: &TcContext, packet: &mut Packet) -> Result<(), Skip> {
    let mut offset = ETH_HLEN;
    let mut ether_type = load_be16(ctx, 12)?;
    for _ in 0..2 {
        if ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD {
            ether_type = load_be16(ctx, offset + 2)?;
            offset += 4;
        }
    }
    packet.key = FlowKey::default();
    packet.tcp_flags = 0;
    packet.tcp_payload = 0;
    let key = &mut packet.key;
    let (protocol, l4, first_fragment) = match ether_type {
        ETH_P_IP => {
            let version_ihl = load_u8(ctx, offset)?;
            let header_len = usize::from(version_ihl & 0x0f) * 4;
            if version_ihl >> 4 != 4 || header_len < 20 {
                return Err(Skip::Malformed);
            }
            let fragment = load_be16(ctx, offset + 6)?;
            key.ip_version = IP_V4;
            key.src_addr[..4].copy_from_slice(&ctx.load::<[u8; 4]>(offset + 12).map_err(|_| Skip::Malformed)?);
            key.dst_addr[..4].copy_from_slice(&ctx.load::<[u8; 4]>(offset + 16).map_err(|_| Skip::Malformed)?);
            (load_u8(ctx, offset + 9)?, offset + header_len, fragment & 0x1fff == 0)
        }
        ETH_P_IPV6 => {
            if load_u8(ctx, offset)? >> 4 != 6 {
                return Err(Skip::Malformed);
            }
            key.ip_version = IP_V6;
            key.src_addr = ctx.load::<[u8; 16]>(offset + 8).map_err(|_| Skip::Malformed)?;
            key.dst_addr = ctx.load::<[u8; 16]>(offset + 24).map_err(|_| Skip::Malformed)?;
            let mut next = load_u8(ctx, offset + 6)?;
            let mut l4 = offset + 40;
            let mut first_fragment = true;
            for _ in 0..MAX_IPV6_EXTENSIONS {
                match next {
                    // Hop-by-hop, routing, destination options: length in 8-byte units, not counting the first 8.
                    0 | 43 | 60 => {
                        let length = (usize::from(load_u8(ctx, l4 + 1)?) + 1) * 8;
                        next = load_u8(ctx, l4)?;
                        l4 += length;
                    }
                    // Fragment header: fixed 8 bytes; offset in the top 13 bits.
                    44 => {
                        first_fragment = load_be16(ctx, l4 + 2)? >> 3 == 0;
                        next = load_u8(ctx, l4)?;
                        l4 += 8;
                    }
                    // Authentication header: length in 4-byte units, not counting the first 8.
                    51 => {
                        let length = (usize::from(load_u8(ctx, l4 + 1)?) + 2) * 4;
                        next = load_u8(ctx, l4)?;
                        l4 += length;
                    }
                    _ => break,
                }
            }
            (next, l4, first_fragment)
        }
        _ => return Err(Skip::NotIp),
    };
    key.protocol = protocol;
    if first_fragment {
        match protocol {
            ipproto::TCP | ipproto::UDP | ipproto::SCTP => {
                key.src_port = load_be16(ctx, l4)?;
                key.dst_port = load_be16(ctx, l4 + 2)?;
                if protocol == ipproto::TCP {
                    packet.tcp_payload = (l4 + usize::from(load_u8(ctx, l4 + 12)? >> 4) * 4) as u32;
                    packet.tcp_flags = load_u8(ctx, l4 + 13)?;
                }
            }
            ipproto::ICMP | ipproto::ICMPV6 => {
                key.src_port = u16::from(load_u8(ctx, l4)?);
                key.dst_port = u16::from(load_u8(ctx, l4 + 1)?);
            }
            _ => {}
        }
    }
    Ok(())
}
