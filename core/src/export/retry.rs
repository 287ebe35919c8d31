//! `retry_on_failure` and the exponential backoff it describes.

use std::time::Duration;

use rand::Rng as _;
use serde::Deserialize;

use crate::config::Validate;

/// `retry_on_failure`: how failed exports are retried. Only failures the
/// protocol calls retryable are retried; the rest are dropped and counted.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Retry at all.
    pub enabled: bool,
    /// Wait before the first retry.
    #[serde(with = "humantime_serde")]
    pub initial_interval: Duration,
    /// Each wait is randomised by ± this fraction (0 to 1).
    pub randomization_factor: f64,
    /// Each wait is the previous times this (≥ 1).
    pub multiplier: f64,
    /// Upper bound of one wait.
    #[serde(with = "humantime_serde")]
    pub max_interval: Duration,
    /// Give up on a batch after this long (0: never give up).
    #[serde(with = "humantime_serde")]
    pub max_elapsed_time: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            enabled: true,
            initial_interval: Duration::from_secs(5),
            randomization_factor: 0.5,
            multiplier: 1.5,
            max_interval: Duration::from_secs(30),
            max_elapsed_time: Duration::from_secs(300),
        }
    }
}

impl RetryConfig {
    /// No retries (for exporters that write locally).
    pub fn disabled() -> Self {
        RetryConfig { enabled: false, ..Self::default() }
    }
}

impl Validate for RetryConfig {
    fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if !(0.0..=1.0).contains(&self.randomization_factor) {
            problems.push((
                "randomization_factor".into(),
                format!("must be between 0 and 1, found {}", self.randomization_factor),
            ));
        }
        if !(self.multiplier >= 1.0 && self.multiplier.is_finite()) {
            problems.push(("multiplier".into(), format!("must be at least 1, found {}", self.multiplier)));
        }
        if self.enabled && self.initial_interval.is_zero() {
            problems.push(("initial_interval".into(), "must be more than 0".into()));
        }
        if self.max_interval < self.initial_interval {
            problems.push(("max_interval".into(), "must not be less than initial_interval".into()));
        }
        problems
    }
}

/// The waits between attempts for one batch.
#[derive(Debug)]
pub struct Backoff {
    config: RetryConfig,
    current: Duration,
}

impl Backoff {
    /// Starts a sequence of waits.
    pub fn new(config: &RetryConfig) -> Self {
        Backoff { current: config.initial_interval, config: config.clone() }
    }

    /// The next wait: randomised around the current interval, which then grows.
    pub fn next_wait(&mut self) -> Duration {
        let factor = self.config.randomization_factor;
        let jitter = if factor > 0.0 { rand::rng().random_range(1.0 - factor..=1.0 + factor) } else { 1.0 };
        let wait = self.current.mul_f64(jitter);
        self.current = self.current.mul_f64(self.config.multiplier).min(self.config.max_interval);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_to_the_cap() {
        let config = RetryConfig {
            initial_interval: Duration::from_millis(100),
            randomization_factor: 0.0,
            multiplier: 2.0,
            max_interval: Duration::from_millis(300),
            ..RetryConfig::default()
        };
        let mut backoff = Backoff::new(&config);
        let waits: Vec<u128> = (0..4).map(|_| backoff.next_wait().as_millis()).collect();
        assert_eq!(waits, vec![100, 200, 300, 300]);
    }

    #[test]
    fn bad_values_are_named() {
        let config = RetryConfig { multiplier: 0.5, randomization_factor: 2.0, ..RetryConfig::default() };
        let fields: Vec<String> = config.validate().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, vec!["randomization_factor", "multiplier"]);
    }
}
