//! The running graph: receivers → pipelines (processor chains) → exporter
//! queues, all joined by bounded queues so a slow backend pushes back instead
//! of growing memory.
//!
//! Shutdown runs front to back: receivers stop taking data, each pipeline
//! drains its input and flushes its processors, then each exporter drains its
//! queue until the deadline; what is left then is dropped and counted.

mod exporter_queue;
mod pipeline;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use tokio::{task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;

use self::{exporter_queue::ExporterQueue, pipeline::PipelineRunner};
use crate::{
    component::{
        ComponentError, ComponentId, Exporter, ExporterContext, PipelineId, Processor, ProcessorContext, Receiver,
        ReceiverContext,
    },
    export::{QueueConfig, RetryConfig},
    intake::{Admission, PipelineInput, RECEIVER_PUSH_WAIT, ReceiverOutput},
    self_telemetry::MetricsRegistry,
};

/// An exporter with its queue and retry settings.
pub struct ExporterSpec {
    /// The exporter.
    pub exporter: Arc<dyn Exporter>,
    /// Its sending queue.
    pub queue: QueueConfig,
    /// Its retry policy.
    pub retry: RetryConfig,
}

/// A pipeline with its own processor instances.
pub struct PipelineSpec {
    /// The pipeline id.
    pub id: PipelineId,
    /// Receivers feeding it.
    pub receivers: Vec<ComponentId>,
    /// Its processors, in order.
    pub processors: Vec<(ComponentId, Box<dyn Processor>)>,
    /// Exporters it feeds.
    pub exporters: Vec<ComponentId>,
}

/// Everything needed to start the graph; built by the binary from the config.
pub struct TopologySpec {
    /// Every receiver used by a pipeline, one instance each.
    pub receivers: BTreeMap<ComponentId, Box<dyn Receiver>>,
    /// Every exporter used by a pipeline, one instance each.
    pub exporters: BTreeMap<ComponentId, ExporterSpec>,
    /// The pipelines.
    pub pipelines: Vec<PipelineSpec>,
}

/// Drops what exporters started before a later component failed to start.
async fn stop_now(exporters: &mut BTreeMap<ComponentId, ExporterQueue>) {
    for queue in exporters.values_mut() {
        queue.shutdown(Instant::now()).await;
    }
}

/// The started graph.
pub struct Topology {
    receivers: Vec<(ComponentId, Box<dyn Receiver>)>,
    pipelines: Vec<JoinHandle<()>>,
    pipeline_stop: CancellationToken,
    exporters: Vec<ExporterQueue>,
}

impl Topology {
    /// Starts exporters, processors, pipelines and then receivers. If one
    /// cannot start, everything started so far is shut down and the error
    /// returned.
    pub async fn start(spec: TopologySpec, registry: Arc<MetricsRegistry>) -> Result<Self, ComponentError> {
        let mut exporters: BTreeMap<ComponentId, ExporterQueue> = BTreeMap::new();
        for (id, e) in spec.exporters {
            let ctx = ExporterContext { id: id.clone(), metrics: registry.clone() };
            if let Err(err) = e.exporter.start(ctx).await {
                stop_now(&mut exporters).await;
                return Err(err);
            }
            let queue = ExporterQueue::start(id.clone(), e.exporter, &e.queue, &e.retry, &registry);
            exporters.insert(id, queue);
        }

        let pipeline_stop = CancellationToken::new();
        let mut inputs: BTreeMap<ComponentId, Vec<PipelineInput>> = BTreeMap::new();
        let mut pipelines = Vec::new();
        let mut specs = spec.pipelines;
        for pipeline in &mut specs {
            for (id, processor) in &mut pipeline.processors {
                let ctx = ProcessorContext { id: id.clone(), metrics: registry.clone() };
                if let Err(err) = processor.start(ctx).await {
                    stop_now(&mut exporters).await;
                    return Err(err);
                }
            }
        }
        for pipeline in specs {
            let admissions: Vec<Arc<dyn Admission>> =
                pipeline.processors.iter().filter_map(|(_, processor)| processor.admission()).collect();
            let (input, receiver) = PipelineInput::new(pipeline.id.signal(), admissions);
            for receiver_id in &pipeline.receivers {
                inputs.entry(receiver_id.clone()).or_default().push(input.clone());
            }
            let inlets =
                pipeline.exporters.iter().filter_map(|id| exporters.get(id)).map(ExporterQueue::inlet).collect();
            let runner = PipelineRunner::new(
                pipeline.id,
                receiver,
                pipeline.processors,
                inlets,
                pipeline_stop.clone(),
                &registry,
            );
            pipelines.push(tokio::spawn(runner.run()));
        }

        let mut topology =
            Topology { receivers: Vec::new(), pipelines, pipeline_stop, exporters: exporters.into_values().collect() };
        for (id, mut receiver) in spec.receivers {
            let output = ReceiverOutput::new(inputs.remove(&id).unwrap_or_default(), RECEIVER_PUSH_WAIT);
            let ctx = ReceiverContext { id: id.clone(), output, metrics: registry.clone() };
            if let Err(err) = receiver.start(ctx).await {
                topology.shutdown(Duration::from_secs(5)).await;
                return Err(err);
            }
            tracing::info!(receiver = %id, "Receiver started.");
            topology.receivers.push((id, receiver));
        }
        Ok(topology)
    }

    /// Stops intake, flushes every pipeline and drains exporter queues, giving
    /// up on what is left after `timeout`. Safe to call twice.
    pub async fn shutdown(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for (id, receiver) in &mut self.receivers {
            if tokio::time::timeout_at(deadline, receiver.shutdown()).await.is_err() {
                tracing::warn!(receiver = %id, "Receiver did not stop before the shutdown deadline.");
            }
        }
        self.receivers.clear();
        self.pipeline_stop.cancel();
        let pipelines = std::mem::take(&mut self.pipelines);
        let flushed = async {
            for pipeline in pipelines {
                let _ = pipeline.await;
            }
        };
        tokio::pin!(flushed);
        if tokio::time::timeout_at(deadline, &mut flushed).await.is_err() {
            // Pipelines wait for room in full queues (a backend is down):
            // what they hold is dropped and counted.
            tracing::warn!("Shutdown deadline reached while pipelines were flushing; dropping what they hold.");
            for exporter in &self.exporters {
                exporter.stop_now();
            }
            flushed.await;
        }
        for exporter in &mut self.exporters {
            exporter.shutdown(deadline).await;
        }
        let dropped: u64 = self.exporters.iter().map(ExporterQueue::dropped_at_shutdown).sum();
        if dropped > 0 {
            tracing::warn!(
                items = dropped,
                "Shutdown dropped items it could not send before the deadline (flowtel_exporter_dropped_items_total, reason shutdown)."
            );
        }
        self.exporters.clear();
    }
}
