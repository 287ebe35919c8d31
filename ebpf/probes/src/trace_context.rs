//! Trace context from plaintext HTTP/1.x: the TC programs read the
//! `traceparent` header of each request's first packet, and its value
//! becomes the connection's current context until the next request on the
//! connection replaces it. Flow, drop and TCP events look it up by
//! connection, so each carries the context of the request in flight.
//!
//! The flow programs only check that a TCP payload starts like a request
//! and hand it over (a tail call) to the header reader, a program of its own
//! because it needs `bpf_loop` (5.17+): where the kernel refuses it, flowtel
//! runs without it and says so.
//!
//! Only the header's value is kept. A request without the header, with a
//! malformed one, or whose headers go on past what is read clears the
//! connection's context (counted), so nothing is ever guessed.

use aya_ebpf::{
    cty::c_void,
    helpers::{bpf_ktime_get_ns, bpf_loop, bpf_skb_load_bytes},
    macros::map,
    maps::{Array, HashMap, PerCpuArray, ProgramArray},
    programs::TcContext,
};
use flowtel_ebpf_common::{
    ConnectionKey, ConnectionTrace, Counter, FlowKey, IP_V4, IP_V6, TRACEPARENT_BYTES, TRACEPARENT_LEN, TraceContext,
    hex_pair, is_traceparent_frame, traceparent_digits,
};

use crate::{
    flows::{count, count_packet, global},
    kernel::{FLOWTEL_LAYOUT, offset, read, read_into},
    parse::{PACKET, Packet, read_packet},
};

/// Bytes of a request's first packet searched for the header.
const WINDOW: usize = 1024;
/// The scratch buffer: twice the window, so a masked index is always inside
/// it, however far past the window a read at a found position goes.
const SCRATCH: usize = 2 * WINDOW;
/// The header's name, lowercase, with its colon.
const HEADER: &[u8; 12] = b"traceparent:";
/// Spaces or tabs accepted before the value.
const MAX_LEADING_WHITESPACE: usize = 4;
/// `AF_INET` and `AF_INET6`.
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// 1 to read `traceparent` headers; set by userspace at load time.
#[unsafe(no_mangle)]
static FLOWTEL_TRACE_CONTEXT: u32 = 1;

/// Each connection's current context. Userspace removes the entries of
/// connections gone idle; a full map refuses new connections (counted).
#[map(name = "TRACE_CONTEXTS")]
static TRACE_CONTEXTS: HashMap<ConnectionKey, ConnectionTrace> = HashMap::with_max_entries(16_384, 0);

/// Slot 0: the program that reads a request's headers
/// (`flowtel_tc_trace_context`), set by userspace where the kernel can run
/// it (5.17+, for `bpf_loop`). Empty, the flow programs skip it.
#[map(name = "TRACE_CONTEXT_PROGRAM")]
static TRACE_CONTEXT_PROGRAM: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// Where lookup keys are built (the tracepoints' stacks are nearly full).
#[map(name = "CONNECTION_KEY_SCRATCH")]
static CONNECTION_KEY_SCRATCH: PerCpuArray<ConnectionKey> = PerCpuArray::with_max_entries(1, 0);

/// This CPU's key scratch slot.
#[inline(always)]
fn scratch_key() -> Option<&'static mut ConnectionKey> {
    // SAFETY: this CPU's slot; a program runs to completion on one CPU.
    CONNECTION_KEY_SCRATCH.get_ptr_mut(0).map(|key| unsafe { &mut *key })
}

/// Where a request's first bytes are copied to be searched.
#[map(name = "HTTP_SCRATCH")]
static HTTP_SCRATCH: PerCpuArray<[u8; SCRATCH]> = PerCpuArray::with_max_entries(1, 0);

/// The byte at `index` of the scratch buffer (masked: the verifier sees the bound).
#[inline(always)]
fn at(buf: &[u8; SCRATCH], index: usize) -> u8 {
    buf[index & (SCRATCH - 1)]
}

/// Where a request's context is decoded, then inserted from.
#[map(name = "TRACE_SCRATCH")]
static TRACE_SCRATCH: PerCpuArray<ConnectionTrace> = PerCpuArray::with_max_entries(1, 0);

/// What a request's headers said about its context.
enum Found {
    /// Decoded into this CPU's [`TRACE_SCRATCH`].
    Context,
    Absent,
    Malformed,
    Unreadable,
}

/// Whether a payload starting with these bytes can be an HTTP/1.x request.
#[inline(always)]
fn is_request_start(first: [u8; 4]) -> bool {
    matches!(&first, b"GET " | b"POST" | b"PUT " | b"HEAD" | b"DELE" | b"PATC" | b"OPTI" | b"CONN" | b"TRAC")
}

/// Called by the flow programs before counting a TCP packet: when its
/// payload can be an HTTP/1.x request, hands the packet to the header
/// reader, which counts it (a tail call: it does not return then).
#[inline(always)]
pub fn hand_over(ctx: &TcContext, packet: &Packet) {
    let payload = packet.tcp_payload as usize;
    if global(&FLOWTEL_TRACE_CONTEXT) == 0 || payload == 0 || payload + 4 > ctx.len() as usize {
        return;
    }
    // Headers end within 16 KiB (six IPv6 extension headers at most): the
    // mask changes nothing but shows the verifier a bound that, with the 4
    // bytes read in place, stays under 64 KiB.
    match read_packet::<[u8; 4]>(ctx, payload & 0x3fff) {
        Some(first) if is_request_start(first) => {}
        _ => return,
    }
    // SAFETY: the context is this program's own; the reader finds the
    // packet in this CPU's `PACKET` slot.
    unsafe { TRACE_CONTEXT_PROGRAM.tail_call(ctx, 0) };
}

/// The header reader: reads the `traceparent` of the request the flow
/// program handed over, makes it its connection's current context, and
/// counts the packet in the request's flow.
#[inline(always)]
pub fn read_request(ctx: &TcContext) {
    let Some(packet) = PACKET.get_ptr_mut(0) else { return };
    // SAFETY: this CPU's slot, filled by the flow program just before.
    let packet = unsafe { &mut *packet };
    set_context(ctx, &packet.key, packet.tcp_payload as usize);
    count_packet(ctx, packet);
}

/// Reads the `traceparent` of the request whose payload starts at `payload`
/// and makes it the connection's current context (or clears it).
#[inline(always)]
fn set_context(ctx: &TcContext, key: &FlowKey, payload: usize) {
    let total = ctx.len() as usize;
    if payload >= total {
        return;
    }
    let Some(buf) = HTTP_SCRATCH.get_ptr_mut(0) else { return };
    let length = total - payload;
    let length = if length > WINDOW { WINDOW } else { length };
    if length < 4 {
        return;
    }
    // SAFETY: `buf` is this CPU's scratch slot of SCRATCH bytes and `length`
    // is at most WINDOW; the helper checks the packet's bounds.
    if unsafe { bpf_skb_load_bytes(ctx.skb.skb.cast(), payload as u32, buf.cast(), length as u32) } != 0 {
        return;
    }
    // SAFETY: as above; nothing else runs on this CPU meanwhile.
    let found = match find_header(unsafe { &*buf }, length) {
        Some(found) => found,
        // Not an HTTP/1.x request after all.
        None => return,
    };
    let Some(connection) = scratch_key() else { return };
    connection.set(key.ip_version, &key.src_addr, key.src_port, &key.dst_addr, key.dst_port);
    let connection = &*connection;
    match found {
        Found::Context => {
            count(Counter::TraceContextsRead);
            let Some(trace) = TRACE_SCRATCH.get_ptr_mut(0) else { return };
            // SAFETY: this CPU's slot, written by `find_header` just before.
            let trace = unsafe { &mut *trace };
            // SAFETY: a helper without preconditions.
            trace.updated_ns = unsafe { bpf_ktime_get_ns() };
            if TRACE_CONTEXTS.insert(connection, &*trace, 0).is_err() {
                count(Counter::TraceContextMapFull);
            } else if let Some(seen) = CONTEXTS_SEEN.get_ptr_mut(0) {
                // SAFETY: a live map value; any CPU writing 1 is the same.
                unsafe { *seen = 1 };
            }
            return;
        }
        Found::Absent => count(Counter::TraceContextsAbsent),
        Found::Malformed => count(Counter::TraceContextsMalformed),
        Found::Unreadable => count(Counter::TraceContextsUnreadable),
    }
    // This request is not the previous one: its events must not carry that one's context.
    let _ = TRACE_CONTEXTS.remove(connection);
}

/// Where the search of a request's headers stands. Kept in a map: the
/// verifier tracks no values there, so it checks the `bpf_loop` callback
/// for one state rather than one per position.
#[repr(C)]
#[derive(Clone, Copy)]
struct Search {
    /// Bytes read into the scratch buffer.
    length: u64,
    /// Where the search goes on from.
    cursor: u64,
    /// Whether the request line has ended.
    in_headers: u64,
    /// One of the `SEARCH_*` outcomes.
    outcome: u64,
    /// With `SEARCH_FOUND`: where the header's value starts.
    value_start: u64,
}

/// This CPU's search.
#[map(name = "HTTP_SEARCH")]
static HTTP_SEARCH: PerCpuArray<Search> = PerCpuArray::with_max_entries(1, 0);

/// What the `bpf_loop` callback is given (on the stack, as `bpf_loop` wants).
#[repr(C)]
struct SearchContext {
    buf: *const [u8; SCRATCH],
    search: *mut Search,
}

/// The headers go on past what was read (the search's start state).
const SEARCH_UNREADABLE: u64 = 0;
/// The first line is not an HTTP/1.x request line.
const SEARCH_NOT_HTTP: u64 = 1;
/// The headers ended without a `traceparent`.
const SEARCH_ABSENT: u64 = 2;
/// A `traceparent` header was found.
const SEARCH_FOUND: u64 = 3;

/// The high bit of each byte of `word` that is `\n`, and possibly of bytes
/// above the first one (the classic zero-byte test on `word` xor eight
/// newlines: exact up to its lowest set bit, which is all that is used).
#[inline(always)]
fn newline_bits(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let x = word ^ (ONES * u64::from(b'\n'));
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// The index (0–7) of the byte whose high bit is the lowest set in `bits`
/// (little-endian), without a loop or a table: the isolated bit, moved to
/// bit 0 of its byte, times 0x0001020304050607 puts the index in the top byte.
#[inline(always)]
fn first_byte(bits: u64) -> usize {
    let lowest = bits & bits.wrapping_neg();
    ((lowest >> 7).wrapping_mul(0x0001_0203_0405_0607) >> 56) as usize
}

/// `bpf_loop` callback: from `cursor`, skips eight bytes at a time to the
/// next `\n` and looks at the line after it ([`at_newline`]). One small
/// body without loops, which the verifier checks once, where a plain loop
/// would be checked byte by byte.
unsafe extern "C" fn search_step(_index: u64, context: *mut c_void) -> i64 {
    const STOP: i64 = 1;
    // SAFETY: `context` is the caller's `SearchContext`, alive for the whole
    // loop; it points at this CPU's search and scratch buffer (map values).
    let (search, buf) = unsafe {
        let context = &*context.cast::<SearchContext>();
        (&mut *context.search, &*context.buf)
    };
    let length = search.length as usize;
    // Below WINDOW (the cursor never passes `length`): the word is inside the buffer.
    let cursor = search.cursor as usize & (WINDOW - 1);
    if cursor >= length {
        return STOP;
    }
    // SAFETY: `cursor + 8` is within the SCRATCH bytes; x86 and arm64 load unaligned words.
    let word = unsafe { core::ptr::read_unaligned(buf.as_ptr().add(cursor).cast::<u64>()) };
    let bits = newline_bits(word);
    if bits == 0 {
        search.cursor = (cursor + 8) as u64;
        return 0;
    }
    let position = cursor + first_byte(bits);
    // Past what was read: the headers did not end there.
    if position >= length {
        return STOP;
    }
    search.cursor = (position + 1) as u64;
    if at_newline(search, buf, position) { STOP } else { 0 }
}

/// Looks at the line after the `\n` at `position`; true when the search
/// is over (its outcome set).
#[inline(always)]
fn at_newline(search: &mut Search, buf: &[u8; SCRATCH], position: usize) -> bool {
    if search.in_headers == 0 {
        if !is_request_line(buf, position) {
            search.outcome = SEARCH_NOT_HTTP;
            return true;
        }
        search.in_headers = 1;
        return false;
    }
    let length = search.length as usize;
    let line = position + 1;
    if line >= length {
        return true;
    }
    let first = at(buf, line);
    if first == b'\r' || first == b'\n' {
        search.outcome = SEARCH_ABSENT;
        return true;
    }
    if line + HEADER.len() <= length && is_traceparent(buf, line) {
        search.outcome = SEARCH_FOUND;
        search.value_start = (line + HEADER.len()) as u64;
        return true;
    }
    false
}

/// Whether the line ending at `end` (its `\n`) ends like an HTTP/1.x
/// request line: `… HTTP/1.x\r\n` (or a bare `\n`).
#[inline(always)]
fn is_request_line(buf: &[u8; SCRATCH], end: usize) -> bool {
    // `at` masks its index, so `n + SCRATCH - k` reads `n - k`; written so,
    // the compiler cannot drop the mask and the verifier sees the bound.
    let before = |n: usize, k: usize| at(buf, n + SCRATCH - k);
    let end = if end > 0 && before(end, 1) == b'\r' { end - 1 } else { end };
    if end < 10 {
        return false;
    }
    for (k, expected) in b" HTTP/1.".iter().enumerate() {
        if before(end, 9 - k) != *expected {
            return false;
        }
    }
    before(end, 1).is_ascii_digit()
}

/// Whether the header line starting at `start` is `traceparent:` (any case).
#[inline(always)]
fn is_traceparent(buf: &[u8; SCRATCH], start: usize) -> bool {
    for (k, expected) in HEADER.iter().enumerate() {
        let c = at(buf, start + k);
        // Setting bit 5 lowercases an ASCII letter and maps nothing else onto one.
        let c = if *expected == b':' { c } else { c | 0x20 };
        if c != *expected {
            return false;
        }
    }
    true
}

/// What the first `length` bytes of a request say about its context;
/// `None` when they are not an HTTP/1.x request.
#[inline(always)]
fn find_header(buf: &[u8; SCRATCH], length: usize) -> Option<Found> {
    let search = HTTP_SEARCH.get_ptr_mut(0)?;
    // SAFETY: this CPU's slot; nothing else runs on this CPU meanwhile.
    unsafe {
        *search =
            Search { length: length as u64, cursor: 0, in_headers: 0, outcome: SEARCH_UNREADABLE, value_start: 0 };
    }
    let mut context = SearchContext { buf, search };
    // Each step moves on by at least a byte: `length` steps are always enough.
    // SAFETY: the callback only touches the search and the buffer.
    unsafe { bpf_loop(length as u32, search_step as *mut c_void, (&mut context as *mut SearchContext).cast(), 0) };
    // SAFETY: as above.
    let search = unsafe { *search };
    match search.outcome {
        SEARCH_FOUND => {}
        SEARCH_ABSENT => return Some(Found::Absent),
        SEARCH_NOT_HTTP => return None,
        _ => return Some(Found::Unreadable),
    }
    let mut value_start = search.value_start as usize & (WINDOW - 1);
    for _ in 0..MAX_LEADING_WHITESPACE {
        let c = at(buf, value_start);
        if value_start < length && (c == b' ' || c == b'\t') {
            value_start += 1;
        }
    }
    // The value and the byte after it must both have been read.
    if value_start + TRACEPARENT_LEN >= length {
        return Some(Found::Unreadable);
    }
    if !matches!(at(buf, value_start + TRACEPARENT_LEN), b'\r' | b'\n' | b' ' | b'\t') {
        return Some(Found::Malformed);
    }
    Some(if decode(buf, value_start) { Found::Context } else { Found::Malformed })
}

/// What the decoding `bpf_loop` callback is given.
struct DecodeContext {
    buf: *const [u8; SCRATCH],
    /// Where the `traceparent` value starts in `buf`.
    value_start: usize,
    /// This CPU's [`TRACE_SCRATCH`] context.
    out: *mut TraceContext,
    /// Set when a digit was not one.
    invalid: bool,
}

/// Decodes the `traceparent` value at `value_start` into this CPU's
/// [`TRACE_SCRATCH`]; false when it is not a valid version-`00` one. A byte
/// per `bpf_loop` step: the verifier checks one step, where 50 digits
/// decoded inline branch into more paths than 6.1's verifier explores.
#[inline(always)]
fn decode(buf: &[u8; SCRATCH], value_start: usize) -> bool {
    if !is_traceparent_frame(|k| at(buf, value_start + k)) {
        return false;
    }
    let Some(trace) = TRACE_SCRATCH.get_ptr_mut(0) else { return false };
    // SAFETY: this CPU's slot; nothing else runs on this CPU meanwhile.
    let out = unsafe { &mut (*trace).context };
    *out = TraceContext::default();
    let mut context = DecodeContext { buf, value_start, out, invalid: false };
    // SAFETY: the callback only touches the buffer and this CPU's slot.
    unsafe {
        bpf_loop(TRACEPARENT_BYTES as u32, decode_step as *mut c_void, (&mut context as *mut DecodeContext).cast(), 0)
    };
    !context.invalid && out.is_valid()
}

/// `bpf_loop` callback: decodes byte `index` of the value.
unsafe extern "C" fn decode_step(index: u64, context: *mut c_void) -> i64 {
    const STOP: i64 = 1;
    // SAFETY: `context` is the caller's `DecodeContext`, alive for the whole
    // loop; its pointers are map values.
    let (context, buf, out) = unsafe {
        let context = &mut *context.cast::<DecodeContext>();
        let (buf, out) = (&*context.buf, &mut *context.out);
        (context, buf, out)
    };
    // Below TRACEPARENT_BYTES (bpf_loop's count); the mask is a bound the verifier sees.
    let index = index as usize & 31;
    let digits = context.value_start + traceparent_digits(index);
    match hex_pair(at(buf, digits), at(buf, digits + 1)) {
        Some(byte) => {
            out.set_byte(index, byte);
            0
        }
        None => {
            context.invalid = true;
            STOP
        }
    }
}

/// 1 once any context was kept: until then (on a host whose traffic has
/// no `traceparent`, or only TLS) no packet pays for a lookup.
#[map(name = "CONTEXTS_SEEN")]
static CONTEXTS_SEEN: Array<u32> = Array::with_max_entries(1, 0);

/// Copies `connection`'s current context to `out`, if it has one.
#[inline(always)]
fn look_up(connection: &ConnectionKey, out: &mut TraceContext) {
    if CONTEXTS_SEEN.get(0).copied() != Some(1) {
        return;
    }
    // SAFETY: copied out of a live map value.
    if let Some(trace) = unsafe { TRACE_CONTEXTS.get(connection) } {
        *out = trace.context;
    }
}

/// The current context of the connection between these two ends, written
/// to `out` (left as it is when there is none).
#[inline(always)]
pub fn current(ip_version: u8, src: &[u8; 16], src_port: u16, dst: &[u8; 16], dst_port: u16, out: &mut TraceContext) {
    // Off, the map stays empty: no lookup (a load-time constant, so the verifier drops it).
    if global(&FLOWTEL_TRACE_CONTEXT) == 0 {
        return;
    }
    let Some(connection) = scratch_key() else { return };
    connection.set(ip_version, src, src_port, dst, dst_port);
    look_up(connection, out);
}

/// The current context of the connection of TCP socket `sk` (may be null),
/// written to `out` (all zero: none).
#[inline(always)]
pub fn of_socket(sk: *const u8, out: &mut TraceContext) {
    *out = TraceContext::default();
    if global(&FLOWTEL_TRACE_CONTEXT) == 0 {
        return;
    }
    let layout = &FLOWTEL_LAYOUT;
    let (Some(family), Some(peer_port), Some(local_port)) = (
        read::<u16>(sk, offset(&layout.sock_family)),
        read::<u16>(sk, offset(&layout.sock_dport)),
        read::<u16>(sk, offset(&layout.inet_sport)),
    ) else {
        return;
    };
    let Some(connection) = scratch_key() else { return };
    // End a is this socket, b its peer, until `order`.
    *connection =
        ConnectionKey { port_a: u16::from_be(local_port), port_b: u16::from_be(peer_port), ..ConnectionKey::default() };
    if family == AF_INET6 {
        if !read_into(sk, offset(&layout.sock_v6_rcv_saddr), &mut connection.addr_a)
            || !read_into(sk, offset(&layout.sock_v6_daddr), &mut connection.addr_b)
        {
            return;
        }
        connection.ip_version = IP_V6;
    } else if family != AF_INET {
        return;
    }
    // An IPv4 peer of a dual-stack socket (`::ffff:a.b.c.d`) talks IPv4 on the wire.
    let peer = &connection.addr_b;
    let mapped = peer[..10] == [0; 10] && peer[10] == 0xff && peer[11] == 0xff;
    if family == AF_INET || mapped {
        connection.addr_a = [0; 16];
        connection.addr_b = [0; 16];
        connection.ip_version = IP_V4;
        if !read_into(sk, offset(&layout.sock_rcv_saddr), &mut connection.addr_a[..4])
            || !read_into(sk, offset(&layout.sock_daddr), &mut connection.addr_b[..4])
        {
            return;
        }
    }
    connection.order();
    look_up(connection, out);
}
