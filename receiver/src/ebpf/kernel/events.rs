//! Readers of the kernel's event streams (flow events; drop and TCP
//! events): the BPF ring buffer, or one perf buffer per CPU. They decode
//! events in batches and hand each batch over whole; when the task they
//! feed is behind, they wait for it and leave what comes meanwhile in the
//! kernel's buffer, which counts what it cannot hold (the kernel never
//! waits).

use std::mem::size_of;

use aya::{
    Ebpf,
    maps::{MapData, PerfEventArray, RingBuf, perf::PerfEvent},
    util::online_cpus,
};
use flowtel_core::self_telemetry::Counter;
use flowtel_ebpf_common::{
    DropEvent, EVENT_DROP, EVENT_JOURNEY, EVENT_TCP_CONNECTION, EVENT_TCP_RETRANSMIT, FLOW_EVENTS_PERF,
    FLOW_EVENTS_RING, FlowEvent, JourneyEvent, KERNEL_EVENTS_PERF, KERNEL_EVENTS_RING, NAME_BYTES, TcpEvent,
};
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::mpsc,
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

use super::loader::EbpfError;
use crate::ebpf::config::EventTransport;

/// How events reach userspace on this kernel: what
/// [`EventTransport`] (`auto` included) comes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// BPF ring buffers (5.8+).
    RingBuffer,
    /// Per-CPU perf event arrays, from the probes built for them.
    PerfArray,
}

impl Transport {
    /// The transport `wanted` comes to on this kernel, and why, in words
    /// for the startup log.
    pub fn choose(wanted: EventTransport) -> (Transport, &'static str) {
        match wanted {
            EventTransport::Auto => match aya::sys::is_map_supported(aya::maps::MapType::RingBuf) {
                Ok(false) => (Transport::PerfArray, "this kernel has no ring buffers (before 5.8)"),
                Ok(true) => (Transport::RingBuffer, "the kernel has them (5.8+)"),
                // The probe itself failed (privileges): the loader's error will say more.
                Err(_) => (Transport::RingBuffer, "the default (the kernel could not be asked)"),
            },
            EventTransport::RingBuffer => (Transport::RingBuffer, "the config asks for them"),
            EventTransport::PerfArray => (Transport::PerfArray, "the config asks for them"),
        }
    }

    /// In words, for the startup log.
    pub fn describe(self) -> &'static str {
        match self {
            Transport::RingBuffer => "ring buffers",
            Transport::PerfArray => "perf event arrays",
        }
    }
}

/// Pages of each per-CPU perf buffer.
const PERF_PAGES: usize = 64;
/// Events handed over at once at most.
pub const EVENT_BATCH: usize = 256;

/// The two maps of one event stream: ring buffer and perf array.
#[derive(Clone, Copy, Debug)]
pub struct Stream {
    ring: &'static str,
    perf: &'static str,
}

/// New-flow and flow-end events ([`FlowEvent`]).
pub const FLOW_STREAM: Stream = Stream { ring: FLOW_EVENTS_RING, perf: FLOW_EVENTS_PERF };
/// Drop and TCP events ([`KernelEvent`]).
pub const KERNEL_STREAM: Stream = Stream { ring: KERNEL_EVENTS_RING, perf: KERNEL_EVENTS_PERF };

/// An event of the drop and TCP programs.
#[derive(Clone, Debug)]
pub enum KernelEvent {
    /// A dropped packet.
    Drop(DropEvent),
    /// A TCP retransmit, reset or closed connection.
    Tcp(TcpEvent),
    /// A followed packet's journey, ended.
    Journey(Box<JourneyEvent>),
}

fn read_pod<T: Copy>(bytes: &[u8]) -> Option<T> {
    // SAFETY: only used with `repr(C)` plain-data types; the length is checked.
    (bytes.len() >= size_of::<T>()).then(|| unsafe { bytes.as_ptr().cast::<T>().read_unaligned() })
}

/// A drop or TCP event from the bytes the kernel wrote, by its kind byte.
pub fn decode_kernel_event(bytes: &[u8]) -> Option<KernelEvent> {
    match *bytes.first()? {
        EVENT_DROP => read_pod(bytes).map(KernelEvent::Drop),
        EVENT_TCP_RETRANSMIT..=EVENT_TCP_CONNECTION => read_pod(bytes).map(KernelEvent::Tcp),
        EVENT_JOURNEY => read_pod(bytes).map(|journey| KernelEvent::Journey(Box::new(journey))),
        _ => None,
    }
}

/// Counters of events that never reached their handler.
#[derive(Clone)]
pub struct EventLoss {
    /// The perf buffer was full (reported by the kernel as lost samples).
    pub perf_buffer_full: Counter,
    /// An event had the wrong size.
    pub malformed: Counter,
}

impl EventLoss {
    /// Loss counters made by `lost(reason)`.
    pub fn new(lost: &dyn Fn(&str) -> Counter) -> Self {
        EventLoss { perf_buffer_full: lost("perf_buffer_full"), malformed: lost("malformed") }
    }
}

/// A flow event from the bytes the kernel wrote, if there are enough of them.
pub fn decode(bytes: &[u8]) -> Option<FlowEvent> {
    read_pod(bytes)
}

/// Decodes one event into `batch`, counting what does not decode.
fn decode_into<T>(bytes: &[u8], decode: fn(&[u8]) -> Option<T>, batch: &mut Vec<T>, loss: &EventLoss) {
    match decode(bytes) {
        Some(event) => batch.push(event),
        None => loss.malformed.inc(),
    }
}

/// Up to [`EVENT_BATCH`] events off the ring buffer, decoded.
fn take_batch<T>(ring: &mut RingBuf<MapData>, decode: fn(&[u8]) -> Option<T>, loss: &EventLoss) -> Vec<T> {
    let mut batch = Vec::with_capacity(EVENT_BATCH);
    while batch.len() < EVENT_BATCH
        && let Some(item) = ring.next()
    {
        decode_into(&item, decode, &mut batch, loss);
    }
    batch
}

/// Hands `batch` over once the task has room for it; false when the task
/// is gone or `stop` came first.
async fn hand_over<T>(batch: Vec<T>, events: &mpsc::Sender<Vec<T>>, stop: &CancellationToken) -> bool {
    tokio::select! {
        permit = events.reserve() => match permit {
            Ok(permit) => {
                permit.send(batch);
                true
            }
            Err(_) => false,
        },
        () = stop.cancelled() => false,
    }
}

/// Starts the readers of `stream` on `transport`, handing what `decode`
/// makes of the events to `events` in batches of up to [`EVENT_BATCH`].
pub fn start<T: Send + 'static>(
    ebpf: &mut Ebpf,
    stream: Stream,
    transport: Transport,
    decode: fn(&[u8]) -> Option<T>,
    events: mpsc::Sender<Vec<T>>,
    loss: EventLoss,
    stop: CancellationToken,
) -> Result<Vec<JoinHandle<()>>, EbpfError> {
    let map_error = |map: &'static str| move |message: String| EbpfError::Map { map, message };
    match transport {
        Transport::RingBuffer => {
            let name = stream.ring;
            let map = ebpf.take_map(name).ok_or_else(|| map_error(name)("missing".into()))?;
            let ring = RingBuf::try_from(map).map_err(|e| map_error(name)(e.to_string()))?;
            // SAFETY: the ring buffer owns its map fd, which stays open and
            // the same for as long as the AsyncFd owns the ring buffer.
            let mut fd = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
                .map_err(|e| map_error(name)(e.to_string()))?;
            Ok(vec![tokio::spawn(async move {
                loop {
                    let mut guard = tokio::select! {
                        guard = fd.readable_mut() => match guard {
                            Ok(guard) => guard,
                            Err(err) => {
                                tracing::error!(map = name, error = %err, "Ring buffer poll failed; its events stop.");
                                return;
                            }
                        },
                        () = stop.cancelled() => return,
                    };
                    loop {
                        let mut batch = take_batch(guard.get_inner_mut(), decode, &loss);
                        if batch.is_empty() {
                            guard.clear_ready();
                            // The kernel wakes a reader only for an event written
                            // once it had read everything: one written between the
                            // last read and the clear woke no one, so look again
                            // before sleeping.
                            batch = take_batch(guard.get_inner_mut(), decode, &loss);
                            if batch.is_empty() {
                                break;
                            }
                        }
                        if !hand_over(batch, &events, &stop).await {
                            return;
                        }
                    }
                }
            })])
        }
        Transport::PerfArray => {
            let name = stream.perf;
            let map = ebpf.take_map(name).ok_or_else(|| map_error(name)("missing".into()))?;
            let mut perf: PerfEventArray<MapData> =
                PerfEventArray::try_from(map).map_err(|e| map_error(name)(e.to_string()))?;
            let cpus = online_cpus().map_err(|(what, e)| map_error(name)(format!("{what}: {e}")))?;
            let mut readers = Vec::with_capacity(cpus.len());
            for cpu in cpus {
                let buffer =
                    perf.open(cpu, Some(PERF_PAGES)).map_err(|e| map_error(name)(format!("CPU {cpu}: {e}")))?;
                // SAFETY: the buffer owns its perf event fd, which stays open
                // and the same for as long as the AsyncFd owns the buffer.
                let mut fd = unsafe { AsyncFd::register_with_interest(buffer, Interest::READABLE) }
                    .map_err(|e| map_error(name)(e.to_string()))?;
                let (events, loss, stop) = (events.clone(), loss.clone(), stop.clone());
                readers.push(tokio::spawn(async move {
                    let mut sample = Vec::with_capacity(size_of::<TcpEvent>() + 8);
                    loop {
                        let mut guard = tokio::select! {
                            guard = fd.readable_mut() => match guard {
                                Ok(guard) => guard,
                                Err(err) => {
                                    tracing::error!(map = name, cpu, error = %err, "Perf buffer poll failed; its events stop.");
                                    return;
                                }
                            },
                            () = stop.cancelled() => return,
                        };
                        // Everything there now: a perf buffer holds a bounded number of events.
                        let mut decoded = Vec::new();
                        guard.get_inner_mut().for_each(|event| match event {
                            PerfEvent::Sample { head, tail } => {
                                sample.clear();
                                sample.extend_from_slice(head);
                                sample.extend_from_slice(tail);
                                decode_into(&sample, decode, &mut decoded, &loss);
                            }
                            PerfEvent::Lost { count } => loss.perf_buffer_full.add(count),
                        });
                        guard.clear_ready();
                        while !decoded.is_empty() {
                            let rest = decoded.split_off(decoded.len().min(EVENT_BATCH));
                            if !hand_over(std::mem::replace(&mut decoded, rest), &events, &stop).await {
                                return;
                            }
                        }
                    }
                }));
            }
            Ok(readers)
        }
    }
}

/// A NUL-padded kernel name.
pub fn c_name(bytes: &[u8; NAME_BYTES]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}
