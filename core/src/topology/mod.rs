//! The running graph: receivers → pipelines (processor chains) → exporter
//! queues, all joined by bounded queues so a slow backend pushes back instead
//! of growing memory.
//!
//! Connectors join pipelines: the exporting pipelines run them on their own
//! task and hand what they make to the receiving pipelines' inputs.
//!
//! Extensions start first and stop last. Shutdown runs front to back:
//! receivers stop taking data, each pipeline drains its input and flushes
//! its processors (a pipeline fed by a connector after every pipeline
//! feeding that connector), then each exporter drains its queue until the
//! deadline; what is left then is dropped and counted, except in a
//! persistent queue, which keeps it for the next start.

mod connector;
mod pipeline;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use tokio::{task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;

use self::{
    connector::ConnectorInlet,
    pipeline::{PipelineRunner, Sink},
};
use crate::{
    component::{
        ComponentError, ComponentId, ComponentKind, Connector, ConnectorContext, Exporter, ExporterContext, Extension,
        ExtensionContext, PipelineId, Processor, ProcessorContext, Receiver, ReceiverContext,
    },
    export::{QueueConfig, QueueName, RetryConfig, SendingQueue},
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
    /// Receivers and connectors feeding it.
    pub receivers: Vec<ComponentId>,
    /// Its processors, in order.
    pub processors: Vec<(ComponentId, Box<dyn Processor>)>,
    /// Exporters and connectors it feeds.
    pub exporters: Vec<ComponentId>,
}

/// Everything needed to start the graph; built by the binary from the config.
pub struct TopologySpec {
    /// The extensions `service::extensions` lists.
    pub extensions: BTreeMap<ComponentId, Arc<dyn Extension>>,
    /// Every receiver used by a pipeline, one instance each.
    pub receivers: BTreeMap<ComponentId, Box<dyn Receiver>>,
    /// Every exporter used by a pipeline, one instance each.
    pub exporters: BTreeMap<ComponentId, ExporterSpec>,
    /// Every connector used by the pipelines, one instance each.
    pub connectors: BTreeMap<ComponentId, Arc<dyn Connector>>,
    /// The pipelines; those joined by connectors form no cycle (the config
    /// check refuses one).
    pub pipelines: Vec<PipelineSpec>,
}

/// The pipelines in an order where every pipeline comes after those that
/// feed it through connectors (indices into `pipelines`); the rest of a
/// cycle, which the config check refuses, comes last.
fn upstream_first(pipelines: &[PipelineSpec]) -> Vec<usize> {
    let feeds = |from: &PipelineSpec, to: &PipelineSpec| from.exporters.iter().any(|id| to.receivers.contains(id));
    let mut order = Vec::with_capacity(pipelines.len());
    let mut placed = vec![false; pipelines.len()];
    while order.len() < pipelines.len() {
        let ready = (0..pipelines.len()).find(|&i| {
            !placed[i] && (0..pipelines.len()).all(|j| placed[j] || j == i || !feeds(&pipelines[j], &pipelines[i]))
        });
        let next = ready.unwrap_or_else(|| (0..pipelines.len()).find(|&i| !placed[i]).unwrap_or_default());
        placed[next] = true;
        order.push(next);
    }
    order
}

/// Which pipelines lead to a persistent sending queue, directly or through
/// connectors (indices into `pipelines`).
fn durable_pipelines(pipelines: &[PipelineSpec], exporters: &BTreeMap<ComponentId, ExporterSpec>) -> Vec<bool> {
    let stores = |id: &ComponentId| exporters.get(id).is_some_and(|e| e.queue.enabled && e.queue.storage.is_some());
    let mut durable: Vec<bool> = pipelines.iter().map(|p| p.exporters.iter().any(stores)).collect();
    // A connector makes its exporting pipelines durable when a pipeline it
    // feeds is; repeat until nothing changes (chains are acyclic).
    loop {
        let mut changed = false;
        for (index, pipeline) in pipelines.iter().enumerate() {
            if durable[index] {
                continue;
            }
            let feeds_durable = pipelines
                .iter()
                .enumerate()
                .any(|(other, to)| durable[other] && pipeline.exporters.iter().any(|id| to.receivers.contains(id)));
            if feeds_durable {
                durable[index] = true;
                changed = true;
            }
        }
        if !changed {
            return durable;
        }
    }
}

/// Opens an exporter's persistent queue in the storage extension its
/// `sending_queue::storage` names.
fn open_durable_queue(
    id: &ComponentId,
    queue: &QueueConfig,
    extensions: &[(ComponentId, Arc<dyn Extension>)],
    registry: &MetricsRegistry,
) -> Result<Option<Arc<dyn crate::storage::DurableQueue>>, ComponentError> {
    let Some(storage_id) = queue.storage.as_ref().filter(|_| queue.enabled) else { return Ok(None) };
    let error = |message: String| ComponentError::new(ComponentKind::Exporter, id, message);
    let storage = extensions
        .iter()
        .find(|(extension_id, _)| extension_id == storage_id)
        .and_then(|(_, extension)| extension.storage())
        .ok_or_else(|| error(format!("sending_queue::storage: `{storage_id}` is not a started storage extension")))?;
    let name = format!("exporter_{}", id.to_string().replace('/', "_"));
    storage
        .open_queue(&name, registry)
        .map(Some)
        .map_err(|err| error(format!("cannot open its persistent sending queue in `{storage_id}`: {err}")))
}

/// A running pipeline and what stops it.
struct RunningPipeline {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// Drops what exporters started before a later component failed to start.
async fn stop_now(exporters: &mut BTreeMap<ComponentId, SendingQueue>) {
    for queue in exporters.values_mut() {
        queue.shutdown(Instant::now()).await;
    }
}

/// The started graph.
pub struct Topology {
    extensions: Vec<(ComponentId, Arc<dyn Extension>)>,
    receivers: Vec<(ComponentId, Box<dyn Receiver>)>,
    /// Upstream first (see [`upstream_first`]).
    pipelines: Vec<RunningPipeline>,
    exporters: Vec<SendingQueue>,
}

/// Stops started extensions, last started first.
async fn stop_extensions(extensions: &mut Vec<(ComponentId, Arc<dyn Extension>)>) {
    while let Some((_, extension)) = extensions.pop() {
        extension.shutdown().await;
    }
}

impl Topology {
    /// Starts exporters, processors, pipelines and then receivers. If one
    /// cannot start, everything started so far is shut down and the error
    /// returned.
    pub async fn start(spec: TopologySpec, registry: Arc<MetricsRegistry>) -> Result<Self, ComponentError> {
        let mut extensions = Vec::with_capacity(spec.extensions.len());
        for (id, extension) in spec.extensions {
            if let Err(err) = extension.start(ExtensionContext { id: id.clone(), metrics: registry.clone() }).await {
                stop_extensions(&mut extensions).await;
                return Err(err);
            }
            extensions.push((id, extension));
        }
        let durable = durable_pipelines(&spec.pipelines, &spec.exporters);
        let encoded: Vec<bool> = spec
            .pipelines
            .iter()
            .map(|pipeline| {
                pipeline.processors.iter().all(|(_, processor)| processor.passes_encoded())
                    && pipeline
                        .exporters
                        .iter()
                        .all(|id| spec.exporters.get(id).is_some_and(|e| e.exporter.takes_encoded()))
            })
            .collect();
        let mut exporters: BTreeMap<ComponentId, SendingQueue> = BTreeMap::new();
        for (id, e) in spec.exporters {
            let ctx = ExporterContext { id: id.clone(), metrics: registry.clone() };
            let started = match e.exporter.start(ctx).await {
                Ok(()) => open_durable_queue(&id, &e.queue, &extensions, &registry),
                Err(err) => Err(err),
            };
            let stored = match started {
                Ok(stored) => stored,
                Err(err) => {
                    stop_now(&mut exporters).await;
                    stop_extensions(&mut extensions).await;
                    return Err(err);
                }
            };
            let name = id.to_string();
            let name = QueueName { exporter: &name, backend: None };
            let queue = SendingQueue::start(name, e.exporter, &e.queue, &e.retry, stored, &registry);
            exporters.insert(id, queue);
        }

        for (id, connector) in &spec.connectors {
            connector.start(ConnectorContext { id: id.clone(), metrics: registry.clone() });
        }
        let mut specs = spec.pipelines;
        for pipeline in &mut specs {
            for (id, processor) in &mut pipeline.processors {
                let ctx = ProcessorContext { id: id.clone(), metrics: registry.clone() };
                if let Err(err) = processor.start(ctx).await {
                    stop_now(&mut exporters).await;
                    stop_extensions(&mut extensions).await;
                    return Err(err);
                }
            }
        }

        // Every pipeline's input first: connectors hand data to them.
        let mut inputs: BTreeMap<ComponentId, Vec<PipelineInput>> = BTreeMap::new();
        let mut pipeline_inputs = Vec::with_capacity(specs.len());
        for ((pipeline, durable), encoded) in specs.iter().zip(durable).zip(encoded) {
            let admissions: Vec<Arc<dyn Admission>> =
                pipeline.processors.iter().filter_map(|(_, processor)| processor.admission()).collect();
            let (input, receiver) = PipelineInput::new(pipeline.id.signal(), admissions, durable);
            let input = if encoded { input.taking_encoded() } else { input };
            for receiver_id in &pipeline.receivers {
                inputs.entry(receiver_id.clone()).or_default().push(input.clone());
            }
            pipeline_inputs.push(receiver);
        }
        let connectors: BTreeMap<ComponentId, ConnectorInlet> = spec
            .connectors
            .into_iter()
            .map(|(id, connector)| {
                let output = ReceiverOutput::new(inputs.remove(&id).unwrap_or_default(), RECEIVER_PUSH_WAIT);
                let inlet = ConnectorInlet::new(&id, connector, output, &registry);
                (id, inlet)
            })
            .collect();

        let order = upstream_first(&specs);
        let mut runners: Vec<Option<RunningPipeline>> = Vec::with_capacity(specs.len());
        for (pipeline, receiver) in specs.into_iter().zip(pipeline_inputs) {
            let sinks = pipeline
                .exporters
                .iter()
                .filter_map(|id| match (exporters.get(id), connectors.get(id)) {
                    (Some(queue), _) => Some(Sink::Exporter(queue.inlet())),
                    (None, Some(connector)) => Some(Sink::Connector(connector.clone())),
                    (None, None) => None,
                })
                .collect();
            let stop = CancellationToken::new();
            let runner =
                PipelineRunner::new(pipeline.id, receiver, pipeline.processors, sinks, stop.clone(), &registry);
            runners.push(Some(RunningPipeline { stop, task: tokio::spawn(runner.run()) }));
        }
        let pipelines = order.into_iter().filter_map(|index| runners[index].take()).collect();

        let mut topology =
            Topology { extensions, receivers: Vec::new(), pipelines, exporters: exporters.into_values().collect() };
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
        let pipelines = std::mem::take(&mut self.pipelines);
        // A pipeline stops once those feeding it through connectors have
        // flushed into it.
        let flushed = async {
            for pipeline in pipelines {
                pipeline.stop.cancel();
                let _ = pipeline.task.await;
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
        let dropped: u64 = self.exporters.iter().map(SendingQueue::dropped_at_shutdown).sum();
        if dropped > 0 {
            tracing::warn!(
                items = dropped,
                "Shutdown dropped items it could not send before the deadline (flowtel_exporter_dropped_items_total, reason shutdown)."
            );
        }
        self.exporters.clear();
        stop_extensions(&mut self.extensions).await;
    }
}
