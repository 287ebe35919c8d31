//! One pipeline: its input queue, its processor chain, and the fan-out to
//! its exporters' queues. Runs as one task; processors run one after another
//! on it, so a chain costs no extra hand-over between processors.
//!
//! Receipts (see [`crate::receipt`]) ride along with the data: a processor
//! that holds data back keeps the receipts that reached it until it holds
//! nothing, and the rest are released once the exporters' queues took the
//! data.

use tokio::{sync::mpsc, time::Instant};
use tokio_util::sync::CancellationToken;

use super::connector::ConnectorInlet;
use crate::{
    component::{ComponentId, PipelineId, Processor},
    export::QueueInlet,
    intake::Queued,
    payload::{Client, Delivery, Payload},
    receipt::{Receipts, fail_all},
    self_telemetry::{MetricsRegistry, SignalCounters},
};

/// A processor with the counters kept around it.
struct Stage {
    processor: Box<dyn Processor>,
    incoming: SignalCounters,
    outgoing: SignalCounters,
    /// Receipts of data the processor may still hold.
    held_receipts: Receipts,
}

impl Stage {
    /// After the processor ran: it keeps the receipts while it holds data,
    /// and lets go of those it kept once it holds none.
    fn settle(&mut self, receipts: &mut Receipts) {
        if self.processor.holds_data() {
            self.held_receipts.append(receipts);
        } else {
            receipts.append(&mut self.held_receipts);
        }
    }
}

/// Where a pipeline's output goes: an exporter's queue or a connector.
#[derive(Clone)]
pub(crate) enum Sink {
    Exporter(QueueInlet),
    Connector(ConnectorInlet),
}

impl Sink {
    async fn send(&self, payload: Payload, receipts: &Receipts) {
        match self {
            Sink::Exporter(exporter) => {
                if !exporter.enqueue(payload).await {
                    fail_all(receipts);
                }
            }
            Sink::Connector(connector) => connector.send(payload, receipts).await,
        }
    }
}

pub(crate) struct PipelineRunner {
    id: PipelineId,
    input: mpsc::Receiver<Queued>,
    stages: Vec<Stage>,
    exporters: Vec<Sink>,
    stop: CancellationToken,
}

impl PipelineRunner {
    pub(crate) fn new(
        id: PipelineId,
        input: mpsc::Receiver<Queued>,
        processors: Vec<(ComponentId, Box<dyn Processor>)>,
        exporters: Vec<Sink>,
        stop: CancellationToken,
        registry: &MetricsRegistry,
    ) -> Self {
        let pipeline = id.to_string();
        let stages = processors
            .into_iter()
            .map(|(processor_id, processor)| {
                let processor_id = processor_id.to_string();
                let labels = [("processor", processor_id.as_str()), ("pipeline", pipeline.as_str())];
                Stage {
                    processor,
                    incoming: SignalCounters::new(
                        registry,
                        "flowtel_processor_incoming_items_total",
                        "Items that entered a processor.",
                        &labels,
                    ),
                    outgoing: SignalCounters::new(
                        registry,
                        "flowtel_processor_outgoing_items_total",
                        "Items a processor passed on.",
                        &labels,
                    ),
                    held_receipts: Receipts::new(),
                }
            })
            .collect();
        PipelineRunner { id, input, stages, exporters, stop }
    }

    /// Runs until stopped; then drains the input, flushes every processor in
    /// order and hands the rest to the exporters.
    pub(crate) async fn run(mut self) {
        loop {
            let deadline = self.stages.iter().filter_map(|s| s.processor.deadline()).min();
            tokio::select! {
                biased;
                () = self.stop.cancelled() => break,
                queued = self.input.recv() => match queued {
                    // The room it takes in the input is held while the processors run on it.
                    Some(Queued { delivery: Delivery { payload, client }, receipts, .. }) => {
                        self.process_from(0, vec![payload], client, receipts).await;
                    }
                    None => break,
                },
                () = sleep_until(deadline), if deadline.is_some() => self.on_deadlines().await,
            }
        }
        self.input.close();
        while let Some(Queued { delivery: Delivery { payload, client }, receipts, .. }) = self.input.recv().await {
            self.process_from(0, vec![payload], client, receipts).await;
        }
        for index in 0..self.stages.len() {
            let mut flushed = Vec::new();
            self.stages[index].processor.flush(&mut flushed);
            self.count_out(index, &flushed);
            let mut receipts = Receipts::new();
            self.stages[index].settle(&mut receipts);
            self.process_from(index + 1, flushed, Client::default(), receipts).await;
        }
        tracing::debug!(pipeline = %self.id, "Pipeline stopped.");
    }

    async fn on_deadlines(&mut self) {
        let now = Instant::now();
        for index in 0..self.stages.len() {
            if self.stages[index].processor.deadline().is_some_and(|d| d <= now) {
                let mut out = Vec::new();
                self.stages[index].processor.on_deadline(now, &mut out);
                self.count_out(index, &out);
                let mut receipts = Receipts::new();
                self.stages[index].settle(&mut receipts);
                self.process_from(index + 1, out, Client::default(), receipts).await;
            }
        }
    }

    fn count_out(&self, index: usize, out: &[Payload]) {
        for payload in out {
            self.stages[index].outgoing.get(payload.signal()).add(payload.item_count() as u64);
        }
    }

    /// Runs payloads through the stages from `start` on, then exports them.
    /// `client` sent them (the default once a processor held them back);
    /// `receipts` are released once the exporters took what is left of
    /// them (dropped items need no storing).
    async fn process_from(&mut self, start: usize, mut batch: Vec<Payload>, client: Client, mut receipts: Receipts) {
        for index in start..self.stages.len() {
            if batch.is_empty() {
                return;
            }
            let mut out = Vec::with_capacity(batch.len());
            let stage = &mut self.stages[index];
            for payload in batch {
                stage.incoming.get(payload.signal()).add(payload.item_count() as u64);
                stage.processor.process_from(payload, &client, &mut out);
            }
            stage.settle(&mut receipts);
            self.count_out(index, &out);
            batch = out;
        }
        for payload in batch {
            if payload.is_empty() {
                continue;
            }
            if let Some((last, others)) = self.exporters.split_last() {
                for exporter in others {
                    exporter.send(payload.clone(), &receipts).await;
                }
                last.send(payload, &receipts).await;
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
