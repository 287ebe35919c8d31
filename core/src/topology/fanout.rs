//! How a receiver hands data to every pipeline that names it.

use std::{sync::Arc, time::Duration};

use tokio::sync::mpsc;

use crate::payload::{Client, Delivery, Payload, Signal};

/// Why a receiver's data was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// A pipeline stayed full for the whole wait: the sender should retry later.
    #[error("pipeline is full; retry later")]
    Backpressure,
    /// flowtel is shutting down.
    #[error("flowtel is shutting down")]
    ShuttingDown,
    /// A pipeline refuses data for now (its `memory_limiter` is above its limit).
    #[error("memory limit reached; retry later")]
    MemoryLimit,
}

/// A pipeline's input as a receiver sees it: its signal, its queue and its admissions.
pub type PipelineInput = (Signal, mpsc::Sender<Delivery>, Vec<Arc<dyn Admission>>);

/// A pipeline's say on whether it takes data now (a `memory_limiter`).
pub trait Admission: Send + Sync {
    /// Whether data is refused at the moment.
    fn refusing(&self) -> bool;
}

struct Targets {
    by_signal: [Vec<mpsc::Sender<Delivery>>; 3],
    admissions: [Vec<Arc<dyn Admission>>; 3],
    wait: Duration,
}

/// A receiver's handle on the pipelines it feeds. Cheap to clone.
#[derive(Clone)]
pub struct ReceiverOutput {
    targets: Arc<Targets>,
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
    pub fn new(inputs: Vec<(Signal, mpsc::Sender<Delivery>)>, wait: Duration) -> Self {
        Self::with_admissions(inputs.into_iter().map(|(signal, sender)| (signal, sender, Vec::new())).collect(), wait)
    }

    /// An output whose pipelines may refuse data through their admissions.
    pub fn with_admissions(inputs: Vec<PipelineInput>, wait: Duration) -> Self {
        let mut by_signal: [Vec<mpsc::Sender<Delivery>>; 3] = Default::default();
        let mut admissions: [Vec<Arc<dyn Admission>>; 3] = Default::default();
        for (signal, sender, gates) in inputs {
            by_signal[index(signal)].push(sender);
            admissions[index(signal)].extend(gates);
        }
        ReceiverOutput { targets: Arc::new(Targets { by_signal, admissions, wait }) }
    }

    /// Whether any pipeline takes this signal from the receiver.
    pub fn accepts(&self, signal: Signal) -> bool {
        !self.targets.by_signal[index(signal)].is_empty()
    }

    /// Hands `payload` to every pipeline of its signal, all or nothing: room
    /// is reserved in every pipeline first, so a refused push was delivered
    /// nowhere and a retry cannot duplicate data.
    pub async fn push(&self, payload: Payload) -> Result<(), PushError> {
        self.push_from(payload, Client::default()).await
    }

    /// [`ReceiverOutput::push`] for data that arrived from a known client.
    pub async fn push_from(&self, payload: Payload, client: Client) -> Result<(), PushError> {
        let senders = &self.targets.by_signal[index(payload.signal())];
        if senders.is_empty() || payload.is_empty() {
            return Ok(());
        }
        if self.targets.admissions[index(payload.signal())].iter().any(|gate| gate.refusing()) {
            return Err(PushError::MemoryLimit);
        }
        let reserve_all = async {
            let mut permits = Vec::with_capacity(senders.len());
            for sender in senders {
                permits.push(sender.reserve().await.map_err(|_| PushError::ShuttingDown)?);
            }
            Ok::<_, PushError>(permits)
        };
        let mut permits = match tokio::time::timeout(self.targets.wait, reserve_all).await {
            Ok(result) => result?,
            Err(_) => return Err(PushError::Backpressure),
        };
        let last = permits.pop();
        for permit in permits {
            permit.send(Delivery { payload: payload.clone(), client });
        }
        if let Some(permit) = last {
            permit.send(Delivery { payload, client });
        }
        Ok(())
    }
}
