//! The nftables rule that dropped a packet (`allow_system_changes`): flowtel
//! adds a table of its own, `inet flowtel_trace`, whose chains set the
//! trace bit (`meta nftrace set 1`) on every packet entering or leaving its
//! network namespace, reads the kernel's trace events (nfnetlink,
//! `NFNLGRP_NFTRACE`), keeps the recent drop verdicts by packet, and names
//! the rule on the drop's record. The table is removed at shutdown, and on
//! 5.12+ it belongs to flowtel's socket, so the kernel removes it if flowtel
//! dies. Only flowtel's own network namespace is traced.

mod nftables;

use std::{
    collections::HashMap,
    io,
    os::fd::OwnedFd,
    time::{Duration, Instant},
};

use flowtel_core::{schema::attr, self_telemetry::Counter};
use flowtel_ebpf_common::DropEvent;
use opentelemetry_proto::tonic::common::v1::KeyValue;

pub use self::nftables::{DropVerdict, PacketKey, TABLE};
use crate::ebpf::{
    kernel::netlink::{self, Listener},
    otlp::{address, kv},
};

/// How long a drop verdict waits for its drop event.
const VERDICT_LIFETIME: Duration = Duration::from_secs(2);
/// Drop verdicts kept at most (a flood of drops keeps the newest).
const MAX_VERDICTS: usize = 16_384;
/// The trace socket's receive buffer: every traced packet sends several
/// events, most of them accepts flowtel reads and forgets.
const RECEIVE_BUFFER: i32 = 8 << 20;
/// How long shutdown waits for the kernel to confirm the table is gone.
const REMOVAL_TIMEOUT: Duration = Duration::from_secs(2);

/// The recent drop verdicts, by packet.
#[derive(Default)]
struct Verdicts {
    by_packet: HashMap<PacketKey, (DropVerdict, Instant)>,
}

impl Verdicts {
    fn insert(&mut self, key: PacketKey, verdict: DropVerdict) {
        let now = Instant::now();
        if self.by_packet.len() >= MAX_VERDICTS {
            self.by_packet.retain(|_, (_, at)| now.duration_since(*at) < VERDICT_LIFETIME);
            if self.by_packet.len() >= MAX_VERDICTS {
                self.by_packet.clear();
            }
        }
        self.by_packet.insert(key, (verdict, now));
    }

    fn get(&self, key: &PacketKey) -> Option<&DropVerdict> {
        let (verdict, at) = self.by_packet.get(key)?;
        (at.elapsed() < VERDICT_LIFETIME).then_some(verdict)
    }
}

/// Keeps the drops among trace events.
fn on_trace_event(verdicts: &mut Verdicts, message: &netlink::Received<'_>) {
    if let Some((key, verdict)) = nftables::trace_drop(message) {
        verdicts.insert(key, verdict);
    }
}

/// The running trace: its table in the kernel and its reader.
pub struct NetfilterTrace {
    listener: Listener<Verdicts>,
    /// Whether the table belongs to the socket (5.12+).
    pub owned: bool,
}

impl NetfilterTrace {
    /// Adds the trace table and starts reading trace events; `lost` counts
    /// the events the socket could not hold.
    pub fn start(lost: Counter) -> Result<NetfilterTrace, String> {
        let (socket, owned) = match add_table(true) {
            Ok(socket) => (socket, true),
            // Before 5.12 a table cannot belong to a socket: the flag is
            // refused as unknown (EINVAL on older kernels, EOPNOTSUPP on newer).
            Err(error) if matches!(error.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EINVAL)) => {
                (add_table(false).map_err(|e| format!("cannot add nftables table inet {TABLE}: {e}"))?, false)
            }
            Err(error) => return Err(format!("cannot add nftables table inet {TABLE}: {error}")),
        };
        netlink::join_group(&socket, nftables::TRACE_GROUP)
            .map_err(|e| format!("cannot subscribe to nftables trace events: {e}"))?;
        // Best effort: the default buffer still works, overruns are counted.
        let _ = netlink::set_option(&socket, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, RECEIVE_BUFFER);
        let listener = Listener::spawn("nftables-trace", socket, Verdicts::default(), on_trace_event, lost)
            .map_err(|e| format!("cannot start the nftables trace reader: {e}"))?;
        Ok(NetfilterTrace { listener, owned })
    }

    /// The rule or policy that dropped `drop`'s packet, if nftables did. The
    /// kernel queued its trace event before it freed the packet, so what is
    /// queued is read first.
    pub fn verdict(&self, drop: &DropEvent) -> Option<DropVerdict> {
        if drop.ip_version == 0 {
            return None;
        }
        let key = PacketKey {
            protocol: drop.protocol,
            source: address(drop.ip_version, &drop.src_addr),
            destination: address(drop.ip_version, &drop.dst_addr),
            source_port: if drop.has_ports != 0 { drop.src_port } else { 0 },
            destination_port: if drop.has_ports != 0 { drop.dst_port } else { 0 },
        };
        self.listener.read(|verdicts| verdicts.get(&key).cloned())
    }
}

impl Drop for NetfilterTrace {
    /// Stops the reader and removes the table.
    fn drop(&mut self) {
        self.listener.stop();
        if let Err(error) = remove_table(self.listener.socket()) {
            tracing::warn!(error = %error, "Could not remove nftables table inet {TABLE}; remove it with `nft delete table inet {TABLE}`.");
        }
    }
}

/// The attributes of a drop verdict on a drop's record.
pub fn attributes(verdict: &DropVerdict) -> Vec<KeyValue> {
    let mut attributes = vec![
        kv(attr::NETWORK_NETFILTER_FAMILY, verdict.family),
        kv(attr::NETWORK_NETFILTER_TABLE, verdict.table.clone()),
        kv(attr::NETWORK_NETFILTER_CHAIN, verdict.chain.clone()),
    ];
    match verdict.handle {
        Some(handle) => {
            attributes.push(kv(attr::NETWORK_NETFILTER_RULE_HANDLE, i64::try_from(handle).unwrap_or(i64::MAX)));
            attributes.push(kv(attr::NETWORK_NETFILTER_VERDICT, "drop"));
        }
        None => attributes.push(kv(attr::NETWORK_NETFILTER_VERDICT, "policy drop")),
    }
    attributes
}

/// Sends an nftables batch and waits for its acknowledgements: the first
/// error the kernel answers with, if any. The socket may hear trace events
/// meanwhile.
fn transact(socket: &OwnedFd, (batch, acknowledgements): (Vec<u8>, u32), timeout: Duration) -> io::Result<()> {
    let mut acknowledged = 0;
    netlink::exchange(socket, &batch, timeout, true, |message| {
        if message.error() == Some(0) {
            acknowledged += 1;
        }
        acknowledged >= acknowledgements
    })
}

/// A socket with the trace table added through it.
fn add_table(owner: bool) -> io::Result<OwnedFd> {
    let socket = netlink::socket(libc::NETLINK_NETFILTER, 0)?;
    transact(&socket, nftables::add_table(1, owner), REMOVAL_TIMEOUT)?;
    Ok(socket)
}

fn remove_table(socket: &OwnedFd) -> io::Result<()> {
    transact(socket, nftables::delete_table(1000), REMOVAL_TIMEOUT)
}

#[cfg(test)]
mod tests;
