//! Crafted frames for the kernel programs (BPF_PROG_TEST_RUN and benches).

/// An Ethernet + IPv4 frame (no options, not fragmented) from `src` to `dst`
/// carrying `l4` as IP protocol `protocol`.
pub fn ethernet_ipv4(protocol: u8, src: [u8; 4], dst: [u8; 4], l4: &[u8]) -> Vec<u8> {
    let mut frame = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45, 0];
    frame.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    frame.extend_from_slice(&[0, 1, 0, 0, 64, protocol, 0, 0]);
    frame.extend_from_slice(&src);
    frame.extend_from_slice(&dst);
    frame.extend_from_slice(l4);
    frame
}
