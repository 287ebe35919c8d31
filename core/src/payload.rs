//! The data that flows between components: OTLP itself.
//!
//! A [`Payload`] holds the resource-level OTLP messages of one signal, exactly
//! as the OTLP export requests carry them, so nothing is converted between a
//! receiver, the processors and the exporters.

use std::fmt;

use opentelemetry_proto::tonic::{
    common::v1::KeyValue,
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    metrics::v1::{Metric, ResourceMetrics, ScopeMetrics, metric::Data},
    trace::v1::{ResourceSpans, ScopeSpans, Span},
};

/// The three OTLP signals a pipeline can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Signal {
    /// Log records.
    Logs,
    /// Metric data points.
    Metrics,
    /// Spans.
    Traces,
}

impl Signal {
    /// All signals, in a stable order.
    pub const ALL: [Signal; 3] = [Signal::Logs, Signal::Metrics, Signal::Traces];

    /// The lower-case name used in pipeline ids and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Logs => "logs",
            Signal::Metrics => "metrics",
            Signal::Traces => "traces",
        }
    }

    /// What one item of this signal is called, for messages.
    pub fn item_name(self) -> &'static str {
        match self {
            Signal::Logs => "log records",
            Signal::Metrics => "metric points",
            Signal::Traces => "spans",
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who handed a payload to flowtel, as far as a receiver knows: what the
/// collector calls client info. Processors that associate data with its
/// sender (`k8s_attributes`' `from: connection`) read it; it travels with a
/// payload until a processor merges payloads (`batch`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Client {
    /// The peer address of the connection the data arrived on.
    pub address: Option<std::net::IpAddr>,
}

/// A payload with the client that sent it: what a pipeline's queue carries.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    /// The data.
    pub payload: Payload,
    /// Who sent it.
    pub client: Client,
}

/// Calls `visit` with the attributes of each of a metric's data points.
fn for_each_point_attributes(metric: &mut Metric, mut visit: impl FnMut(&mut Vec<KeyValue>)) {
    match &mut metric.data {
        Some(Data::Sum(d)) => d.data_points.iter_mut().for_each(|p| visit(&mut p.attributes)),
        Some(Data::Gauge(d)) => d.data_points.iter_mut().for_each(|p| visit(&mut p.attributes)),
        Some(Data::Histogram(d)) => d.data_points.iter_mut().for_each(|p| visit(&mut p.attributes)),
        Some(Data::ExponentialHistogram(d)) => d.data_points.iter_mut().for_each(|p| visit(&mut p.attributes)),
        Some(Data::Summary(d)) => d.data_points.iter_mut().for_each(|p| visit(&mut p.attributes)),
        None => {}
    }
}

mod encoded;
mod heap_size;
mod ids;

pub use encoded::Encoded;
pub use heap_size::HeapSize;
pub use ids::MalformedIds;

/// One unit of telemetry moving through a pipeline.
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    /// Logs, grouped by resource.
    Logs(Vec<ResourceLogs>),
    /// Metrics, grouped by resource.
    Metrics(Vec<ResourceMetrics>),
    /// Traces, grouped by resource.
    Traces(Vec<ResourceSpans>),
    /// Logs or traces still in their protobuf encoding, where nothing on
    /// their way reads the records (see [`Encoded`]). Components that read
    /// records never get one; [`Payload::decoded`] turns it into the tree.
    Encoded(Encoded),
}

impl Payload {
    /// The payload as the OTLP tree: an encoded one decoded, others as they are.
    pub fn decoded(self) -> Payload {
        match self {
            Payload::Encoded(encoded) => encoded.decode(),
            tree => tree,
        }
    }

    /// Decodes an encoded payload in place.
    pub fn decode_in_place(&mut self) {
        if let Payload::Encoded(encoded) = self {
            *self = encoded.decode();
        }
    }

    /// Calls `visit` with the attributes of each log record and each metric
    /// data point (spans are not visited): where the receivers put a flow's
    /// 5-tuple.
    pub fn for_each_record_attributes(&mut self, mut visit: impl FnMut(&mut Vec<KeyValue>)) {
        self.decode_in_place();
        match self {
            Payload::Logs(resources) => {
                for record in resources.iter_mut().flat_map(|r| &mut r.scope_logs).flat_map(|s| &mut s.log_records) {
                    visit(&mut record.attributes);
                }
            }
            Payload::Metrics(resources) => {
                for metric in resources.iter_mut().flat_map(|r| &mut r.scope_metrics).flat_map(|s| &mut s.metrics) {
                    for_each_point_attributes(metric, &mut visit);
                }
            }
            Payload::Traces(_) | Payload::Encoded(_) => {}
        }
    }

    /// Heap bytes the payload holds (see [`HeapSize`]).
    pub fn heap_size(&self) -> usize {
        match self {
            Payload::Logs(v) => v.heap_size(),
            Payload::Metrics(v) => v.heap_size(),
            Payload::Traces(v) => v.heap_size(),
            Payload::Encoded(encoded) => encoded.bytes().len(),
        }
    }

    /// An empty payload of the given signal.
    pub fn empty(signal: Signal) -> Self {
        match signal {
            Signal::Logs => Payload::Logs(Vec::new()),
            Signal::Metrics => Payload::Metrics(Vec::new()),
            Signal::Traces => Payload::Traces(Vec::new()),
        }
    }

    /// Which signal this payload carries.
    pub fn signal(&self) -> Signal {
        match self {
            Payload::Logs(_) => Signal::Logs,
            Payload::Metrics(_) => Signal::Metrics,
            Payload::Traces(_) => Signal::Traces,
            Payload::Encoded(encoded) => encoded.signal(),
        }
    }

    /// Number of items: log records, metric data points or spans. This is the
    /// unit every counter in flowtel's own metrics uses.
    pub fn item_count(&self) -> usize {
        match self {
            Payload::Logs(v) => v.iter().map(Splittable::items).sum(),
            Payload::Metrics(v) => v.iter().map(Splittable::items).sum(),
            Payload::Traces(v) => v.iter().map(Splittable::items).sum(),
            Payload::Encoded(encoded) => encoded.items(),
        }
    }

    /// True when the payload holds no item.
    pub fn is_empty(&self) -> bool {
        self.item_count() == 0
    }

    /// Appends another payload of the same signal. A payload of another
    /// signal is handed back unchanged.
    pub fn append(&mut self, other: Payload) -> Result<(), Payload> {
        if self.signal() != other.signal() {
            return Err(other);
        }
        // Encoded requests join as bytes; joined with a tree, both are trees.
        let other = match (&mut *self, other) {
            (Payload::Encoded(a), Payload::Encoded(b)) => {
                a.append(b);
                return Ok(());
            }
            (Payload::Encoded(_), other) => {
                self.decode_in_place();
                other
            }
            (_, other) => other.decoded(),
        };
        match (self, other) {
            (Payload::Logs(a), Payload::Logs(b)) => a.extend(b),
            (Payload::Metrics(a), Payload::Metrics(b)) => a.extend(b),
            (Payload::Traces(a), Payload::Traces(b)) => a.extend(b),
            (_, other) => return Err(other),
        }
        Ok(())
    }

    /// Removes the metrics, scopes and resources left without items (after
    /// a processor dropped some), so no empty envelope travels on.
    pub fn prune_empty(&mut self) {
        match self {
            // Checked requests hold no empty envelope a processor left.
            Payload::Encoded(_) => {}
            Payload::Logs(resources) => {
                for resource in resources.iter_mut() {
                    resource.scope_logs.retain(|scope| !scope.log_records.is_empty());
                }
                resources.retain(|resource| !resource.scope_logs.is_empty());
            }
            Payload::Metrics(resources) => {
                for resource in resources.iter_mut() {
                    for scope in &mut resource.scope_metrics {
                        scope.metrics.retain(|metric| metric.items() > 0);
                    }
                    resource.scope_metrics.retain(|scope| !scope.metrics.is_empty());
                }
                resources.retain(|resource| !resource.scope_metrics.is_empty());
            }
            Payload::Traces(resources) => {
                for resource in resources.iter_mut() {
                    resource.scope_spans.retain(|scope| !scope.spans.is_empty());
                }
                resources.retain(|resource| !resource.scope_spans.is_empty());
            }
        }
    }

    /// Moves the first `n` items out into a new payload, splitting resources,
    /// scopes and metrics where the boundary falls inside one. Resource and
    /// scope envelopes are copied onto both halves.
    pub fn split_front(&mut self, n: usize) -> Payload {
        self.decode_in_place();
        match self {
            Payload::Logs(v) => Payload::Logs(take_front(v, n)),
            Payload::Metrics(v) => Payload::Metrics(take_front(v, n)),
            Payload::Traces(v) => Payload::Traces(take_front(v, n)),
            Payload::Encoded(_) => Payload::empty(self.signal()),
        }
    }
}

/// A level of the OTLP tree that holds countable items and can be cut in two.
trait Splittable: Sized {
    /// Items below this node.
    fn items(&self) -> usize;
    /// Moves the first `n` items (0 < n < items) into a new node with the same envelope.
    fn split_front(&mut self, n: usize) -> Self;
}

/// Moves the first `n` items of a list of nodes into a new list.
fn take_front<T: Splittable>(nodes: &mut Vec<T>, n: usize) -> Vec<T> {
    let mut taken = 0;
    let mut whole = 0;
    for node in nodes.iter() {
        let count = node.items();
        if taken + count > n {
            break;
        }
        taken += count;
        whole += 1;
    }
    let mut out: Vec<T> = nodes.drain(..whole).collect();
    if taken < n
        && let Some(first) = nodes.first_mut()
    {
        out.push(first.split_front(n - taken));
    }
    out
}

/// Implements [`Splittable`] for an envelope whose children are themselves splittable.
macro_rules! splittable_envelope {
    ($ty:ty, $children:ident, { $($copy:ident),* }) => {
        impl Splittable for $ty {
            fn items(&self) -> usize {
                self.$children.iter().map(Splittable::items).sum()
            }
            fn split_front(&mut self, n: usize) -> Self {
                Self {
                    $($copy: self.$copy.clone(),)*
                    $children: take_front(&mut self.$children, n),
                }
            }
        }
    };
}

/// Implements [`Splittable`] for a scope whose children are leaf items.
macro_rules! splittable_scope {
    ($ty:ty, $children:ident, { $($copy:ident),* }) => {
        impl Splittable for $ty {
            fn items(&self) -> usize {
                self.$children.len()
            }
            fn split_front(&mut self, n: usize) -> Self {
                Self {
                    $($copy: self.$copy.clone(),)*
                    $children: self.$children.drain(..n).collect(),
                }
            }
        }
    };
}

splittable_envelope!(ResourceLogs, scope_logs, { resource, schema_url });
splittable_envelope!(ResourceMetrics, scope_metrics, { resource, schema_url });
splittable_envelope!(ResourceSpans, scope_spans, { resource, schema_url });
splittable_envelope!(ScopeMetrics, metrics, { scope, schema_url });
splittable_scope!(ScopeLogs, log_records, { scope, schema_url });
splittable_scope!(ScopeSpans, spans, { scope, schema_url });

impl Splittable for Metric {
    fn items(&self) -> usize {
        match &self.data {
            Some(Data::Gauge(g)) => g.data_points.len(),
            Some(Data::Sum(s)) => s.data_points.len(),
            Some(Data::Histogram(h)) => h.data_points.len(),
            Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
            Some(Data::Summary(s)) => s.data_points.len(),
            None => 0,
        }
    }

    fn split_front(&mut self, n: usize) -> Self {
        let data = self.data.as_mut().map(|data| match data {
            Data::Gauge(g) => Data::Gauge(opentelemetry_proto::tonic::metrics::v1::Gauge {
                data_points: g.data_points.drain(..n).collect(),
            }),
            Data::Sum(s) => Data::Sum(opentelemetry_proto::tonic::metrics::v1::Sum {
                data_points: s.data_points.drain(..n).collect(),
                aggregation_temporality: s.aggregation_temporality,
                is_monotonic: s.is_monotonic,
            }),
            Data::Histogram(h) => Data::Histogram(opentelemetry_proto::tonic::metrics::v1::Histogram {
                data_points: h.data_points.drain(..n).collect(),
                aggregation_temporality: h.aggregation_temporality,
            }),
            Data::ExponentialHistogram(h) => {
                Data::ExponentialHistogram(opentelemetry_proto::tonic::metrics::v1::ExponentialHistogram {
                    data_points: h.data_points.drain(..n).collect(),
                    aggregation_temporality: h.aggregation_temporality,
                })
            }
            Data::Summary(s) => Data::Summary(opentelemetry_proto::tonic::metrics::v1::Summary {
                data_points: s.data_points.drain(..n).collect(),
            }),
        });
        Metric {
            name: self.name.clone(),
            description: self.description.clone(),
            unit: self.unit.clone(),
            metadata: self.metadata.clone(),
            data,
        }
    }
}

// Leaf items are never split; these impls let `Payload::item_count` treat
// every level alike.
impl Splittable for LogRecord {
    fn items(&self) -> usize {
        1
    }
    fn split_front(&mut self, _n: usize) -> Self {
        self.clone()
    }
}

impl Splittable for Span {
    fn items(&self) -> usize {
        1
    }
    fn split_front(&mut self, _n: usize) -> Self {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::{
        common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value},
        metrics::v1::{NumberDataPoint, Sum},
        resource::v1::Resource,
    };

    use super::*;

    fn resource(name: &str) -> Option<Resource> {
        Some(Resource {
            attributes: vec![KeyValue {
                key: "service.name".into(),
                value: Some(AnyValue { value: Some(any_value::Value::StringValue(name.into())) }),
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    fn logs(resources: &[(&str, usize)]) -> Payload {
        Payload::Logs(
            resources
                .iter()
                .map(|(name, records)| ResourceLogs {
                    resource: resource(name),
                    scope_logs: vec![ScopeLogs {
                        scope: Some(InstrumentationScope { name: "scope".into(), ..Default::default() }),
                        log_records: (0..*records)
                            .map(|i| LogRecord { time_unix_nano: i as u64, ..Default::default() })
                            .collect(),
                        schema_url: String::new(),
                    }],
                    schema_url: String::new(),
                })
                .collect(),
        )
    }

    #[test]
    fn split_inside_a_resource_copies_the_envelope() {
        let mut payload = logs(&[("a", 3), ("b", 4)]);
        let front = payload.split_front(5);
        assert_eq!(front.item_count(), 5);
        assert_eq!(payload.item_count(), 2);
        let (Payload::Logs(front), Payload::Logs(rest)) = (front, payload) else {
            panic!("signal changed");
        };
        assert_eq!(front.len(), 2);
        assert_eq!(front[1].resource, resource("b"));
        assert_eq!(rest[0].resource, resource("b"));
        assert_eq!(rest[0].scope_logs[0].scope.as_ref().map(|s| s.name.as_str()), Some("scope"));
        // Order is kept across the cut.
        assert_eq!(rest[0].scope_logs[0].log_records[0].time_unix_nano, 2);
    }

    #[test]
    fn split_larger_than_payload_takes_everything() {
        let mut payload = logs(&[("a", 3)]);
        let front = payload.split_front(10);
        assert_eq!(front.item_count(), 3);
        assert!(payload.is_empty());
    }

    #[test]
    fn metrics_split_inside_a_metric_keeps_its_kind() {
        let points = (0..4).map(|i| NumberDataPoint { time_unix_nano: i, ..Default::default() }).collect();
        let mut payload = Payload::Metrics(vec![ResourceMetrics {
            resource: resource("m"),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "network.flow.bytes".into(),
                    unit: "By".into(),
                    data: Some(Data::Sum(Sum { data_points: points, aggregation_temporality: 2, is_monotonic: true })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            schema_url: String::new(),
        }]);
        assert_eq!(payload.item_count(), 4);
        let front = payload.split_front(1);
        assert_eq!((front.item_count(), payload.item_count()), (1, 3));
        let Payload::Metrics(front) = front else { panic!("signal changed") };
        let metric = &front[0].scope_metrics[0].metrics[0];
        assert_eq!(metric.name, "network.flow.bytes");
        assert!(matches!(&metric.data, Some(Data::Sum(s)) if s.is_monotonic && s.aggregation_temporality == 2));
    }

    #[test]
    fn pruning_removes_only_what_holds_no_item() {
        let mut payload = logs(&[("a", 2), ("b", 0), ("c", 1)]);
        payload.prune_empty();
        let Payload::Logs(resources) = &payload else { panic!() };
        assert_eq!(resources.len(), 2);
        assert_eq!(payload.item_count(), 3);
    }

    #[test]
    fn append_refuses_another_signal() {
        let mut payload = logs(&[("a", 1)]);
        assert!(payload.append(Payload::empty(Signal::Traces)).is_err());
        assert!(payload.append(logs(&[("b", 2)])).is_ok());
        assert_eq!(payload.item_count(), 3);
    }
}
