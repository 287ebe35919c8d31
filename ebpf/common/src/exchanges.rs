//! Request/response latency of TCP connections, from packet timing alone:
//! the time from the last data segment a client sent to the first data
//! segment its server sent back, as the TC programs see them on one
//! interface. Nothing of the payload is read, so TLS is timed like plaintext.

/// Name of the LRU hash of [`ExchangeKey`] → [`Exchange`].
pub const TCP_EXCHANGES_MAP: &str = "TCP_EXCHANGES";
/// Name of the per-CPU hash of [`ServerKey`] → latency histogram slots
/// (see `histogram`), bounded by userspace's `max_servers`.
pub const RESPONSE_LATENCY_MAP: &str = "RESPONSE_LATENCY";
/// Name of the load-time constant `u32`: 1 to time responses.
pub const GLOBAL_RESPONSE_LATENCY: &str = "FLOWTEL_RESPONSE_LATENCY";

/// One TCP connection on one interface, its client (the end that sent the
/// SYN, or else the first to send data) first.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ExchangeKey {
    /// The client's address (network byte order; IPv4 in the first 4 bytes).
    pub client_addr: [u8; 16],
    /// The server's address.
    pub server_addr: [u8; 16],
    /// The client's port (host order).
    pub client_port: u16,
    /// The server's port.
    pub server_port: u16,
    /// The interface the packets were seen on.
    pub ifindex: u32,
}

/// Where a connection's current exchange stands.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exchange {
    /// `bpf_ktime_get_ns()` of the client's latest data segment.
    pub request_ns: u64,
    /// 1 while the client's data awaits the server's answer.
    pub awaiting: u64,
}

/// A server end on an interface: what response latency is counted by.
/// All zero: the servers past `max_servers`, counted together.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServerKey {
    /// The server's address.
    pub addr: [u8; 16],
    /// The server's port (host order).
    pub port: u16,
    /// 4 or 6 (0 for the overflow entry).
    pub ip_version: u8,
    /// Explicit padding; always zero.
    pub pad: u8,
    /// The interface the packets were seen on.
    pub ifindex: u32,
}
