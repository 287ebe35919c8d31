//! Splitting a payload among backends by its items' routing keys, keeping
//! each item under its own resource and scope.

use std::collections::BTreeMap;

use flowtel_core::{
    Payload,
    attributes::{find, flow_identity, of_resource, text},
    schema::attr,
};
use opentelemetry_proto::tonic::{
    common::v1::KeyValue,
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    metrics::v1::{Metric, ResourceMetrics, ScopeMetrics, metric::Data},
    resource::v1::Resource,
    trace::v1::{ResourceSpans, ScopeSpans},
};
use prost::Message as _;

use super::{
    config::RoutingKey,
    ring::{Ring, hash_key},
};

/// How items are keyed.
#[derive(Clone, Debug)]
pub(super) struct Router {
    pub(super) key: RoutingKey,
    pub(super) attributes: Vec<String>,
}

/// A hash of an attribute list that does not depend on the order of its
/// entries (their protobuf encodings, sorted).
fn attributes_hash(attributes: &[KeyValue], prefix: &[u8]) -> u64 {
    let mut encoded: Vec<Vec<u8>> = attributes.iter().map(KeyValue::encode_to_vec).collect();
    encoded.sort_unstable();
    let mut bytes = prefix.to_vec();
    for entry in encoded {
        bytes.extend_from_slice(&(entry.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&entry);
    }
    hash_key(&bytes)
}

/// The values of `keys` on `item`, else on the resource, joined; `None`
/// when none is present.
fn attribute_values(keys: &[String], item: &[KeyValue], resource: &[KeyValue]) -> Option<u64> {
    let mut joined = String::new();
    let mut found = false;
    for key in keys {
        if let Some(value) = find(item, key).or_else(|| find(resource, key)).and_then(text) {
            joined.push_str(&value);
            found = true;
        }
        joined.push('\u{1f}');
    }
    found.then(|| hash_key(joined.as_bytes()))
}

/// Keys of one resource's items.
struct ResourceKeys<'a> {
    router: &'a Router,
    attributes: &'a [KeyValue],
    /// The resource's own hash, every key's fallback.
    hash: u64,
}

impl<'a> ResourceKeys<'a> {
    fn new(router: &'a Router, resource: Option<&'a Resource>) -> Self {
        let attributes = of_resource(resource);
        let hash = match router.key {
            RoutingKey::Service => find(attributes, attr::SERVICE_NAME)
                .and_then(text)
                .map_or_else(|| attributes_hash(attributes, b"r"), |name| hash_key(name.as_bytes())),
            _ => attributes_hash(attributes, b"r"),
        };
        ResourceKeys { router, attributes, hash }
    }

    /// Whether every item of the resource goes where the resource goes.
    fn whole(&self, items: ItemKind) -> bool {
        matches!(
            (self.router.key, items),
            (RoutingKey::Service | RoutingKey::Resource, _)
                | (RoutingKey::TraceId, ItemKind::Point)
                | (RoutingKey::Metric | RoutingKey::StreamId, ItemKind::Record | ItemKind::Span)
        )
    }

    fn by_trace_then(&self, trace_id: &[u8], then: Option<u64>) -> u64 {
        if trace_id.iter().any(|b| *b != 0) { hash_key(trace_id) } else { then.unwrap_or(self.hash) }
    }

    fn flow(&self, attributes: &[KeyValue]) -> Option<u64> {
        flow_identity(attributes).map(|flow| hash_key(flow.as_bytes()))
    }

    fn record(&self, record: &LogRecord) -> u64 {
        match self.router.key {
            RoutingKey::TraceId => self.by_trace_then(&record.trace_id, self.flow(&record.attributes)),
            RoutingKey::Flow => {
                self.flow(&record.attributes).unwrap_or_else(|| self.by_trace_then(&record.trace_id, None))
            }
            RoutingKey::Attributes => {
                attribute_values(&self.router.attributes, &record.attributes, self.attributes).unwrap_or(self.hash)
            }
            _ => self.hash,
        }
    }

    fn span(&self, trace_id: &[u8], attributes: &[KeyValue]) -> u64 {
        match self.router.key {
            RoutingKey::Attributes => {
                attribute_values(&self.router.attributes, attributes, self.attributes).unwrap_or(self.hash)
            }
            RoutingKey::TraceId | RoutingKey::Flow => self.by_trace_then(trace_id, None),
            _ => self.hash,
        }
    }

    /// A data point's key (`None`: the metric's, for keys above points).
    fn point(&self, scope: &str, metric: &str, attributes: &[KeyValue]) -> u64 {
        let stream = || {
            let mut prefix = self.hash.to_le_bytes().to_vec();
            prefix.extend_from_slice(scope.as_bytes());
            prefix.push(0x1f);
            prefix.extend_from_slice(metric.as_bytes());
            prefix
        };
        match self.router.key {
            RoutingKey::Metric => hash_key(&stream()),
            RoutingKey::StreamId => attributes_hash(attributes, &stream()),
            RoutingKey::Flow => self.flow(attributes).unwrap_or(self.hash),
            RoutingKey::Attributes => {
                attribute_values(&self.router.attributes, attributes, self.attributes).unwrap_or(self.hash)
            }
            _ => self.hash,
        }
    }
}

#[derive(Clone, Copy)]
enum ItemKind {
    Record,
    Span,
    Point,
}

/// Splits `items` by owner, keeping their order.
fn split_by<I>(items: Vec<I>, mut owner: impl FnMut(&I) -> usize) -> BTreeMap<usize, Vec<I>> {
    let mut by_owner: BTreeMap<usize, Vec<I>> = BTreeMap::new();
    for item in items {
        by_owner.entry(owner(&item)).or_default().push(item);
    }
    by_owner
}

/// Splits a payload among the ring's backends: `(backend index, part)`.
/// An empty ring takes nothing: the payload comes back as `Err`.
pub(super) fn route(payload: Payload, router: &Router, ring: &Ring) -> Result<Vec<(usize, Payload)>, Payload> {
    if ring.backends().is_empty() {
        return Err(payload);
    }
    let owner = |hash: u64| ring.owner(hash).unwrap_or_default();
    let parts: Vec<(usize, Payload)> = match payload.decoded() {
        Payload::Encoded(_) => Vec::new(),
        Payload::Logs(resources) => {
            let mut by_owner: BTreeMap<usize, Vec<ResourceLogs>> = BTreeMap::new();
            for mut resource in resources {
                let keys = ResourceKeys::new(router, resource.resource.as_ref());
                if keys.whole(ItemKind::Record) {
                    by_owner.entry(owner(keys.hash)).or_default().push(resource);
                    continue;
                }
                let mut scopes: BTreeMap<usize, Vec<ScopeLogs>> = BTreeMap::new();
                for scope in std::mem::take(&mut resource.scope_logs) {
                    let ScopeLogs { scope: header, log_records, schema_url } = scope;
                    for (backend, records) in split_by(log_records, |r| owner(keys.record(r))) {
                        scopes.entry(backend).or_default().push(ScopeLogs {
                            scope: header.clone(),
                            log_records: records,
                            schema_url: schema_url.clone(),
                        });
                    }
                }
                for (backend, scope_logs) in scopes {
                    by_owner.entry(backend).or_default().push(ResourceLogs { scope_logs, ..resource.clone() });
                }
            }
            by_owner.into_iter().map(|(backend, part)| (backend, Payload::Logs(part))).collect()
        }
        Payload::Traces(resources) => {
            let mut by_owner: BTreeMap<usize, Vec<ResourceSpans>> = BTreeMap::new();
            for mut resource in resources {
                let keys = ResourceKeys::new(router, resource.resource.as_ref());
                if keys.whole(ItemKind::Span) {
                    by_owner.entry(owner(keys.hash)).or_default().push(resource);
                    continue;
                }
                let mut scopes: BTreeMap<usize, Vec<ScopeSpans>> = BTreeMap::new();
                for scope in std::mem::take(&mut resource.scope_spans) {
                    let ScopeSpans { scope: header, spans, schema_url } = scope;
                    for (backend, spans) in split_by(spans, |s| owner(keys.span(&s.trace_id, &s.attributes))) {
                        scopes.entry(backend).or_default().push(ScopeSpans {
                            scope: header.clone(),
                            spans,
                            schema_url: schema_url.clone(),
                        });
                    }
                }
                for (backend, scope_spans) in scopes {
                    by_owner.entry(backend).or_default().push(ResourceSpans { scope_spans, ..resource.clone() });
                }
            }
            by_owner.into_iter().map(|(backend, part)| (backend, Payload::Traces(part))).collect()
        }
        Payload::Metrics(resources) => {
            let mut by_owner: BTreeMap<usize, Vec<ResourceMetrics>> = BTreeMap::new();
            for mut resource in resources {
                let keys = ResourceKeys::new(router, resource.resource.as_ref());
                if keys.whole(ItemKind::Point) {
                    by_owner.entry(owner(keys.hash)).or_default().push(resource);
                    continue;
                }
                let mut scopes: BTreeMap<usize, Vec<ScopeMetrics>> = BTreeMap::new();
                for scope in std::mem::take(&mut resource.scope_metrics) {
                    let ScopeMetrics { scope: header, metrics, schema_url } = scope;
                    let scope_name = header.as_ref().map(|s| s.name.clone()).unwrap_or_default();
                    let mut metrics_by_owner: BTreeMap<usize, Vec<Metric>> = BTreeMap::new();
                    for metric in metrics {
                        let name = metric.name.clone();
                        for (backend, part) in split_metric(metric, |a| owner(keys.point(&scope_name, &name, a))) {
                            metrics_by_owner.entry(backend).or_default().push(part);
                        }
                    }
                    for (backend, metrics) in metrics_by_owner {
                        scopes.entry(backend).or_default().push(ScopeMetrics {
                            scope: header.clone(),
                            metrics,
                            schema_url: schema_url.clone(),
                        });
                    }
                }
                for (backend, scope_metrics) in scopes {
                    by_owner.entry(backend).or_default().push(ResourceMetrics { scope_metrics, ..resource.clone() });
                }
            }
            by_owner.into_iter().map(|(backend, part)| (backend, Payload::Metrics(part))).collect()
        }
    };
    Ok(parts)
}

/// Splits a metric's data points by owner: one copy of the metric per owner.
fn split_metric(mut metric: Metric, mut owner: impl FnMut(&[KeyValue]) -> usize) -> Vec<(usize, Metric)> {
    macro_rules! split_points {
        ($data:expr, $variant:ident) => {{
            let points = std::mem::take(&mut $data.data_points);
            split_by(points, |p| owner(&p.attributes))
                .into_iter()
                .map(|(backend, data_points)| {
                    let mut data = $data.clone();
                    data.data_points = data_points;
                    (backend, Metric { data: Some(Data::$variant(data)), ..metric.clone() })
                })
                .collect()
        }};
    }
    match metric.data.take() {
        Some(Data::Sum(mut d)) => split_points!(d, Sum),
        Some(Data::Gauge(mut d)) => split_points!(d, Gauge),
        Some(Data::Histogram(mut d)) => split_points!(d, Histogram),
        Some(Data::ExponentialHistogram(mut d)) => split_points!(d, ExponentialHistogram),
        Some(Data::Summary(mut d)) => split_points!(d, Summary),
        None => vec![(owner(&[]), metric)],
    }
}
