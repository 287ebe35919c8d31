//! Interface changes from rtnetlink: a socket in the `RTMGRP_LINK` group
//! hears the kernel announce each interface that appears, changes (up,
//! down, renamed) or goes, so the watcher attaches and detaches within
//! milliseconds rather than at its next look at the interface list.

use std::{
    io,
    mem::size_of,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use tokio::io::{Interest, unix::AsyncFd};

/// `RTMGRP_LINK`: the multicast group of link messages.
const RTMGRP_LINK: u32 = 1;

/// A subscription to the kernel's link messages in flowtel's network namespace.
pub struct LinkEvents {
    socket: AsyncFd<OwnedFd>,
}

impl LinkEvents {
    /// Opens a `NETLINK_ROUTE` socket bound to the link group.
    pub fn open() -> io::Result<Self> {
        // SAFETY: plain syscalls; the descriptor is owned right after.
        let socket = unsafe {
            let fd = libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            );
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            OwnedFd::from_raw_fd(fd)
        };
        // SAFETY: a zeroed `sockaddr_nl` is valid; the kernel picks the port id.
        let mut address: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        address.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        address.nl_groups = RTMGRP_LINK;
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
        // SAFETY: an OwnedFd stays open, on the same descriptor, for the AsyncFd's life.
        let socket = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }.map_err(io::Error::from)?;
        Ok(LinkEvents { socket })
    }

    /// Waits until the kernel announces a link change, and takes every
    /// message queued with it (one resync covers them all). A lost message
    /// (`ENOBUFS`: the socket overran) is a change too.
    pub async fn changed(&self) -> io::Result<()> {
        let mut buffer = [0u8; 16 * 1024];
        loop {
            let mut guard = self.socket.readable().await?;
            let mut heard = false;
            loop {
                // SAFETY: reads into a buffer of the given length.
                let read = unsafe {
                    libc::recv(self.socket.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len(), libc::MSG_DONTWAIT)
                };
                if read >= 0 {
                    heard = true;
                    continue;
                }
                match io::Error::last_os_error() {
                    error if error.kind() == io::ErrorKind::WouldBlock => break,
                    error if error.raw_os_error() == Some(libc::ENOBUFS) => heard = true,
                    error if error.kind() == io::ErrorKind::Interrupted => {}
                    error => return Err(error),
                }
            }
            guard.clear_ready();
            if heard {
                return Ok(());
            }
        }
    }
}
