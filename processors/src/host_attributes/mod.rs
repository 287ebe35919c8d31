//! The `host_attributes` processor: which local process is at each end of
//! a flow. For records with a 5-tuple (flows, drops, TCP events, and metric
//! points that carry addresses), an end that is a socket on this host —
//! in any network namespace — gets the process that owns it:
//! `source.process.pid`, `source.process.executable.name`,
//! `source.container.id`, `source.linux.netns.inode` (and `destination.*`).
//!
//! Sockets are read from /proc on a background thread every
//! `refresh_interval`, and sooner when a record names a local address whose
//! socket is not known yet; the pipeline never waits for /proc.

mod config;
mod sockets;

use flowtel_core::schema::attr;
use std::{
    net::SocketAddr,
    path::Path,
    sync::{Arc, Mutex, PoisonError, RwLock, mpsc},
    time::Instant,
};

use flowtel_core::{
    Payload,
    attributes::{find_text, insert_absent, insert_absent_value, socket_address},
    component::{ComponentError, Processor, ProcessorContext},
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value::Value};

pub use self::{
    config::HostAttributesConfig,
    sockets::{SocketIndex, SocketOwner, SocketRow, Transport},
};

/// The socket index and its refresher, shared by the pipelines of one config.
struct Shared {
    index: RwLock<Arc<SocketIndex>>,
    /// Asks the refresher for an early read; `None` until started.
    nudge: Mutex<Option<mpsc::SyncSender<()>>>,
}

/// One `host_attributes` config: the index its pipelines share.
pub struct HostAttributes {
    config: HostAttributesConfig,
    shared: Arc<Shared>,
}

impl HostAttributes {
    /// The shared part of a (validated) config; nothing runs yet.
    pub fn new(config: HostAttributesConfig) -> Self {
        let shared = Shared { index: RwLock::new(Arc::new(SocketIndex::default())), nudge: Mutex::new(None) };
        HostAttributes { config, shared: Arc::new(shared) }
    }

    /// A processor for one pipeline.
    pub fn processor(&self) -> HostAttributesProcessor {
        HostAttributesProcessor { config: self.config.clone(), shared: self.shared.clone() }
    }
}

/// The `host_attributes` processor of one pipeline.
pub struct HostAttributesProcessor {
    config: HostAttributesConfig,
    shared: Arc<Shared>,
}

impl HostAttributesProcessor {
    /// A processor over a fixed index, for tests and benches: no /proc reads.
    pub fn with_index(index: SocketIndex) -> Self {
        let processor = HostAttributes::new(HostAttributesConfig::default()).processor();
        *processor.shared.index.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(index);
        processor
    }

    fn nudge(&self) {
        if let Some(sender) = self.shared.nudge.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            // Full: a read is already asked for.
            let _ = sender.try_send(());
        }
    }
}

/// The attribute names of one end.
struct EndKeys {
    pid: &'static str,
    command: &'static str,
    container: &'static str,
    netns: &'static str,
}

const SOURCE_KEYS: EndKeys = EndKeys {
    pid: attr::SOURCE_PROCESS_PID,
    command: attr::SOURCE_PROCESS_EXECUTABLE_NAME,
    container: attr::SOURCE_CONTAINER_ID,
    netns: attr::SOURCE_LINUX_NETNS_INODE,
};

const DESTINATION_KEYS: EndKeys = EndKeys {
    pid: attr::DESTINATION_PROCESS_PID,
    command: attr::DESTINATION_PROCESS_EXECUTABLE_NAME,
    container: attr::DESTINATION_CONTAINER_ID,
    netns: attr::DESTINATION_LINUX_NETNS_INODE,
};

/// The ends of a record: transport, source and destination.
fn ends(attributes: &[KeyValue]) -> Option<(Transport, SocketAddr, SocketAddr)> {
    let transport = Transport::parse(&find_text(attributes, attr::NETWORK_TRANSPORT)?)?;
    Some((
        transport,
        socket_address(attributes, attr::SOURCE_ADDRESS, attr::SOURCE_PORT)?,
        socket_address(attributes, attr::DESTINATION_ADDRESS, attr::DESTINATION_PORT)?,
    ))
}

/// Adds the owners of a record's local ends; whether an end was local
/// (an address of this host) but its socket unknown.
fn describe(index: &SocketIndex, attributes: &mut Vec<KeyValue>) -> bool {
    let Some((transport, source, destination)) = ends(attributes) else { return false };
    let mut unknown = false;
    for (keys, local, remote) in [(&SOURCE_KEYS, source, destination), (&DESTINATION_KEYS, destination, source)] {
        match index.owner(transport, local, remote) {
            Some(owner) => {
                insert_absent_value(attributes, keys.pid, || Value::IntValue(owner.pid.into()));
                insert_absent(attributes, keys.command, &owner.command);
                if let Some(id) = &owner.container_id {
                    insert_absent(attributes, keys.container, id);
                }
                insert_absent_value(attributes, keys.netns, || {
                    Value::IntValue(i64::try_from(owner.netns).unwrap_or(i64::MAX))
                });
            }
            None => unknown |= index.is_local(local.ip()),
        }
    }
    unknown
}

/// Adds the local ends' processes to every record and point of a payload;
/// whether some local socket was unknown.
pub fn enrich(index: &SocketIndex, payload: &mut Payload) -> bool {
    let mut unknown = false;
    payload.for_each_record_attributes(|attributes| unknown |= describe(index, attributes));
    unknown
}

#[async_trait::async_trait]
impl Processor for HostAttributesProcessor {
    async fn start(&mut self, ctx: ProcessorContext) -> Result<(), ComponentError> {
        let mut nudge = self.shared.nudge.lock().unwrap_or_else(PoisonError::into_inner);
        if nudge.is_some() {
            return Ok(());
        }
        let (sender, receiver) = mpsc::sync_channel(1);
        *nudge = Some(sender);
        let scans = ctx.metrics.counter(
            "flowtel_host_attributes_scans_total",
            "Reads of every process's sockets from /proc.",
            &[],
        );
        let sockets =
            ctx.metrics.gauge("flowtel_host_attributes_sockets", "Local sockets known with their process.", &[]);
        let shared = Arc::downgrade(&self.shared);
        let config = self.config.clone();
        std::thread::Builder::new()
            .name("host-attributes".into())
            .spawn(move || {
                loop {
                    let started = Instant::now();
                    let index = SocketIndex::scan(Path::new("/proc"));
                    scans.inc();
                    sockets.set(index.len() as i64);
                    let Some(shared) = shared.upgrade() else { return };
                    *shared.index.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(index);
                    drop(shared);
                    match receiver.recv_timeout(config.refresh_interval) {
                        Ok(()) => std::thread::sleep(config.min_rescan_interval.saturating_sub(started.elapsed())),
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
            })
            .map_err(|err| {
                ComponentError::new(
                    flowtel_core::ComponentKind::Processor,
                    &ctx.id,
                    format!("cannot start its /proc reader: {err}"),
                )
            })?;
        Ok(())
    }

    fn process(&mut self, mut payload: Payload, out: &mut Vec<Payload>) {
        let index = self.shared.index.read().unwrap_or_else(PoisonError::into_inner).clone();
        if enrich(&index, &mut payload) {
            self.nudge();
        }
        out.push(payload);
    }
}

#[cfg(test)]
mod tests;
