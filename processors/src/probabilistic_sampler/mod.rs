//! The `probabilistic_sampler` processor: keeps `sampling_percentage` of
//! the flows, deciding by a seeded hash of the flow's direction-independent
//! 5-tuple (or of chosen attributes, or of the trace id), so both directions
//! of a flow and all its records are kept or dropped together, by every
//! flowtel with the same seed. Kept records carry `sampling.adjusted_count`
//! (how many records each stands for), so counts can be scaled back up.
//!
//! The hash is the collector's `hash_seed` mode's (32-bit FNV-1a over the
//! seed and the key, 14-bit buckets): on the same trace id or attribute
//! value, flowtel and a collector with the same seed decide alike. Spans
//! are sampled by trace id; metrics pass as they are.

mod config;

use flowtel_core::schema::attr;
use std::borrow::Cow;

use flowtel_core::{
    Payload,
    attributes::{find, find_text, flow_identity, text},
    component::Processor,
};
use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, KeyValue, any_value::Value},
    logs::v1::LogRecord,
    trace::v1::Span,
};

pub use config::{AttributeSource, ProbabilisticSamplerConfig};

/// The attribute on kept records: how many records each one stands for.
pub const ADJUSTED_COUNT: &str = attr::SAMPLING_ADJUSTED_COUNT;

/// The span attribute that forces a decision (0: drop, more: keep), as the
/// collector reads it.
const SPAN_PRIORITY: &str = attr::SAMPLING_PRIORITY;

/// Decisions fall into this many buckets (the low 14 bits of the hash), as
/// in the collector's `hash_seed` mode.
const HASH_BUCKETS: u32 = 1 << 14;

/// What a record's decision hashes.
#[derive(Debug)]
enum DecisionSource {
    /// The direction-independent 5-tuple, else the trace id.
    FlowThenTrace,
    /// The values of these attributes (at least one present).
    Attributes(Vec<String>),
    /// The trace id only (`attribute_source: traceID`).
    TraceId,
}

/// The `probabilistic_sampler` processor.
pub struct ProbabilisticSampler {
    config: ProbabilisticSamplerConfig,
    source: DecisionSource,
}

/// How many of the buckets a percentage keeps, computed as the collector
/// does (in 32-bit floating point, rounded down) so that both agree.
fn accepted_buckets(percentage: f64) -> u32 {
    ((percentage as f32) * (HASH_BUCKETS as f32 / 100.0)) as u32
}

impl ProbabilisticSampler {
    /// A sampler with the given (validated) config.
    pub fn new(config: ProbabilisticSamplerConfig) -> Self {
        let source = match config.attribute_source {
            Some(AttributeSource::TraceId) => DecisionSource::TraceId,
            Some(AttributeSource::Record) => DecisionSource::Attributes(vec![config.from_attribute.clone()]),
            None if !config.hash_attributes.is_empty() => DecisionSource::Attributes(config.hash_attributes.clone()),
            None => DecisionSource::FlowThenTrace,
        };
        ProbabilisticSampler { config, source }
    }

    /// Whether a record is kept.
    pub fn keeps(&self, record: &LogRecord) -> bool {
        self.sample(record).is_some()
    }

    /// For a kept record, how many records it stands for; `None` when it is dropped.
    fn sample(&self, record: &LogRecord) -> Option<f64> {
        let percentage = priority(&record.attributes, &self.config.sampling_priority);
        self.decide(percentage.unwrap_or(self.config.sampling_percentage), decision_key(record, &self.source))
    }

    /// For a kept span, how many spans it stands for; `None` when dropped.
    fn sample_span(&self, span: &Span) -> Option<f64> {
        let percentage = match priority(&span.attributes, SPAN_PRIORITY) {
            Some(priority) if priority > 0.0 => 100.0,
            Some(_) => 0.0,
            None => self.config.sampling_percentage,
        };
        self.decide(percentage, (!span.trace_id.is_empty()).then_some(Cow::Borrowed(&span.trace_id[..])))
    }

    /// Keeps `percentage` of the keys; what has no key is kept unless
    /// `fail_closed` (at full weight: it was not sampled).
    fn decide(&self, percentage: f64, key: Option<Cow<'_, [u8]>>) -> Option<f64> {
        if percentage >= 100.0 {
            return Some(1.0);
        }
        let Some(key) = key else { return (!self.config.fail_closed).then_some(1.0) };
        let accepted = accepted_buckets(percentage);
        (bucket(self.config.hash_seed, &key) < accepted).then(|| f64::from(HASH_BUCKETS) / f64::from(accepted))
    }
}

/// An item's own percentage from the attribute `name`, clamped to 0..=100.
fn priority(attributes: &[KeyValue], name: &str) -> Option<f64> {
    if name.is_empty() {
        return None;
    }
    let value = match find(attributes, name)? {
        Value::IntValue(i) => *i as f64,
        Value::DoubleValue(d) => *d,
        other => text(other)?.trim().parse().ok()?,
    };
    (!value.is_nan()).then(|| value.clamp(0.0, 100.0))
}

/// The bytes a decision hashes: the chosen attributes' values, or the
/// 5-tuple with its two ends in a fixed order, or the trace id.
fn decision_key<'a>(record: &'a LogRecord, source: &DecisionSource) -> Option<Cow<'a, [u8]>> {
    let attributes = &record.attributes;
    let trace = || (!record.trace_id.is_empty()).then_some(Cow::Borrowed(&record.trace_id[..]));
    match source {
        DecisionSource::Attributes(keys) => {
            let values: Vec<Option<Cow<'_, str>>> = keys.iter().map(|key| find_text(attributes, key)).collect();
            values.iter().any(Option::is_some).then(|| {
                let joined = values.iter().map(|v| v.as_deref().unwrap_or("")).collect::<Vec<_>>().join("\u{1f}");
                Cow::Owned(joined.into_bytes())
            })
        }
        DecisionSource::TraceId => trace(),
        DecisionSource::FlowThenTrace => match flow_identity(attributes) {
            Some(flow) => Some(Cow::Owned(flow.into_bytes())),
            None => trace(),
        },
    }
}

/// The decision bucket of a key: the low 14 bits of 32-bit FNV-1a over the
/// seed (4 bytes, little-endian) and the key.
fn bucket(seed: u32, key: &[u8]) -> u32 {
    fnv1a_32(seed.to_le_bytes().iter().chain(key)) & (HASH_BUCKETS - 1)
}

/// 32-bit FNV-1a.
fn fnv1a_32<'a>(bytes: impl IntoIterator<Item = &'a u8>) -> u32 {
    bytes.into_iter().fold(0x811c_9dc5, |hash: u32, byte| (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193))
}

fn set_adjusted_count(attributes: &mut Vec<KeyValue>, factor: f64) {
    let existing = attributes.iter_mut().find(|kv| kv.key == ADJUSTED_COUNT);
    match existing {
        // A record sampled again (an agent and a gateway) stands for more.
        Some(kv) => {
            let before = kv.value.as_ref().and_then(|v| v.value.as_ref()).and_then(|v| text(v)?.parse::<f64>().ok());
            kv.value = Some(AnyValue { value: Some(Value::DoubleValue(before.unwrap_or(1.0) * factor)) });
        }
        None => attributes.push(KeyValue {
            key: ADJUSTED_COUNT.into(),
            value: Some(AnyValue { value: Some(Value::DoubleValue(factor)) }),
            ..Default::default()
        }),
    }
}

impl Processor for ProbabilisticSampler {
    fn process(&mut self, mut payload: Payload, out: &mut Vec<Payload>) {
        let keeps_all = self.config.sampling_percentage >= 100.0;
        match &mut payload {
            Payload::Logs(resources) if !keeps_all || !self.config.sampling_priority.is_empty() => {
                for scope in resources.iter_mut().flat_map(|r| r.scope_logs.iter_mut()) {
                    scope.log_records.retain_mut(|record| match self.sample(record) {
                        Some(factor) => {
                            if factor != 1.0 {
                                set_adjusted_count(&mut record.attributes, factor);
                            }
                            true
                        }
                        None => false,
                    });
                }
            }
            Payload::Traces(resources) => {
                for scope in resources.iter_mut().flat_map(|r| r.scope_spans.iter_mut()) {
                    scope.spans.retain(|span| self.sample_span(span).is_some());
                }
            }
            _ => {}
        }
        payload.prune_empty();
        if !payload.is_empty() {
            out.push(payload);
        }
    }
}

#[cfg(test)]
mod tests;
