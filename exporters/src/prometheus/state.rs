//! What the exporter exposes: every series with its value accumulated to
//! cumulative (delta sums and histograms added up), when it was last
//! updated (series idle past `metric_expiration` disappear), its latest
//! exemplars, and one `target_info` series per resource.

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant},
};

use flowtel_core::{
    attributes::{find_text, text},
    exposition::{Exemplar, Family, Kind, Series, Value},
    schema::attr,
};
use opentelemetry_proto::tonic::{
    common::v1::{InstrumentationScope, KeyValue},
    metrics::v1::{
        AggregationTemporality, Exemplar as OtlpExemplar, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
        exemplar, metric::Data, number_data_point,
    },
};

use super::{config::PrometheusConfig, translate};

type Labels = Vec<(String, String)>;

/// Why a point was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// An exponential histogram or summary: no text form here.
    UnsupportedType,
    /// The name is taken by a metric of another type or other buckets.
    Conflict,
    /// `max_series` series are exposed already.
    MaxSeries,
}

struct SeriesState {
    value: Value,
    updated: Instant,
    timestamp_ms: i64,
    exemplars: Vec<Option<Exemplar>>,
}

struct FamilyState {
    help: String,
    unit: Option<String>,
    kind: Kind,
    /// By labels, so a scrape writes them in order without sorting.
    series: BTreeMap<Labels, SeriesState>,
}

/// The exposed metrics.
pub(crate) struct State {
    families: BTreeMap<String, FamilyState>,
    targets: HashMap<Labels, Instant>,
    series: usize,
}

/// A data point's values, whatever its type.
enum Point<'a> {
    Number(&'a NumberDataPoint),
    Histogram(&'a HistogramDataPoint),
}

impl State {
    pub(crate) fn new() -> Self {
        State { families: BTreeMap::new(), targets: HashMap::new(), series: 0 }
    }

    /// Takes in a payload's metrics; returns the points refused and why.
    pub(crate) fn add(
        &mut self,
        config: &PrometheusConfig,
        resources: &[ResourceMetrics],
        now: Instant,
    ) -> Vec<(Refusal, u64)> {
        let mut refused = Vec::new();
        for resource in resources {
            let resource_attributes = resource.resource.as_ref().map_or(&[][..], |r| &r.attributes);
            let (target, resource_labels) = resource_labels(config, resource_attributes);
            if !target.is_empty() {
                self.targets.insert(target, now);
            }
            for scope in &resource.scope_metrics {
                let scope_labels = scope_labels(scope.scope.as_ref());
                for metric in &scope.metrics {
                    let mut shared = resource_labels.clone();
                    shared.extend(scope_labels.iter().cloned());
                    if let Some(refusal) = self.add_metric(config, metric, &shared, now) {
                        refused.push(refusal);
                    }
                }
            }
        }
        refused
    }

    fn add_metric(
        &mut self,
        config: &PrometheusConfig,
        metric: &Metric,
        shared: &[(String, String)],
        now: Instant,
    ) -> Option<(Refusal, u64)> {
        let (kind, points, delta): (Kind, Vec<Point<'_>>, bool) = match metric.data.as_ref()? {
            Data::Gauge(gauge) => (Kind::Gauge, gauge.data_points.iter().map(Point::Number).collect(), false),
            Data::Sum(sum) => (
                if sum.is_monotonic { Kind::Counter } else { Kind::Gauge },
                sum.data_points.iter().map(Point::Number).collect(),
                sum.aggregation_temporality == AggregationTemporality::Delta as i32,
            ),
            Data::Histogram(histogram) => {
                let bounds = histogram.data_points.first().map(|p| p.explicit_bounds.clone()).unwrap_or_default();
                (
                    Kind::Histogram(bounds),
                    histogram.data_points.iter().map(Point::Histogram).collect(),
                    histogram.aggregation_temporality == AggregationTemporality::Delta as i32,
                )
            }
            Data::ExponentialHistogram(h) => return Some((Refusal::UnsupportedType, h.data_points.len() as u64)),
            Data::Summary(s) => return Some((Refusal::UnsupportedType, s.data_points.len() as u64)),
        };
        let gauge = kind == Kind::Gauge;
        let (name, unit) = translate::metric_name(
            &metric.name,
            &metric.unit,
            gauge,
            config.namespace.as_deref(),
            config.add_metric_suffixes,
        );
        let family = self.families.entry(name).or_insert_with(|| FamilyState {
            help: metric.description.clone(),
            unit,
            kind: kind.clone(),
            series: BTreeMap::new(),
        });
        let same_kind = match (&family.kind, &kind) {
            (Kind::Histogram(_), Kind::Histogram(_)) => true,
            (a, b) => a == b,
        };
        if !same_kind {
            return Some((Refusal::Conflict, points.len() as u64));
        }
        let mut refused = (Refusal::Conflict, 0);
        for point in points {
            let (attributes, time, exemplars) = match point {
                Point::Number(p) => (&p.attributes, p.time_unix_nano, &p.exemplars),
                Point::Histogram(p) => (&p.attributes, p.time_unix_nano, &p.exemplars),
            };
            let labels = point_labels(attributes, shared);
            let timestamp_ms = (time / 1_000_000) as i64;
            let known = family.series.contains_key(&labels);
            if !known && self.series >= config.max_series {
                refused = (Refusal::MaxSeries, refused.1 + 1);
                continue;
            }
            let value = match point {
                Point::Number(p) => Value::Number(number(p)),
                Point::Histogram(p) => {
                    if let Kind::Histogram(bounds) = &family.kind
                        && *bounds != p.explicit_bounds
                    {
                        refused.1 += 1;
                        continue;
                    }
                    let mut buckets = p.bucket_counts.clone();
                    buckets.resize(p.explicit_bounds.len() + 1, 0);
                    Value::Histogram { sum: p.sum.unwrap_or(0.0), count: p.count, buckets }
                }
            };
            let bounds = match &family.kind {
                Kind::Histogram(bounds) => Some(bounds.as_slice()),
                _ => None,
            };
            let new_exemplars = exemplars_of(exemplars, bounds);
            match family.series.get_mut(&labels) {
                Some(series) => {
                    series.value = if delta { accumulate(&series.value, value) } else { value };
                    series.updated = now;
                    series.timestamp_ms = timestamp_ms;
                    for (slot, exemplar) in series.exemplars.iter_mut().zip(new_exemplars) {
                        if exemplar.is_some() {
                            *slot = exemplar;
                        }
                    }
                }
                None => {
                    self.series += 1;
                    family
                        .series
                        .insert(labels, SeriesState { value, updated: now, timestamp_ms, exemplars: new_exemplars });
                }
            }
        }
        (refused.1 > 0).then_some(refused)
    }

    /// Forgets series and targets not updated within `expiration`.
    pub(crate) fn expire(&mut self, expiration: Duration, now: Instant) {
        let fresh = |updated: &Instant| now.duration_since(*updated) < expiration;
        for family in self.families.values_mut() {
            family.series.retain(|_, series| fresh(&series.updated));
        }
        self.families.retain(|_, family| !family.series.is_empty());
        self.targets.retain(|_, updated| fresh(updated));
        self.series = self.families.values().map(|f| f.series.len()).sum();
    }

    /// How many series are exposed.
    pub(crate) fn series(&self) -> usize {
        self.series
    }

    /// Every family, for the encoder: `target_info` first.
    pub(crate) fn families(&self, send_timestamps: bool) -> Vec<Family> {
        let mut families = Vec::with_capacity(self.families.len() + 1);
        if !self.targets.is_empty() {
            let mut series: Vec<Series> = self
                .targets
                .keys()
                .map(|labels| Series {
                    labels: labels.clone(),
                    value: Value::Number(1.0),
                    timestamp_ms: None,
                    exemplars: Vec::new(),
                })
                .collect();
            series.sort_by(|a, b| a.labels.cmp(&b.labels));
            families.push(Family {
                name: "target".into(),
                help: "Target metadata".into(),
                unit: None,
                kind: Kind::Info,
                series,
            });
        }
        for (name, family) in &self.families {
            let series: Vec<Series> = family
                .series
                .iter()
                .map(|(labels, state)| Series {
                    labels: labels.clone(),
                    value: state.value.clone(),
                    timestamp_ms: send_timestamps.then_some(state.timestamp_ms),
                    exemplars: state.exemplars.clone(),
                })
                .collect();
            families.push(Family {
                name: name.clone(),
                help: family.help.clone(),
                unit: family.unit.clone(),
                kind: family.kind.clone(),
                series,
            });
        }
        families
    }
}

fn number(point: &NumberDataPoint) -> f64 {
    match point.value {
        Some(number_data_point::Value::AsInt(v)) => v as f64,
        Some(number_data_point::Value::AsDouble(v)) => v,
        None => 0.0,
    }
}

/// A delta added to what a series had.
fn accumulate(previous: &Value, delta: Value) -> Value {
    match (previous, delta) {
        (Value::Number(a), Value::Number(b)) => Value::Number(a + b),
        (Value::Histogram { sum, count, buckets }, Value::Histogram { sum: s, count: c, buckets: b })
            if buckets.len() == b.len() =>
        {
            Value::Histogram {
                sum: sum + s,
                count: count + c,
                buckets: buckets.iter().zip(&b).map(|(x, y)| x + y).collect(),
            }
        }
        (_, delta) => delta,
    }
}

/// The exemplars of a point by line: index 0 for numbers, the bucket for histograms.
fn exemplars_of(exemplars: &[OtlpExemplar], bounds: Option<&[f64]>) -> Vec<Option<Exemplar>> {
    let mut out = vec![None; bounds.map_or(1, |b| b.len() + 1)];
    for exemplar in exemplars {
        if exemplar.trace_id.len() != 16 {
            continue;
        }
        let value = match exemplar.value {
            Some(exemplar::Value::AsDouble(v)) => v,
            Some(exemplar::Value::AsInt(v)) => v as f64,
            None => continue,
        };
        let mut labels = vec![("trace_id".to_owned(), hex::encode(&exemplar.trace_id))];
        if exemplar.span_id.len() == 8 {
            labels.push(("span_id".to_owned(), hex::encode(&exemplar.span_id)));
        }
        let index = bounds.map_or(0, |bounds| bounds.partition_point(|bound| *bound < value));
        if let Some(slot) = out.get_mut(index) {
            *slot = Some(Exemplar { labels, value, timestamp: Some(exemplar.time_unix_nano as f64 / 1e9) });
        }
    }
    out
}

/// A point's labels: its attributes (names sanitized; values of names that
/// collide joined with `;`), then what it shares with its resource and scope.
fn point_labels(attributes: &[KeyValue], shared: &[(String, String)]) -> Labels {
    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    let mut sorted: Vec<&KeyValue> = attributes.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    for kv in sorted {
        let Some(value) = kv.value.as_ref().and_then(|v| v.value.as_ref()).and_then(text) else { continue };
        labels
            .entry(translate::sanitize(&kv.key, false))
            .and_modify(|existing| {
                existing.push(';');
                existing.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    for (key, value) in shared {
        labels.entry(key.clone()).or_insert_with(|| value.clone());
    }
    labels.into_iter().collect()
}

/// The `target_info` labels of a resource, and the labels its series get
/// (`job`, `instance`, and the resource attributes the config converts).
fn resource_labels(config: &PrometheusConfig, attributes: &[KeyValue]) -> (Labels, Labels) {
    let name = find_text(attributes, attr::SERVICE_NAME);
    let namespace = find_text(attributes, attr::SERVICE_NAMESPACE);
    let job = match (namespace, name) {
        (Some(namespace), Some(name)) => Some(format!("{namespace}/{name}")),
        (None, Some(name)) => Some(name.into_owned()),
        _ => None,
    };
    let instance = find_text(attributes, attr::SERVICE_INSTANCE_ID).map(|i| i.into_owned());
    let mut identity: Labels = Vec::new();
    if let Some(job) = job {
        identity.push(("job".into(), job));
    }
    if let Some(instance) = instance {
        identity.push(("instance".into(), instance));
    }
    let identifying = [attr::SERVICE_NAME, attr::SERVICE_NAMESPACE, attr::SERVICE_INSTANCE_ID];
    let others: Labels = attributes
        .iter()
        .filter(|kv| !identifying.contains(&kv.key.as_str()))
        .filter_map(|kv| {
            let value = kv.value.as_ref()?.value.as_ref().and_then(text)?;
            Some((kv.key.clone(), value.into_owned()))
        })
        .collect();
    let sanitized =
        |pairs: &Labels| -> Labels { pairs.iter().map(|(k, v)| (translate::sanitize(k, false), v.clone())).collect() };
    let mut series_labels = identity.clone();
    if config.resource_to_telemetry_conversion.enabled {
        series_labels.extend(sanitized(&others));
    } else if !config.resource_constant_labels.is_empty() {
        let chosen: Labels =
            others.iter().filter(|(k, _)| config.resource_constant_labels.contains(k)).cloned().collect();
        series_labels.extend(sanitized(&chosen));
    }
    let mut target = Vec::new();
    if !others.is_empty() {
        target = identity;
        target.extend(sanitized(&others));
        target.sort();
        target.dedup_by(|a, b| a.0 == b.0);
    }
    (target, series_labels)
}

/// `otel_scope_name` and `otel_scope_version`, as the collector labels series.
fn scope_labels(scope: Option<&InstrumentationScope>) -> Labels {
    let mut labels = Vec::new();
    if let Some(scope) = scope {
        if !scope.name.is_empty() {
            labels.push(("otel_scope_name".to_owned(), scope.name.clone()));
        }
        if !scope.version.is_empty() {
            labels.push(("otel_scope_version".to_owned(), scope.version.clone()));
        }
    }
    labels
}
