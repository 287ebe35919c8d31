//! The `probabilistic_sampler` processor: keeps `sampling_percentage` of
//! the flows, deciding by a seeded hash of the flow's direction-independent
//! 5-tuple (or of chosen attributes), so both directions of a flow and all
//! its records are kept or dropped together, by every flowtel with the same
//! seed. Kept records carry `sampling.adjusted_count` (how many records each
//! stands for), so counts can be scaled back up.
//!
//! Only log records are sampled; metrics and traces pass as they are.

mod config;

use std::borrow::Cow;

use flowtel_core::{
    Payload,
    attributes::{find, find_text, text},
    component::Processor,
};
use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, KeyValue, any_value::Value},
    logs::v1::LogRecord,
};

pub use config::{AttributeSource, ProbabilisticSamplerConfig};

/// The attribute on kept records: how many records each one stands for.
pub const ADJUSTED_COUNT: &str = "sampling.adjusted_count";

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
        let percentage = self.priority(record).unwrap_or(self.config.sampling_percentage);
        if percentage >= 100.0 {
            return Some(1.0);
        }
        let Some(key) = decision_key(record, &self.source) else {
            // Nothing to decide by: kept unless `fail_closed`, and then at
            // full weight (it was not sampled).
            return (!self.config.fail_closed).then_some(1.0);
        };
        let threshold = (percentage / 100.0 * u64::MAX as f64) as u64;
        (hash(self.config.hash_seed, key.as_bytes()) < threshold).then(|| 100.0 / percentage)
    }

    /// The record's own percentage from the `sampling_priority` attribute,
    /// clamped to 0..=100.
    fn priority(&self, record: &LogRecord) -> Option<f64> {
        if self.config.sampling_priority.is_empty() {
            return None;
        }
        let value = match find(&record.attributes, &self.config.sampling_priority)? {
            Value::IntValue(i) => *i as f64,
            Value::DoubleValue(d) => *d,
            other => text(other)?.trim().parse().ok()?,
        };
        (!value.is_nan()).then(|| value.clamp(0.0, 100.0))
    }

    /// Whether every record passes untouched.
    fn keeps_all(&self) -> bool {
        self.config.sampling_percentage >= 100.0 && self.config.sampling_priority.is_empty()
    }
}

/// The text a decision hashes: the chosen attributes, or the 5-tuple with
/// its two ends in a fixed order, or the trace id.
fn decision_key(record: &LogRecord, source: &DecisionSource) -> Option<String> {
    let attributes = &record.attributes;
    match source {
        DecisionSource::Attributes(keys) => {
            let values: Vec<Option<Cow<'_, str>>> = keys.iter().map(|key| find_text(attributes, key)).collect();
            values
                .iter()
                .any(Option::is_some)
                .then(|| values.iter().map(|v| v.as_deref().unwrap_or("")).collect::<Vec<_>>().join("\u{1f}"))
        }
        DecisionSource::TraceId => trace_key(record),
        DecisionSource::FlowThenTrace => {
            let end = |address: &str, port: &str| -> Option<String> {
                let address = find_text(attributes, address)?;
                let port = find_text(attributes, port).unwrap_or(Cow::Borrowed(""));
                Some(format!("{address}|{port}"))
            };
            match (end("source.address", "source.port"), end("destination.address", "destination.port")) {
                (Some(a), Some(b)) => {
                    let transport = find_text(attributes, "network.transport").unwrap_or(Cow::Borrowed(""));
                    let (low, high) = if a <= b { (a, b) } else { (b, a) };
                    Some(format!("{transport}|{low}|{high}"))
                }
                _ => trace_key(record),
            }
        }
    }
}

fn trace_key(record: &LogRecord) -> Option<String> {
    (!record.trace_id.is_empty()).then(|| record.trace_id.iter().map(|b| format!("{b:02x}")).collect())
}

/// 64-bit FNV-1a over the seed and the bytes, then a final mix so that
/// nearby keys spread over the whole range.
fn hash(seed: u32, bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in seed.to_le_bytes().iter().chain(bytes) {
        h ^= u64::from(*byte);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

fn set_adjusted_count(record: &mut LogRecord, factor: f64) {
    let existing = record.attributes.iter_mut().find(|kv| kv.key == ADJUSTED_COUNT);
    match existing {
        // A record sampled again (an agent and a gateway) stands for more.
        Some(kv) => {
            let before = kv.value.as_ref().and_then(|v| v.value.as_ref()).and_then(|v| text(v)?.parse::<f64>().ok());
            kv.value = Some(AnyValue { value: Some(Value::DoubleValue(before.unwrap_or(1.0) * factor)) });
        }
        None => record.attributes.push(KeyValue {
            key: ADJUSTED_COUNT.into(),
            value: Some(AnyValue { value: Some(Value::DoubleValue(factor)) }),
            ..Default::default()
        }),
    }
}

impl Processor for ProbabilisticSampler {
    fn process(&mut self, mut payload: Payload, out: &mut Vec<Payload>) {
        if let Payload::Logs(resources) = &mut payload
            && !self.keeps_all()
        {
            for resource in resources.iter_mut() {
                for scope in &mut resource.scope_logs {
                    scope.log_records.retain_mut(|record| match self.sample(record) {
                        Some(factor) => {
                            if factor != 1.0 {
                                set_adjusted_count(record, factor);
                            }
                            true
                        }
                        None => false,
                    });
                }
            }
            payload.prune_empty();
        }
        if !payload.is_empty() {
            out.push(payload);
        }
    }
}

#[cfg(test)]
mod tests;
