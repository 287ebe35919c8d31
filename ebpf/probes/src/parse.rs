//! Packet header parsing for the TC programs: Ethernet with up to two VLAN
//! tags, IPv4 (with options) and IPv6 (with extension headers), then the
//! ports of TCP, UDP and SCTP or the type and code of ICMP and ICMPv6.
//!
//! Headers are read in place from the skb's linear area (direct packet
//! access, every read checked against its end). Where the headers go on
//! past it (a non-linear skb), the packet is parsed again with
//! `bpf_skb_load_bytes`, which reads any byte of it: the packet itself is
//! never changed (`bpf_skb_pull_data` would copy the headers of every
//! cloned skb, which is every TCP segment sent). A truncated packet is an
//! error, never a misread. Non-first fragments carry no L4 header: their
//! ports are left at zero.

use core::mem::size_of;

use aya_ebpf::{macros::map, maps::PerCpuArray, programs::TcContext};
use flowtel_ebpf_common::{Counter, FlowKey, IP_V4, IP_V6, ipproto};

use crate::flows::count;

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

/// Where the parser reads header bytes from.
trait Headers {
    /// A `T` (plain bytes, at least 2 of them) at `offset` from the frame's
    /// start. Each header is read whole, with one check of its bounds.
    fn read<T: Copy>(&self, offset: usize) -> Result<T, Skip>;
}

/// The skb's linear area, read in place.
struct Linear {
    data: usize,
    end: usize,
}

impl Linear {
    #[inline(always)]
    fn of(ctx: &TcContext) -> Self {
        Linear { data: ctx.data(), end: ctx.data_end() }
    }
}

impl Headers for Linear {
    #[inline(always)]
    fn read<T: Copy>(&self, offset: usize) -> Result<T, Skip> {
        let start = self.data + offset;
        if start + size_of::<T>() > self.end {
            return Err(Skip::Malformed);
        }
        // SAFETY: `start .. start + size_of::<T>()` is inside the linear
        // area (checked just above, as the verifier requires).
        Ok(unsafe { (start as *const T).read_unaligned() })
    }
}

/// Any byte of the packet, copied out by `bpf_skb_load_bytes`.
struct Copied<'a>(&'a TcContext);

impl Headers for Copied<'_> {
    #[inline(always)]
    fn read<T: Copy>(&self, offset: usize) -> Result<T, Skip> {
        self.0.load::<T>(offset).map_err(|_| Skip::Malformed)
    }
}

/// Parses the packet into `packet`: in place, or where its headers go on
/// past the linear area, from copies.
#[inline(always)]
pub fn parse(ctx: &TcContext, packet: &mut Packet) -> Result<(), Skip> {
    let linear = Linear::of(ctx);
    let linear_length = linear.end - linear.data;
    match parse_from(&linear, packet) {
        Err(Skip::Malformed) if linear_length < ctx.len() as usize => {
            count(Counter::HeadersCopied);
            parse_from(&Copied(ctx), packet)
        }
        parsed => parsed,
    }
}

/// A `T` (plain bytes) at `offset` of the frame: in place where it lies in
/// the linear area, else copied out; `None` past the packet's end.
#[inline(always)]
pub fn read_packet<T: Copy>(ctx: &TcContext, offset: usize) -> Option<T> {
    Linear::of(ctx).read::<T>(offset).or_else(|_| Copied(ctx).read::<T>(offset)).ok()
}

#[inline(always)]
fn parse_from<H: Headers>(headers: &H, packet: &mut Packet) -> Result<(), Skip> {
    let mut offset = ETH_HLEN;
    let mut ether_type = u16::from_be_bytes(headers.read::<[u8; 2]>(12)?);
    for _ in 0..2 {
        if ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD {
            let [_, _, high, low] = headers.read::<[u8; 4]>(offset)?;
            ether_type = u16::from_be_bytes([high, low]);
            offset += 4;
        }
    }
    packet.key = FlowKey::default();
    packet.tcp_flags = 0;
    packet.tcp_payload = 0;
    let key = &mut packet.key;
    let (protocol, l4, first_fragment) = match ether_type {
        ETH_P_IP => {
            let ip = headers.read::<[u8; 20]>(offset)?;
            let header_len = usize::from(ip[0] & 0x0f) * 4;
            if ip[0] >> 4 != 4 || header_len < 20 {
                return Err(Skip::Malformed);
            }
            let fragment = u16::from_be_bytes([ip[6], ip[7]]);
            key.ip_version = IP_V4;
            key.src_addr[..4].copy_from_slice(&ip[12..16]);
            key.dst_addr[..4].copy_from_slice(&ip[16..20]);
            (ip[9], offset + header_len, fragment & 0x1fff == 0)
        }
        ETH_P_IPV6 => {
            let ip = headers.read::<[u8; 40]>(offset)?;
            if ip[0] >> 4 != 6 {
                return Err(Skip::Malformed);
            }
            key.ip_version = IP_V6;
            key.src_addr.copy_from_slice(&ip[8..24]);
            key.dst_addr.copy_from_slice(&ip[24..40]);
            let mut next = ip[6];
            let mut l4 = offset + 40;
            let mut first_fragment = true;
            for _ in 0..MAX_IPV6_EXTENSIONS {
                // Every extension header is at least 8 bytes: next header, length, then two more read here.
                let length = match next {
                    // Hop-by-hop, routing, destination options: length in 8-byte units, not counting the first 8.
                    0 | 43 | 60 => {
                        let [following, units, _, _] = headers.read::<[u8; 4]>(l4)?;
                        next = following;
                        (usize::from(units) + 1) * 8
                    }
                    // Fragment header: fixed 8 bytes; offset in the top 13 bits.
                    44 => {
                        let [following, _, high, low] = headers.read::<[u8; 4]>(l4)?;
                        next = following;
                        first_fragment = u16::from_be_bytes([high, low]) >> 3 == 0;
                        8
                    }
                    // Authentication header: length in 4-byte units, not counting the first 8.
                    51 => {
                        let [following, units, _, _] = headers.read::<[u8; 4]>(l4)?;
                        next = following;
                        (usize::from(units) + 2) * 4
                    }
                    _ => break,
                };
                l4 += length;
            }
            (next, l4, first_fragment)
        }
        _ => return Err(Skip::NotIp),
    };
    key.protocol = protocol;
    if first_fragment {
        match protocol {
            ipproto::TCP => {
                let tcp = headers.read::<[u8; 14]>(l4)?;
                key.src_port = u16::from_be_bytes([tcp[0], tcp[1]]);
                key.dst_port = u16::from_be_bytes([tcp[2], tcp[3]]);
                packet.tcp_payload = (l4 + usize::from(tcp[12] >> 4) * 4) as u32;
                packet.tcp_flags = tcp[13];
            }
            ipproto::UDP | ipproto::SCTP => {
                let [src_high, src_low, dst_high, dst_low] = headers.read::<[u8; 4]>(l4)?;
                key.src_port = u16::from_be_bytes([src_high, src_low]);
                key.dst_port = u16::from_be_bytes([dst_high, dst_low]);
            }
            ipproto::ICMP | ipproto::ICMPV6 => {
                let [kind, code] = headers.read::<[u8; 2]>(l4)?;
                key.src_port = u16::from(kind);
                key.dst_port = u16::from(code);
            }
            _ => {}
        }
    }
    Ok(())
}
