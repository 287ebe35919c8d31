//! `processors::memory_limiter` config, with the collector's names.

use std::time::Duration;

use flowtel_core::config::Validate;
use serde::Deserialize;

/// `processors::memory_limiter`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryLimiterConfig {
    /// How often memory is measured (at most; it is measured when data arrives).
    #[serde(with = "humantime_serde")]
    pub check_interval: Duration,
    /// The hard limit in MiB (0: use `limit_percentage`).
    pub limit_mib: u64,
    /// Headroom below the hard limit in MiB: data is refused above
    /// `limit_mib - spike_limit_mib` (0: 20% of the limit).
    pub spike_limit_mib: u64,
    /// The hard limit as a percentage of the machine's (or cgroup's) memory.
    pub limit_percentage: u64,
    /// The headroom as a percentage of the machine's memory.
    pub spike_limit_percentage: u64,
}

impl Default for MemoryLimiterConfig {
    fn default() -> Self {
        MemoryLimiterConfig {
            check_interval: Duration::from_secs(1),
            limit_mib: 0,
            spike_limit_mib: 0,
            limit_percentage: 0,
            spike_limit_percentage: 0,
        }
    }
}

impl MemoryLimiterConfig {
    /// `(soft, hard)` limits in bytes, given the machine's memory.
    pub fn limits(&self, total_bytes: u64) -> (u64, u64) {
        const MIB: u64 = 1 << 20;
        let (hard, spike) = if self.limit_mib > 0 {
            let hard = self.limit_mib * MIB;
            (hard, if self.spike_limit_mib > 0 { self.spike_limit_mib * MIB } else { hard / 5 })
        } else {
            let hard = total_bytes / 100 * self.limit_percentage;
            let spike = if self.spike_limit_percentage > 0 {
                total_bytes / 100 * self.spike_limit_percentage
            } else {
                hard / 5
            };
            (hard, spike)
        };
        (hard.saturating_sub(spike), hard)
    }
}

impl Validate for MemoryLimiterConfig {
    fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.check_interval.is_zero() {
            problems.push(("check_interval".into(), "must be more than 0".into()));
        }
        match (self.limit_mib, self.limit_percentage) {
            (0, 0) => problems.push(("limit_mib".into(), "set limit_mib or limit_percentage".into())),
            (0, p) if p > 100 => problems.push(("limit_percentage".into(), format!("must be 1 to 100, found {p}"))),
            (0, p) if self.spike_limit_percentage >= p => problems.push((
                "spike_limit_percentage".into(),
                format!("must be below limit_percentage ({p}), found {}", self.spike_limit_percentage),
            )),
            (mib, _) if mib > 0 && self.spike_limit_mib >= mib => problems.push((
                "spike_limit_mib".into(),
                format!("must be below limit_mib ({mib}), found {}", self.spike_limit_mib),
            )),
            _ => {}
        }
        problems
    }
}
