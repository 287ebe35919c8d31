//! Netlink: sockets, and the messages and attributes flowtel builds and
//! reads (rtnetlink link messages, nftables). Every number is in host
//! order, as netlink's headers are, except where an attribute says it is
//! big-endian (`be32`, `be64`: nftables' values).

use std::{
    io,
    mem::size_of,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

/// `NLM_F_REQUEST`.
pub const F_REQUEST: u16 = 0x1;
/// `NLM_F_ACK`.
pub const F_ACK: u16 = 0x4;
/// `NLM_F_APPEND`.
pub const F_APPEND: u16 = 0x800;
/// `NLM_F_CREATE`.
pub const F_CREATE: u16 = 0x400;
/// `NLMSG_ERROR`: an error, or an acknowledgement (error 0).
pub const MSG_ERROR: u16 = 2;
/// `NLA_F_NESTED`.
const F_NESTED: u16 = 0x8000;
/// The type bits of an attribute.
const TYPE_MASK: u16 = 0x3fff;
/// `nlmsghdr` and `nlattr` sizes.
const MESSAGE_HEADER: usize = 16;
const ATTRIBUTE_HEADER: usize = 4;

/// Opens a netlink socket of `protocol` in flowtel's network namespace,
/// non-blocking, bound to the multicast `groups` (a bit mask of groups 1–32).
pub fn socket(protocol: i32, groups: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscalls; the descriptor is owned right after.
    let socket = unsafe {
        let fd = libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, protocol);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        OwnedFd::from_raw_fd(fd)
    };
    // SAFETY: a zeroed `sockaddr_nl` is valid; the kernel picks the port id.
    let mut address: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    address.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    address.nl_groups = groups;
    // SAFETY: `address` is a valid `sockaddr_nl` of the given size.
    let bound = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&address as *const libc::sockaddr_nl).cast(),
            size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if bound < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(socket)
}

/// Joins multicast group `group` (any number, past the 32 of `bind`).
pub fn join_group(socket: &OwnedFd, group: u32) -> io::Result<()> {
    set_option(socket, libc::SOL_NETLINK, libc::NETLINK_ADD_MEMBERSHIP, group as libc::c_int)
}

/// Sets an integer socket option.
pub fn set_option(socket: &OwnedFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: the option value is a live `c_int` of the given size.
    let set = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if set < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Sends `bytes` to the kernel.
pub fn send(socket: &OwnedFd, bytes: &[u8]) -> io::Result<()> {
    // SAFETY: sends from a buffer of the given length.
    let sent = unsafe { libc::send(socket.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), 0) };
    if sent < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Receives one datagram into `buffer` without waiting: its length, or
/// `WouldBlock` when none is queued (`ENOBUFS`: the socket overran and
/// messages were lost).
pub fn receive(socket: &OwnedFd, buffer: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: reads into a buffer of the given length.
        let read =
            unsafe { libc::recv(socket.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len(), libc::MSG_DONTWAIT) };
        if read >= 0 {
            return Ok(read as usize);
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// Sends `request` and hands each message that comes back to `answer`
/// until it says the exchange is over (`true`), within `timeout`. An error
/// the kernel answers with ends it with that error. `skip_overruns`: the
/// socket also hears a multicast group, whose messages may overrun it
/// (`ENOBUFS`), and reading goes on; otherwise an overrun is an error.
pub fn exchange(
    socket: &OwnedFd,
    request: &[u8],
    timeout: std::time::Duration,
    skip_overruns: bool,
    mut answer: impl FnMut(&Received<'_>) -> bool,
) -> io::Result<()> {
    send(socket, request)?;
    let deadline = std::time::Instant::now() + timeout;
    let mut buffer = vec![0u8; DATAGRAM];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || !wait_readable(socket, left) {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "the kernel did not answer in time"));
        }
        let length = match receive(socket, &mut buffer) {
            Ok(length) => length,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
            Err(error) if skip_overruns && error.raw_os_error() == Some(libc::ENOBUFS) => continue,
            Err(error) => return Err(error),
        };
        for message in messages(&buffer[..length]) {
            if let Some(error) = message.error().filter(|&error| error != 0) {
                return Err(io::Error::from_raw_os_error(-error));
            }
            if answer(&message) {
                return Ok(());
            }
        }
    }
}

/// A message being built: header, family header, attributes.
pub struct Message {
    bytes: Vec<u8>,
    /// Where each open nested attribute starts.
    nests: Vec<usize>,
}

impl Message {
    /// A message of `kind` with `flags` and sequence number `sequence`,
    /// followed by `header` (the family's own header).
    pub fn new(kind: u16, flags: u16, sequence: u32, header: &[u8]) -> Message {
        let mut bytes = Vec::with_capacity(256);
        bytes.extend_from_slice(&0u32.to_ne_bytes());
        bytes.extend_from_slice(&kind.to_ne_bytes());
        bytes.extend_from_slice(&flags.to_ne_bytes());
        bytes.extend_from_slice(&sequence.to_ne_bytes());
        bytes.extend_from_slice(&0u32.to_ne_bytes());
        bytes.extend_from_slice(header);
        pad(&mut bytes);
        Message { bytes, nests: Vec::new() }
    }

    /// An attribute with `value`.
    pub fn attribute(&mut self, kind: u16, value: &[u8]) -> &mut Self {
        let length = (ATTRIBUTE_HEADER + value.len()) as u16;
        self.bytes.extend_from_slice(&length.to_ne_bytes());
        self.bytes.extend_from_slice(&kind.to_ne_bytes());
        self.bytes.extend_from_slice(value);
        pad(&mut self.bytes);
        self
    }

    /// A NUL-terminated string attribute.
    pub fn string(&mut self, kind: u16, value: &str) -> &mut Self {
        let mut bytes = Vec::with_capacity(value.len() + 1);
        bytes.extend_from_slice(value.as_bytes());
        bytes.push(0);
        self.attribute(kind, &bytes)
    }

    /// A big-endian `u32` attribute.
    pub fn be32(&mut self, kind: u16, value: u32) -> &mut Self {
        self.attribute(kind, &value.to_be_bytes())
    }

    /// Opens a nested attribute; `end` closes it.
    pub fn begin(&mut self, kind: u16) -> &mut Self {
        self.nests.push(self.bytes.len());
        self.attribute(kind | F_NESTED, &[])
    }

    /// Closes the innermost nested attribute.
    pub fn end(&mut self) -> &mut Self {
        if let Some(start) = self.nests.pop() {
            let length = (self.bytes.len() - start) as u16;
            self.bytes[start..start + 2].copy_from_slice(&length.to_ne_bytes());
        }
        self
    }

    /// The finished message, its length in its header, appended to `out`.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let length = self.bytes.len() as u32;
        self.bytes[..4].copy_from_slice(&length.to_ne_bytes());
        out.extend_from_slice(&self.bytes);
    }
}

fn pad(bytes: &mut Vec<u8>) {
    bytes.resize(bytes.len().next_multiple_of(4), 0);
}

/// One received message: its type, flags, sequence number and payload
/// (family header and attributes).
pub struct Received<'a> {
    /// `nlmsg_type`.
    pub kind: u16,
    /// `nlmsg_seq`.
    pub sequence: u32,
    /// What follows the header.
    pub payload: &'a [u8],
}

impl Received<'_> {
    /// For an `NLMSG_ERROR`: the error (0: an acknowledgement).
    pub fn error(&self) -> Option<i32> {
        (self.kind == MSG_ERROR)
            .then(|| self.payload.get(..4))
            .flatten()
            .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// The messages of a datagram; stops at the first malformed one.
pub fn messages(mut datagram: &[u8]) -> impl Iterator<Item = Received<'_>> {
    std::iter::from_fn(move || {
        let header = datagram.get(..MESSAGE_HEADER)?;
        let length = u32::from_ne_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if length < MESSAGE_HEADER || length > datagram.len() {
            return None;
        }
        let message = Received {
            kind: u16::from_ne_bytes([header[4], header[5]]),
            sequence: u32::from_ne_bytes([header[8], header[9], header[10], header[11]]),
            payload: &datagram[MESSAGE_HEADER..length],
        };
        datagram = datagram.get(length.next_multiple_of(4)..).unwrap_or_default();
        Some(message)
    })
}

/// The attributes in `bytes`, as (type, value); stops at the first malformed one.
pub fn attributes(mut bytes: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let header = bytes.get(..ATTRIBUTE_HEADER)?;
        let length = usize::from(u16::from_ne_bytes([header[0], header[1]]));
        if length < ATTRIBUTE_HEADER || length > bytes.len() {
            return None;
        }
        let kind = u16::from_ne_bytes([header[2], header[3]]) & TYPE_MASK;
        let value = &bytes[ATTRIBUTE_HEADER..length];
        bytes = bytes.get(length.next_multiple_of(4)..).unwrap_or_default();
        Some((kind, value))
    })
}

/// A big-endian `u32` value.
pub fn be32(value: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(value.get(..4)?.try_into().ok()?))
}

/// A big-endian `u64` value.
pub fn be64(value: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(value.get(..8)?.try_into().ok()?))
}

/// A NUL-terminated string value.
pub fn string(value: &[u8]) -> String {
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end]).into_owned()
}

/// A netlink subscription read on a thread of its own into a state that
/// callers can also read, after taking what is queued (so a caller sees
/// every message the kernel sent before it asked).
pub struct Listener<S: Send + 'static> {
    shared: std::sync::Arc<ListenerShared<S>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    reader: Option<std::thread::JoinHandle<()>>,
}

struct ListenerShared<S> {
    socket: OwnedFd,
    /// The state, and the buffer messages are read into.
    state: std::sync::Mutex<(S, Vec<u8>)>,
    handle: fn(&mut S, &Received<'_>),
    /// Messages the socket could not hold (it overran).
    lost: flowtel_core::self_telemetry::Counter,
}

/// The largest netlink datagram read at once.
const DATAGRAM: usize = 64 * 1024;

impl<S> ListenerShared<S> {
    /// Hands every queued message to `handle`.
    fn drain(&self, (state, buffer): &mut (S, Vec<u8>)) {
        loop {
            match receive(&self.socket, buffer) {
                Ok(length) => messages(&buffer[..length]).for_each(|message| (self.handle)(state, &message)),
                Err(error) if error.raw_os_error() == Some(libc::ENOBUFS) => self.lost.inc(),
                Err(_) => return,
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (S, Vec<u8>)> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<S: Send + 'static> Listener<S> {
    /// Starts a thread `name` handing each message of `socket` to `handle`;
    /// `lost` counts the messages the socket overran.
    pub fn spawn(
        name: &str,
        socket: OwnedFd,
        state: S,
        handle: fn(&mut S, &Received<'_>),
        lost: flowtel_core::self_telemetry::Counter,
    ) -> io::Result<Listener<S>> {
        use std::sync::{Arc, atomic::Ordering};
        let state = std::sync::Mutex::new((state, vec![0u8; DATAGRAM]));
        let shared = Arc::new(ListenerShared { socket, state, handle, lost });
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::Builder::new().name(name.into()).spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if wait_readable(&shared.socket, std::time::Duration::from_millis(200)) {
                        shared.drain(&mut shared.lock());
                    }
                }
            })?
        };
        Ok(Listener { shared, stop, reader: Some(reader) })
    }

    /// Runs `read` on the state once every queued message is in it.
    pub fn read<R>(&self, read: impl FnOnce(&mut S) -> R) -> R {
        let mut state = self.shared.lock();
        self.shared.drain(&mut state);
        read(&mut state.0)
    }

    /// Runs `read` on the state as the thread left it (no system call).
    pub fn peek<R>(&self, read: impl FnOnce(&S) -> R) -> R {
        read(&self.shared.lock().0)
    }

    /// The socket (to send on once the listener is stopped).
    pub fn socket(&self) -> &OwnedFd {
        &self.shared.socket
    }

    /// Stops the thread; messages are no longer read.
    pub fn stop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl<S: Send + 'static> Drop for Listener<S> {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether `socket` has something to read within `timeout`.
pub fn wait_readable(socket: &OwnedFd, timeout: std::time::Duration) -> bool {
    let mut poll = libc::pollfd { fd: socket.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    let ready = unsafe { libc::poll(&mut poll, 1, timeout.as_millis().min(i32::MAX as u128) as libc::c_int) };
    ready > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_messages_read_back() {
        let mut out = Vec::new();
        let mut message = Message::new(0x0a06, F_REQUEST | F_ACK, 7, &[1, 0, 0, 0]);
        message.string(1, "flowtel").begin(4).be32(2, 12).end().be32(3, 1);
        message.finish(&mut out);
        Message::new(0x11, F_REQUEST, 8, &[0, 0, 0, 10]).finish(&mut out);
        let read: Vec<Received<'_>> = messages(&out).collect();
        assert_eq!(read.len(), 2);
        assert_eq!((read[0].kind, read[0].sequence, read[1].kind, read[1].sequence), (0x0a06, 7, 0x11, 8));
        let attributes: Vec<(u16, &[u8])> = attributes(&read[0].payload[4..]).collect();
        assert_eq!(attributes.len(), 3);
        assert_eq!((attributes[0].0, string(attributes[0].1)), (1, "flowtel".to_owned()));
        let nested: Vec<(u16, &[u8])> = super::attributes(attributes[1].1).collect();
        assert_eq!((attributes[1].0, nested[0].0, be32(nested[0].1)), (4, 2, Some(12)));
        assert_eq!((attributes[2].0, be32(attributes[2].1)), (3, Some(1)));
    }

    #[test]
    fn malformed_input_ends_the_reading() {
        assert_eq!(messages(&[0xff; 10]).count(), 0);
        let mut huge = vec![0u8; 16];
        huge[..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert_eq!(messages(&huge).count(), 0);
        assert_eq!(attributes(&[3, 0, 1, 0]).count(), 0);
        assert_eq!(attributes(&[8, 0, 1, 0, 1]).count(), 0);
    }
}
