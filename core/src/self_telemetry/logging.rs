//! flowtel's own logs, through `tracing`.

use std::io::IsTerminal as _;

use tracing_subscriber::{EnvFilter, fmt};

use super::{LogEncoding, LogsConfig};

/// Installs the global log subscriber. `RUST_LOG`, when set, overrides the
/// configured level. Calling it again is harmless (the first call wins).
pub fn init_logging(config: &LogsConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(config.level.as_str()));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal());
    let _ = match config.encoding {
        LogEncoding::Console => builder.try_init(),
        LogEncoding::Json => builder.json().try_init(),
    };
}

/// Lets a repeated warning through at most once per period, so a flood of
/// bad input is counted in full but logged in samples.
#[derive(Debug)]
pub struct LogLimiter {
    period: std::time::Duration,
    last: std::sync::Mutex<Option<std::time::Instant>>,
}

impl LogLimiter {
    /// A limiter letting one message through per `period`.
    pub fn new(period: std::time::Duration) -> Self {
        LogLimiter { period, last: std::sync::Mutex::new(None) }
    }

    /// Whether to log now (and, if so, the period starts again).
    pub fn due(&self) -> bool {
        let mut last = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = std::time::Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < self.period) {
            return false;
        }
        *last = Some(now);
        true
    }
}

impl Default for LogLimiter {
    /// One message every 10 seconds.
    fn default() -> Self {
        LogLimiter::new(std::time::Duration::from_secs(10))
    }
}
