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
    /// Attributes whose values decide together (same values, same decision).
    /// Empty: the flow's 5-tuple, direction-independent, so both directions
    /// and every record of one connection (flows, drops, TCP events) share
    /// one decision; records without a 5-tuple fall back to their trace id.
    pub hash_attributes: Vec<String>,
}

impl Default for ProbabilisticSamplerConfig {
    fn default() -> Self {
        ProbabilisticSamplerConfig { sampling_percentage: 100.0, hash_seed: 0, hash_attributes: Vec::new() }
    }
}

impl Validate for ProbabilisticSamplerConfig {
    fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if !(0.0..=100.0).contains(&self.sampling_percentage) || self.sampling_percentage.is_nan() {
            problems
                .push(("sampling_percentage".into(), format!("must be 0 to 100, found {}", self.sampling_percentage)));
        }
        for (index, key) in self.hash_attributes.iter().enumerate() {
            if key.trim().is_empty() {
                problems.push((format!("hash_attributes[{index}]"), "must not be empty".into()));
            }
        }
        problems
    }
}
