//! The pcap-ng blocks the `pcap` exporter writes (little-endian): a section
//! header, an interface description per interface, an enhanced packet per
//! packet. Block and option layouts follow the pcap-ng specification
//! (IETF draft-ietf-opsawg-pcapng).

/// `LINKTYPE_RAW`: packets start at their IPv4 or IPv6 header.
pub const LINKTYPE_RAW: u16 = 101;

const SECTION_HEADER: u32 = 0x0A0D_0D0A;
const INTERFACE_DESCRIPTION: u32 = 0x0000_0001;
const ENHANCED_PACKET: u32 = 0x0000_0006;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;

const OPT_END: u16 = 0;
const OPT_COMMENT: u16 = 1;
const SHB_USER_APPLICATION: u16 = 4;
const IF_NAME: u16 = 2;
const IF_DESCRIPTION: u16 = 3;
const IF_TIMESTAMP_RESOLUTION: u16 = 9;
/// `if_tsresol` 9: timestamps count nanoseconds.
const NANOSECONDS: u8 = 9;

/// One block being written: its body, framed by type and length on `finish`.
struct Block {
    kind: u32,
    body: Vec<u8>,
}

impl Block {
    fn new(kind: u32) -> Block {
        Block { kind, body: Vec::with_capacity(64) }
    }

    fn u16(&mut self, value: u16) -> &mut Self {
        self.body.extend_from_slice(&value.to_le_bytes());
        self
    }

    fn u32(&mut self, value: u32) -> &mut Self {
        self.body.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// Bytes, padded to 32 bits.
    fn padded(&mut self, bytes: &[u8]) -> &mut Self {
        self.body.extend_from_slice(bytes);
        self.body.resize(self.body.len().next_multiple_of(4), 0);
        self
    }

    /// An option; values longer than an option can hold are cut.
    fn option(&mut self, code: u16, value: &[u8]) -> &mut Self {
        let value = &value[..value.len().min(usize::from(u16::MAX))];
        self.u16(code).u16(value.len() as u16).padded(value)
    }

    /// The end of the options (when there were some).
    fn end_of_options(&mut self) -> &mut Self {
        self.u16(OPT_END).u16(0)
    }

    /// Appends the framed block to `out`.
    fn finish(&self, out: &mut Vec<u8>) {
        let total = (self.body.len() + 12) as u32;
        out.extend_from_slice(&self.kind.to_le_bytes());
        out.extend_from_slice(&total.to_le_bytes());
        out.extend_from_slice(&self.body);
        out.extend_from_slice(&total.to_le_bytes());
    }
}

/// A section header block: the start of a file, or of a new section
/// appended to one (its interfaces numbered from 0 again).
pub fn section_header(application: &str, out: &mut Vec<u8>) {
    let mut block = Block::new(SECTION_HEADER);
    block.u32(BYTE_ORDER_MAGIC).u16(1).u16(0);
    // Section length unknown.
    block.body.extend_from_slice(&(-1i64).to_le_bytes());
    block.option(SHB_USER_APPLICATION, application.as_bytes()).end_of_options();
    block.finish(out);
}

/// An interface description block with nanosecond timestamps.
pub fn interface_description(name: &str, description: &str, snaplen: u32, out: &mut Vec<u8>) {
    let mut block = Block::new(INTERFACE_DESCRIPTION);
    block.u16(LINKTYPE_RAW).u16(0).u32(snaplen);
    if !name.is_empty() {
        block.option(IF_NAME, name.as_bytes());
    }
    if !description.is_empty() {
        block.option(IF_DESCRIPTION, description.as_bytes());
    }
    block.option(IF_TIMESTAMP_RESOLUTION, &[NANOSECONDS]).end_of_options();
    block.finish(out);
}

/// An enhanced packet block: `data` captured of a packet `original_length`
/// long, at `time_ns` (Unix nanoseconds), on interface `interface`.
pub fn enhanced_packet(
    interface: u32,
    time_ns: u64,
    data: &[u8],
    original_length: u32,
    comment: &str,
    out: &mut Vec<u8>,
) {
    let mut block = Block::new(ENHANCED_PACKET);
    block
        .u32(interface)
        .u32((time_ns >> 32) as u32)
        .u32(time_ns as u32)
        .u32(data.len() as u32)
        .u32(original_length.max(data.len() as u32))
        .padded(data);
    if !comment.is_empty() {
        block.option(OPT_COMMENT, comment.as_bytes()).end_of_options();
    }
    block.finish(out);
}

/// A packet's length on the wire from its IP header (total length, or
/// payload length plus the fixed header), when the header says it.
pub fn ip_length(packet: &[u8]) -> Option<u32> {
    match packet.first()? >> 4 {
        4 => Some(u32::from(u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?]))),
        6 => Some(40 + u32::from(u16::from_be_bytes([*packet.get(4)?, *packet.get(5)?]))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(bytes: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
    }

    #[test]
    fn blocks_are_framed_and_padded() {
        let mut out = Vec::new();
        section_header("flowtel", &mut out);
        assert_eq!(u32_at(&out, 0), SECTION_HEADER);
        let total = u32_at(&out, 4) as usize;
        assert_eq!(total, out.len());
        assert_eq!(total % 4, 0);
        assert_eq!(u32_at(&out, total - 4) as usize, total);
        assert_eq!(u32_at(&out, 8), BYTE_ORDER_MAGIC);

        let mut packet = Vec::new();
        enhanced_packet(3, (7 << 32) | 9, &[0x45, 0, 0, 60, 1], 60, "drop", &mut packet);
        let total = u32_at(&packet, 4) as usize;
        assert_eq!(total, packet.len());
        assert_eq!(total % 4, 0);
        // Interface, timestamp high and low, captured and original lengths.
        assert_eq!([3, 7, 9, 5, 60], [8, 12, 16, 20, 24].map(|at| u32_at(&packet, at)));
        // Data padded to 8 bytes, then the comment option.
        assert_eq!(&packet[28..36], &[0x45, 0, 0, 60, 1, 0, 0, 0]);
        assert_eq!(&packet[36..40], &[1, 0, 4, 0]);
        assert_eq!(&packet[40..44], b"drop");
    }

    #[test]
    fn wire_length_from_the_ip_header() {
        assert_eq!(ip_length(&[0x45, 0, 0x05, 0xdc]), Some(1500));
        assert_eq!(ip_length(&[0x60, 0, 0, 0, 0, 20]), Some(60));
        assert_eq!(ip_length(&[0x45, 0]), None);
        assert_eq!(ip_length(&[]), None);
    }
}
