//! W3C trace context read from plaintext HTTP/1.x requests by the TC
//! programs, kept per TCP connection, and copied into every kernel event of
//! that connection.
//!
//! Only a `traceparent` header's value is read; nothing else of a payload
//! leaves the kernel. The parser below is shared by the kernel and the
//! userspace tests, so both agree on what a valid context is.

/// Name of the hash of [`ConnectionKey`] → [`ConnectionTrace`].
pub const TRACE_CONTEXTS_MAP: &str = "TRACE_CONTEXTS";
/// Name of the load-time constant `u32`: 1 to read `traceparent` headers, 0 not to.
pub const GLOBAL_TRACE_CONTEXT: &str = "FLOWTEL_TRACE_CONTEXT";
/// Name of the program array whose slot 0 holds the header reader.
pub const TRACE_CONTEXT_PROGRAM_MAP: &str = "TRACE_CONTEXT_PROGRAM";
/// Name of the header reader: the TC programs' tail call target (needs `bpf_loop`, 5.17+).
pub const PROG_TC_TRACE_CONTEXT: &str = "flowtel_tc_trace_context";

/// Length of a version-`00` `traceparent` value:
/// `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`.
pub const TRACEPARENT_LEN: usize = 55;

/// A trace context: all zero when there is none.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceContext {
    /// The trace id (never all zero in a valid context).
    pub trace_id: [u8; 16],
    /// The parent (calling) span's id, as the header carried it.
    pub span_id: [u8; 8],
    /// The W3C trace flags (bit 0: sampled).
    pub flags: u8,
    /// Explicit padding; always zero.
    pub pad: [u8; 7],
}

impl TraceContext {
    /// Whether this holds a context (a valid one never has an all-zero trace id).
    pub fn is_present(&self) -> bool {
        self.trace_id != [0; 16]
    }
}

/// A TCP connection, the same whichever way a packet goes: the end with
/// the lower port (or, with equal ports, the lower address) comes first.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConnectionKey {
    /// The first end's address (network byte order; IPv4 in the first 4 bytes).
    pub addr_a: [u8; 16],
    /// The second end's address.
    pub addr_b: [u8; 16],
    /// The first end's port (host order).
    pub port_a: u16,
    /// The second end's port.
    pub port_b: u16,
    /// 4 or 6.
    pub ip_version: u8,
    /// Explicit padding; always zero.
    pub pad: [u8; 3],
}

impl ConnectionKey {
    /// The key of the connection between `(src, src_port)` and `(dst, dst_port)`.
    #[inline(always)]
    pub fn new(ip_version: u8, src: &[u8; 16], src_port: u16, dst: &[u8; 16], dst_port: u16) -> Self {
        let mut key = ConnectionKey::default();
        key.set(ip_version, src, src_port, dst, dst_port);
        key
    }

    /// Makes this the key of the connection between `(src, src_port)` and
    /// `(dst, dst_port)`, in place.
    #[inline(always)]
    pub fn set(&mut self, ip_version: u8, src: &[u8; 16], src_port: u16, dst: &[u8; 16], dst_port: u16) {
        self.addr_a = *src;
        self.addr_b = *dst;
        self.port_a = src_port;
        self.port_b = dst_port;
        self.ip_version = ip_version;
        self.pad = [0; 3];
        self.order();
    }

    /// Puts the ends in the key's order (in place: the eBPF stack is small).
    #[inline(always)]
    pub fn order(&mut self) {
        let in_order =
            if self.port_a != self.port_b { self.port_a < self.port_b } else { !lower(&self.addr_b, &self.addr_a) };
        if !in_order {
            // Byte by byte: whole-array temporaries would take eBPF stack.
            for i in 0..16 {
                core::mem::swap(&mut self.addr_a[i], &mut self.addr_b[i]);
            }
            core::mem::swap(&mut self.port_a, &mut self.port_b);
        }
    }
}

/// Whether `a` sorts before `b` (bytewise).
#[inline(always)]
fn lower(a: &[u8; 16], b: &[u8; 16]) -> bool {
    for i in 0..16 {
        if a[i] != b[i] {
            return a[i] < b[i];
        }
    }
    false
}

/// A connection's current trace context.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionTrace {
    /// The context of the latest request seen on the connection.
    pub context: TraceContext,
    /// `bpf_ktime_get_ns()` when that request was seen.
    pub updated_ns: u64,
}

/// Bytes a `traceparent` value decodes to: the trace id, the parent id
/// and the flags, in [`TraceContext`]'s order.
pub const TRACEPARENT_BYTES: usize = 25;

/// Where, in a `traceparent` value, the two digits of decoded byte `index`
/// (< [`TRACEPARENT_BYTES`]) start: after `00-`, with a dash before the
/// parent id (byte 16) and before the flags (byte 24).
#[inline(always)]
pub fn traceparent_digits(index: usize) -> usize {
    3 + 2 * index + usize::from(index >= 16) + usize::from(index >= 24)
}

/// Whether a value has a version-`00` `traceparent`'s version and dashes
/// (`value(k)` is its `k`th byte, `k < TRACEPARENT_LEN`).
#[inline(always)]
pub fn is_traceparent_frame(value: impl Fn(usize) -> u8) -> bool {
    value(0) == b'0' && value(1) == b'0' && value(2) == b'-' && value(35) == b'-' && value(52) == b'-'
}

/// The byte two hexadecimal digits spell (lowercase only, as the W3C
/// format requires).
#[inline(always)]
pub fn hex_pair(high: u8, low: u8) -> Option<u8> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    Some(digit(high)? << 4 | digit(low)?)
}

impl TraceContext {
    /// Sets decoded byte `index` (< [`TRACEPARENT_BYTES`]; see [`traceparent_digits`]).
    #[inline(always)]
    pub fn set_byte(&mut self, index: usize, byte: u8) {
        const SIZE: usize = core::mem::size_of::<TraceContext>();
        // SAFETY: `TraceContext` is `repr(C)` bytes only (ids, flags, then
        // padding), so its bytes in order are the decoded ones; the mask
        // keeps the index inside it, in a form the verifier follows (a
        // `match` on ranges here gave 6.1's verifier contradictory bounds).
        let bytes = unsafe { &mut *(self as *mut TraceContext).cast::<[u8; SIZE]>() };
        bytes[index & (SIZE - 1)] = byte;
    }

    /// Whether a decoded context is valid: neither id all zero.
    pub fn is_valid(&self) -> bool {
        self.is_present() && self.span_id != [0; 8]
    }
}

/// Parses a version-`00` `traceparent` value. `None` for anything else:
/// another version (`ff` is never valid), uppercase or non-hex digits,
/// missing dashes, or an all-zero trace or parent id. The kernel runs the
/// same steps, decoding a byte per `bpf_loop` step.
pub fn parse_traceparent(value: &[u8; TRACEPARENT_LEN]) -> Option<TraceContext> {
    if !is_traceparent_frame(|k| value[k]) {
        return None;
    }
    let mut context = TraceContext::default();
    for index in 0..TRACEPARENT_BYTES {
        let at = traceparent_digits(index);
        context.set_byte(index, hex_pair(value[at], value[at + 1])?);
    }
    context.is_valid().then_some(context)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Option<TraceContext> {
        parse_traceparent(text.as_bytes().try_into().unwrap())
    }

    #[test]
    fn reads_a_version_00_context() {
        let context = parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").unwrap();
        assert_eq!(context.trace_id[..4], [0x0a, 0xf7, 0x65, 0x19]);
        assert_eq!(context.span_id[7], 0x31);
        assert_eq!(context.flags, 1);
    }

    #[test]
    fn refuses_what_the_specification_refuses() {
        for bad in [
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01",
            "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0x",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_connection_has_one_key_whichever_way() {
        let (client, server) = ([10; 16], [20; 16]);
        let there = ConnectionKey::new(4, &client, 40_000, &server, 80);
        assert_eq!(there, ConnectionKey::new(4, &server, 80, &client, 40_000));
        assert_eq!((there.port_a, there.addr_a), (80, server));
        assert_eq!(ConnectionKey::new(4, &client, 7, &server, 7), ConnectionKey::new(4, &server, 7, &client, 7));
    }
}
