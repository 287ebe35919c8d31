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
    attributes::{find_text, text},
    component::Processor,
};
use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, KeyValue, any_value::Value},
    logs::v1::LogRecord,
};

pub use config::ProbabilisticSamplerConfig;

/// The attribute on kept records: how many records each one stands for.
pub const ADJUSTED_COUNT: &str = "sampling.adjusted_count";

/// The `probabilistic_sampler` processor.
pub struct ProbabilisticSampler {
    config: ProbabilisticSamplerConfig,
    /// Keep when the hash is below this.
    threshold: u64,
    keep_all: bool,
}

impl ProbabilisticSampler {
    /// A sampler with the given (validated) config.
    pub fn new(config: ProbabilisticSamplerConfig) -> Self {
        let fraction = config.sampling_percentage / 100.0;
        ProbabilisticSampler { threshold: (fraction * u64::MAX as f64) as u64, keep_all: fraction >= 1.0, config }
    }

    /// Whether a record is kept.
    pub fn keeps(&self, record: &LogRecord) -> bool {
        if self.keep_all {
            return true;
        }
        match decision_key(record, &self.config.hash_attributes) {
            Some(key) => hash(self.config.hash_seed, key.as_bytes()) < self.threshold,
            // Nothing to decide by: keep rather than lose what cannot be sampled consistently.
            None => true,
        }
    }
}

/// The text the decision hashes: the chosen attributes, or the 5-tuple with
/// its two ends in a fixed order, or the trace id.
pub fn decision_key(record: &LogRecord, hash_attributes: &[String]) -> Option<String> {
    let attributes = &record.attributes;
    if !hash_attributes.is_empty() {
        let values: Vec<Cow<'_, str>> =
            hash_attributes.iter().map(|key| find_text(attributes, key).unwrap_or(Cow::Borrowed(""))).collect();
        return Some(values.join("\u{1f}"));
    }
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
        _ if !record.trace_id.is_empty() => Some(record.trace_id.iter().map(|b| format!("{b:02x}")).collect()),
        _ => None,
    }
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
            && !self.keep_all
        {
            let factor = 100.0 / self.config.sampling_percentage;
            for resource in resources.iter_mut() {
                for scope in &mut resource.scope_logs {
                    scope.log_records.retain(|record| self.keeps(record));
                    for record in &mut scope.log_records {
                        set_adjusted_count(record, factor);
                    }
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
