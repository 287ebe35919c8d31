//! A connector's place in the graph: the exporting pipelines hand it
//! payloads on their own task, and what it makes goes to the pipelines
//! that receive from it, waiting while they are full.

use std::sync::Arc;

use crate::{
    component::{ComponentId, Connector},
    intake::ReceiverOutput,
    payload::Payload,
    receipt::{Receipts, fail_all},
    self_telemetry::{LogLimiter, MetricsRegistry, SignalCounters},
};

/// The exporting pipelines' side of a connector.
#[derive(Clone)]
pub(crate) struct ConnectorInlet {
    id: Arc<str>,
    connector: Arc<dyn Connector>,
    output: ReceiverOutput,
    refused: SignalCounters,
    warning: Arc<LogLimiter>,
}

impl ConnectorInlet {
    pub(crate) fn new(
        id: &ComponentId,
        connector: Arc<dyn Connector>,
        output: ReceiverOutput,
        registry: &MetricsRegistry,
    ) -> Self {
        let name = id.to_string();
        let refused = SignalCounters::new(
            registry,
            "flowtel_connector_refused_items_total",
            "Items a connector made that its receiving pipelines refused (a memory_limiter above its limit, or shutdown).",
            &[("connector", name.as_str())],
        );
        ConnectorInlet { id: name.into(), connector, output, refused, warning: Arc::default() }
    }

    /// Runs the connector on `payload` and hands what it makes on, with
    /// the receipts of the data it came from.
    pub(crate) async fn send(&self, payload: Payload, receipts: &Receipts) {
        let mut made = Vec::new();
        self.connector.consume(payload, &mut made);
        for payload in made {
            let signal = payload.signal();
            let items = payload.item_count();
            if let Err(err) = self.output.push_waiting(payload, receipts.clone()).await {
                fail_all(receipts);
                self.refused.get(signal).add(items as u64);
                if self.warning.due() {
                    tracing::warn!(connector = %self.id, items, error = %err, "A receiving pipeline refused the connector's data; dropping it.");
                }
            }
        }
    }
}
