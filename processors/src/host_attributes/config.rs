//! `processors::host_attributes` config.

use std::time::Duration;

use flowtel_core::config::Validate;
use serde::Deserialize;

/// `processors::host_attributes`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HostAttributesConfig {
    /// How often the sockets of every process are read again from /proc.
    /// A record whose socket is not known yet asks for an earlier read
    /// (at most one per `min_rescan_interval`).
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Duration,
    /// The shortest time between two reads.
    #[serde(with = "humantime_serde")]
    pub min_rescan_interval: Duration,
}

impl Default for HostAttributesConfig {
    fn default() -> Self {
        HostAttributesConfig {
            refresh_interval: Duration::from_secs(5),
            min_rescan_interval: Duration::from_millis(500),
        }
    }
}

impl Validate for HostAttributesConfig {
    fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.refresh_interval.is_zero() {
            problems.push(("refresh_interval".into(), "must be more than 0".into()));
        }
        if self.min_rescan_interval > self.refresh_interval {
            problems.push(("min_rescan_interval".into(), "must not be longer than refresh_interval".into()));
        }
        problems
    }
}
