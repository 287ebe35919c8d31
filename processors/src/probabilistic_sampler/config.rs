//! `processors::probabilistic_sampler` config, with the collector's names.

use flowtel_core::config::Validate;
use serde::Deserialize;

/// `processors::probabilistic_sampler`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProbabilisticSamplerConfig {
    /// Percentage of flows (or records) kept, 0 to 100.
    pub sampling_percentage: f64,
    /// Seed of the hash, so that tiers of samplers can decide independently
    /// (same seed: same decisions).
    pub hash_seed: u32,
    /// The collector's sampling mode; flowtel samples by `hash_seed` only
    /// (the other modes need randomness that flow records do not carry).
    pub mode: String,
    /// What decides, as the collector names it: `traceID` (the record's
    /// trace id) or `record` (the `from_attribute` attribute). Unset: the
    /// flow's 5-tuple (or `hash_attributes`), then the trace id.
    pub attribute_source: Option<AttributeSource>,
    /// The attribute that decides with `attribute_source: record`.
    pub from_attribute: String,
    /// Attributes whose values decide together (same values, same decision).
    /// Empty: the flow's 5-tuple, direction-independent, so both directions
    /// and every record of one connection (flows, drops, TCP events) share
    /// one decision; records without a 5-tuple fall back to their trace id.
    pub hash_attributes: Vec<String>,
    /// An attribute whose numeric value, where a record has it, is that
    /// record's sampling percentage instead (0: drop, 100: keep).
    pub sampling_priority: String,
    /// Drop records with nothing to decide by (no 5-tuple, trace id or
    /// chosen attribute). Off by default: such records are kept.
    pub fail_closed: bool,
}

/// Where the decision's randomness comes from (`attribute_source`).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum AttributeSource {
    /// The record's trace id.
    #[serde(rename = "traceID")]
    TraceId,
    /// The record's `from_attribute` attribute.
    #[serde(rename = "record")]
    Record,
}

/// The only `mode` flowtel implements.
const HASH_SEED_MODE: &str = "hash_seed";

impl Default for ProbabilisticSamplerConfig {
    fn default() -> Self {
        ProbabilisticSamplerConfig {
            sampling_percentage: 100.0,
            hash_seed: 0,
            mode: HASH_SEED_MODE.into(),
            attribute_source: None,
            from_attribute: String::new(),
            hash_attributes: Vec::new(),
            sampling_priority: String::new(),
            fail_closed: false,
        }
    }
}

impl Validate for ProbabilisticSamplerConfig {
    fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if !(0.0..=100.0).contains(&self.sampling_percentage) || self.sampling_percentage.is_nan() {
            problems
                .push(("sampling_percentage".into(), format!("must be 0 to 100, found {}", self.sampling_percentage)));
        }
        if self.mode != HASH_SEED_MODE {
            problems.push((
                "mode".into(),
                format!(
                    "flowtel samples in `hash_seed` mode only, found `{}` (proportional and equalizing need the trace's randomness, which flow records lack)",
                    self.mode
                ),
            ));
        }
        for (index, key) in self.hash_attributes.iter().enumerate() {
            if key.trim().is_empty() {
                problems.push((format!("hash_attributes[{index}]"), "must not be empty".into()));
            }
        }
        match self.attribute_source {
            Some(_) if !self.hash_attributes.is_empty() => problems
                .push(("hash_attributes".into(), "set either attribute_source or hash_attributes, not both".into())),
            Some(AttributeSource::Record) if self.from_attribute.trim().is_empty() => problems
                .push(("from_attribute".into(), "attribute_source: record needs the attribute that decides".into())),
            _ => {}
        }
        if !self.from_attribute.is_empty() && self.attribute_source != Some(AttributeSource::Record) {
            problems.push(("from_attribute".into(), "is read only with attribute_source: record".into()));
        }
        problems
    }
}
