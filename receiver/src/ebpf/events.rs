//! Readers of the kernel's flow events: the BPF ring buffer, or one perf
//! buffer per CPU. They never make the kernel wait: an event that finds the
//! userspace queue full is dropped and counted.

use std::mem::size_of;

use aya::{
    Ebpf,
    maps::{MapData, PerfEventArray, RingBuf, perf::PerfEvent},
    util::online_cpus,
};
use flowtel_core::self_telemetry::Counter;
use flowtel_ebpf_common::{FLOW_EVENTS_PERF, FLOW_EVENTS_RING, FlowEvent};
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::mpsc,
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

use super::{config::EventTransport, loader::EbpfError};

/// Pages of each per-CPU perf buffer.
const PERF_PAGES: usize = 64;

/// Counters of events that never reached the flow table.
#[derive(Clone)]
pub struct EventLoss {
    /// The perf buffer was full (reported by the kernel as lost samples).
    pub perf_buffer_full: Counter,
    /// The queue between the readers and the flow table was full.
    pub userspace_queue_full: Counter,
    /// An event had the wrong size.
    pub malformed: Counter,
}

/// A flow event from the bytes the kernel wrote, if there are enough of them.
pub fn decode(bytes: &[u8]) -> Option<FlowEvent> {
    // SAFETY: `FlowEvent` is plain data and the length is checked.
    (bytes.len() >= size_of::<FlowEvent>()).then(|| unsafe { bytes.as_ptr().cast::<FlowEvent>().read_unaligned() })
}

fn forward(bytes: &[u8], events: &mpsc::Sender<FlowEvent>, loss: &EventLoss) {
    match decode(bytes) {
        Some(event) => {
            if events.try_send(event).is_err() {
                loss.userspace_queue_full.inc();
            }
        }
        None => loss.malformed.inc(),
    }
}

/// Starts the readers of `transport`, forwarding events to `events`.
pub fn start(
    ebpf: &mut Ebpf,
    transport: EventTransport,
    events: mpsc::Sender<FlowEvent>,
    loss: EventLoss,
    stop: CancellationToken,
) -> Result<Vec<JoinHandle<()>>, EbpfError> {
    let map_error = |map: &'static str| move |message: String| EbpfError::Map { map, message };
    match transport {
        EventTransport::RingBuffer => {
            let map = ebpf.take_map(FLOW_EVENTS_RING).ok_or_else(|| map_error(FLOW_EVENTS_RING)("missing".into()))?;
            let ring = RingBuf::try_from(map).map_err(|e| map_error(FLOW_EVENTS_RING)(e.to_string()))?;
            // SAFETY: the ring buffer owns its map fd, which stays open and
            // the same for as long as the AsyncFd owns the ring buffer.
            let mut fd = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
                .map_err(|e| map_error(FLOW_EVENTS_RING)(e.to_string()))?;
            Ok(vec![tokio::spawn(async move {
                loop {
                    let mut guard = tokio::select! {
                        guard = fd.readable_mut() => match guard {
                            Ok(guard) => guard,
                            Err(err) => {
                                tracing::error!(error = %err, "Ring buffer poll failed; flow events stop.");
                                return;
                            }
                        },
                        () = stop.cancelled() => return,
                    };
                    let ring = guard.get_inner_mut();
                    while let Some(item) = ring.next() {
                        forward(&item, &events, &loss);
                    }
                    guard.clear_ready();
                }
            })])
        }
        EventTransport::PerfArray => {
            let map = ebpf.take_map(FLOW_EVENTS_PERF).ok_or_else(|| map_error(FLOW_EVENTS_PERF)("missing".into()))?;
            let mut perf: PerfEventArray<MapData> =
                PerfEventArray::try_from(map).map_err(|e| map_error(FLOW_EVENTS_PERF)(e.to_string()))?;
            let cpus = online_cpus().map_err(|(what, e)| map_error(FLOW_EVENTS_PERF)(format!("{what}: {e}")))?;
            let mut readers = Vec::with_capacity(cpus.len());
            for cpu in cpus {
                let buffer = perf
                    .open(cpu, Some(PERF_PAGES))
                    .map_err(|e| map_error(FLOW_EVENTS_PERF)(format!("CPU {cpu}: {e}")))?;
                // SAFETY: the buffer owns its perf event fd, which stays open
                // and the same for as long as the AsyncFd owns the buffer.
                let mut fd = unsafe { AsyncFd::register_with_interest(buffer, Interest::READABLE) }
                    .map_err(|e| map_error(FLOW_EVENTS_PERF)(e.to_string()))?;
                let (events, loss, stop) = (events.clone(), loss.clone(), stop.clone());
                readers.push(tokio::spawn(async move {
                    let mut sample = Vec::with_capacity(size_of::<FlowEvent>() + 8);
                    loop {
                        let mut guard = tokio::select! {
                            guard = fd.readable_mut() => match guard {
                                Ok(guard) => guard,
                                Err(err) => {
                                    tracing::error!(cpu, error = %err, "Perf buffer poll failed; flow events stop.");
                                    return;
                                }
                            },
                            () = stop.cancelled() => return,
                        };
                        guard.get_inner_mut().for_each(|event| match event {
                            PerfEvent::Sample { head, tail } => {
                                sample.clear();
                                sample.extend_from_slice(head);
                                sample.extend_from_slice(tail);
                                forward(&sample, &events, &loss);
                            }
                            PerfEvent::Lost { count } => loss.perf_buffer_full.add(count),
                        });
                        guard.clear_ready();
                    }
                }));
            }
            Ok(readers)
        }
    }
}
