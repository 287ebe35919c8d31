//! `processors::batch` config, with the collector's names and defaults.

use std::time::Duration;

use flowtel_core::config::Validate;
use serde::Deserialize;

/// `processors::batch`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Send a batch once it holds at least this many items (records, points, spans).
    pub send_batch_size: usize,
    /// Never send more items than this in one batch (0: no limit); must not
    /// be below `send_batch_size`.
    pub send_batch_max_size: usize,
    /// Send whatever is held after this long. `0s` sends every payload at
    /// once, split only by `send_batch_max_size`.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig { send_batch_size: 8192, send_batch_max_size: 0, timeout: Duration::from_millis(200) }
    }
}

impl Validate for BatchConfig {
    fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.send_batch_size == 0 && !self.timeout.is_zero() {
            problems.push(("send_batch_size".into(), "must be more than 0 (or set timeout: 0s)".into()));
        }
        if self.send_batch_max_size != 0 && self.send_batch_max_size < self.send_batch_size {
            problems.push((
                "send_batch_max_size".into(),
                format!(
                    "must be 0 or at least send_batch_size ({}), found {}",
                    self.send_batch_size, self.send_batch_max_size
                ),
            ));
        }
        problems
    }
}
