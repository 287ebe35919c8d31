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
