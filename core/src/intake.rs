//! How a receiver hands data to every pipeline that names it: the
//! receivers' side of the pipelines' input queues, and the say a pipeline
//! has on whether it takes data now ([`Admission`]).
//!
//! A pipeline's input queue is bounded twice: in payloads
//! ([`PIPELINE_QUEUE_CAPACITY`]) and in the memory they take
//! ([`PIPELINE_QUEUE_BYTES`], as [`Payload::heap_size`] counts it), so a
//! few huge payloads cannot fill memory where many small ones are allowed.

use std::{sync::Arc, time::Duration};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::{
    payload::{Client, Delivery, Payload, Signal},
    receipt::{Receipt, Receipts},
};

/// How long a receiver waits for room in a full pipeline before refusing.
pub const RECEIVER_PUSH_WAIT: Duration = Duration::from_millis(500);
/// How long a receiver waits for its data to be stored in persistent
/// sending queues before it tells the client to retry (the data may still
/// be stored: a retry can then duplicate it, never lose it).
pub const RECEIPT_WAIT: Duration = Duration::from_secs(20);
/// Payloads a pipeline's input queue holds before receivers feel backpressure.
pub const PIPELINE_QUEUE_CAPACITY: usize = 64;
/// Bytes of payloads a pipeline's input queue holds.
pub const PIPELINE_QUEUE_BYTES: usize = 16 << 20;
/// Room in a pipeline's input is counted in units of this many bytes.
const BYTES_PER_UNIT: usize = 1024;

/// Why a receiver's data was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// A pipeline stayed full for the whole wait: the sender should retry later.
    #[error("pipeline is full; retry later")]
    Backpressure,
    /// flowtel is shutting down.
    #[error("flowtel is shutting down")]
    ShuttingDown,
    /// A pipeline's admission refuses data for now (a `memory_limiter` above its limit).
    #[error("a pipeline refuses data for now; retry later")]
    Refused,
    /// A persistent sending queue did not store the data (full, a storage
    /// error, or not within [`RECEIPT_WAIT`]).
    #[error("the data could not be stored in a persistent sending queue; retry later")]
    NotStored,
}

/// A pipeline's say on whether it takes data now (a `memory_limiter`).
pub trait Admission: Send + Sync {
    /// Whether data is refused at the moment.
    fn refusing(&self) -> bool;
}

/// A delivery in a pipeline's input queue, holding the room it takes there.
pub struct Queued {
    /// The data and its sender.
    pub delivery: Delivery,
    /// Dropped once the data is in every persistent queue it goes to.
    pub receipts: Receipts,
    _room: OwnedSemaphorePermit,
}

/// A pipeline's input as a receiver sees it: its signal, its queue, the
/// room left in the queue, and its admissions.
#[derive(Clone)]
pub struct PipelineInput {
    signal: Signal,
    sender: mpsc::Sender<Queued>,
    room: Arc<Semaphore>,
    admissions: Vec<Arc<dyn Admission>>,
    durable: bool,
    takes_encoded: bool,
}

impl PipelineInput {
    /// A new input queue for a pipeline of `signal`, and the pipeline's end
    /// of it. `durable`: the pipeline leads to a persistent sending queue,
    /// so receivers that acknowledge their clients wait for receipts.
    pub fn new(signal: Signal, admissions: Vec<Arc<dyn Admission>>, durable: bool) -> (Self, mpsc::Receiver<Queued>) {
        let (sender, receiver) = mpsc::channel(PIPELINE_QUEUE_CAPACITY);
        let room = Arc::new(Semaphore::new(PIPELINE_QUEUE_BYTES / BYTES_PER_UNIT));
        (PipelineInput { signal, sender, room, admissions, durable, takes_encoded: false }, receiver)
    }

    /// Marks the pipeline as one whose processors and exporters all handle
    /// requests kept in their encoding ([`Payload::Encoded`]).
    pub fn taking_encoded(mut self) -> Self {
        self.takes_encoded = true;
        self
    }

    /// Waits for room for a payload of `units`: a queue slot and memory.
    async fn reserve(&self, units: u32) -> Result<(mpsc::Permit<'_, Queued>, OwnedSemaphorePermit), PushError> {
        let room = self.room.clone().acquire_many_owned(units).await.map_err(|_| PushError::ShuttingDown)?;
        let slot = self.sender.reserve().await.map_err(|_| PushError::ShuttingDown)?;
        Ok((slot, room))
    }
}

/// A receiver's handle on the pipelines it feeds. Cheap to clone.
#[derive(Clone)]
pub struct ReceiverOutput {
    inputs: Arc<[Vec<PipelineInput>; 3]>,
    wait: Duration,
}

fn index(signal: Signal) -> usize {
    match signal {
        Signal::Logs => 0,
        Signal::Metrics => 1,
        Signal::Traces => 2,
    }
}

impl ReceiverOutput {
    /// An output to the given pipeline inputs. A push waits at most `wait`
    /// for room before it reports backpressure.
    pub fn new(inputs: Vec<PipelineInput>, wait: Duration) -> Self {
        let mut by_signal: [Vec<PipelineInput>; 3] = Default::default();
        for input in inputs {
            by_signal[index(input.signal)].push(input);
        }
        ReceiverOutput { inputs: Arc::new(by_signal), wait }
    }

    /// Whether any pipeline takes this signal from the receiver.
    pub fn accepts(&self, signal: Signal) -> bool {
        !self.inputs[index(signal)].is_empty()
    }

    /// Whether every pipeline of this signal takes requests kept in their
    /// encoding, so a receiver need not decode them.
    pub fn takes_encoded(&self, signal: Signal) -> bool {
        let inputs = &self.inputs[index(signal)];
        !inputs.is_empty() && inputs.iter().all(|input| input.takes_encoded)
    }

    /// Hands `payload` to every pipeline of its signal, all or nothing: room
    /// is reserved in every pipeline first, so a refused push was delivered
    /// nowhere and a retry cannot duplicate data.
    pub async fn push(&self, payload: Payload) -> Result<(), PushError> {
        self.push_from(payload, Client::default()).await
    }

    /// [`ReceiverOutput::push`] for data that arrived from a known client.
    pub async fn push_from(&self, payload: Payload, client: Client) -> Result<(), PushError> {
        self.push_within(payload, client, Some(self.wait), Receipts::new()).await
    }

    /// [`ReceiverOutput::push_from`] for a receiver that acknowledges its
    /// client: where a pipeline of the signal ends in a persistent sending
    /// queue, it returns once the data is stored there.
    pub async fn push_stored(&self, payload: Payload, client: Client) -> Result<(), PushError> {
        if !self.inputs[index(payload.signal())].iter().any(|input| input.durable) {
            return self.push_from(payload, client).await;
        }
        let (receipt, wait) = Receipt::new();
        self.push_within(payload, client, Some(self.wait), vec![receipt]).await?;
        match tokio::time::timeout(RECEIPT_WAIT, wait.stored()).await {
            Ok(true) => Ok(()),
            Ok(false) | Err(_) => Err(PushError::NotStored),
        }
    }

    /// Hands `payload` to every pipeline of its signal, waiting as long as
    /// they are full (a connector's hand-over: the pipeline feeding it
    /// waits, as in the collector). Refused only by an admission or at
    /// shutdown. `receipts` go along to the pipelines that store data.
    pub async fn push_waiting(&self, payload: Payload, receipts: Receipts) -> Result<(), PushError> {
        self.push_within(payload, Client::default(), None, receipts).await
    }

    async fn push_within(
        &self,
        payload: Payload,
        client: Client,
        wait: Option<Duration>,
        receipts: Receipts,
    ) -> Result<(), PushError> {
        let inputs = &self.inputs[index(payload.signal())];
        if inputs.is_empty() || payload.is_empty() {
            return Ok(());
        }
        if inputs.iter().flat_map(|input| &input.admissions).any(|gate| gate.refusing()) {
            return Err(PushError::Refused);
        }
        // A payload larger than a whole queue waits for it to be empty.
        let units = u32::try_from(payload.heap_size().div_ceil(BYTES_PER_UNIT))
            .unwrap_or(u32::MAX)
            .clamp(1, (PIPELINE_QUEUE_BYTES / BYTES_PER_UNIT) as u32);
        let reserve_all = async {
            let mut reserved = Vec::with_capacity(inputs.len());
            for input in inputs {
                reserved.push(input.reserve(units).await?);
            }
            Ok::<_, PushError>(reserved)
        };
        let mut reserved = match wait {
            Some(wait) => match tokio::time::timeout(wait, reserve_all).await {
                Ok(result) => result?,
                Err(_) => return Err(PushError::Backpressure),
            },
            None => reserve_all.await?,
        };
        let receipts_for = |input: &PipelineInput| if input.durable { receipts.clone() } else { Receipts::new() };
        let last = reserved.pop();
        for ((slot, room), input) in reserved.into_iter().zip(inputs) {
            let receipts = receipts_for(input);
            slot.send(Queued { delivery: Delivery { payload: payload.clone(), client }, receipts, _room: room });
        }
        if let (Some((slot, room)), Some(input)) = (last, inputs.last()) {
            let receipts = receipts_for(input);
            slot.send(Queued { delivery: Delivery { payload, client }, receipts, _room: room });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};

    use super::*;

    fn logs(body_bytes: usize) -> Payload {
        let record = LogRecord { severity_text: "x".repeat(body_bytes), ..LogRecord::default() };
        Payload::Logs(vec![ResourceLogs {
            scope_logs: vec![ScopeLogs { log_records: vec![record], ..ScopeLogs::default() }],
            ..ResourceLogs::default()
        }])
    }

    #[tokio::test]
    async fn a_pipeline_input_is_bounded_in_bytes_as_well_as_in_payloads() {
        let (input, mut receiver) = PipelineInput::new(Signal::Logs, Vec::new(), false);
        let output = ReceiverOutput::new(vec![input], Duration::from_millis(50));
        let quarter = PIPELINE_QUEUE_BYTES / 4;
        for _ in 0..3 {
            output.push(logs(quarter)).await.unwrap();
        }
        assert_eq!(output.push(logs(quarter)).await, Err(PushError::Backpressure), "four quarters and envelopes");
        let taken = receiver.recv().await.unwrap();
        assert_eq!(output.push(logs(quarter)).await, Err(PushError::Backpressure), "room comes back when processed");
        drop(taken);
        output.push(logs(quarter)).await.unwrap();
        // One payload larger than the whole queue still gets through an empty one.
        while receiver.try_recv().is_ok() {}
        output.push(logs(PIPELINE_QUEUE_BYTES * 2)).await.unwrap();
    }
}
