//! Interface changes from rtnetlink: a socket in the `RTMGRP_LINK` group
//! hears the kernel announce each interface that appears, changes (up,
//! down, renamed) or goes, so the watcher attaches and detaches within
//! milliseconds rather than at its next look at the interface list.

use std::{io, os::fd::OwnedFd};

use tokio::io::{Interest, unix::AsyncFd};

use crate::ebpf::kernel::netlink;

/// `RTMGRP_LINK`: the multicast group of link messages.
const RTMGRP_LINK: u32 = 1;

/// A subscription to the kernel's link messages in flowtel's network namespace.
pub struct LinkEvents {
    socket: AsyncFd<OwnedFd>,
}

impl LinkEvents {
    /// Opens a `NETLINK_ROUTE` socket bound to the link group.
    pub fn open() -> io::Result<Self> {
        let socket = netlink::socket(libc::NETLINK_ROUTE, RTMGRP_LINK)?;
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
                match netlink::receive(self.socket.get_ref(), &mut buffer) {
                    Ok(_) => heard = true,
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                    Err(error) if error.raw_os_error() == Some(libc::ENOBUFS) => heard = true,
                    Err(error) => return Err(error),
                }
            }
            guard.clear_ready();
            if heard {
                return Ok(());
            }
        }
    }
}
