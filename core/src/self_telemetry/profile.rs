//! `/debug/pprof/profile?seconds=N`: a CPU profile of flowtel in pprof's
//! format (gzipped protobuf, as Go's `net/http/pprof` serves it), for
//! `go tool pprof` or any pprof viewer.

use std::{io::Write as _, sync::atomic::AtomicBool, time::Duration};

use pprof::protos::Message as _;

/// Samples per second (Go's default rate).
const FREQUENCY: i32 = 100;
/// How long a profile may last.
const MAX_SECONDS: u64 = 60;
/// Only one profile at a time: the sampler is process-wide.
static PROFILING: AtomicBool = AtomicBool::new(false);

/// Why no profile was taken.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// Another profile is being taken.
    #[error("a profile is already being taken; try again when it ends")]
    Busy,
    /// `seconds` is out of range.
    #[error("seconds must be 1 to {MAX_SECONDS}")]
    BadDuration,
    /// The sampler or the encoding failed.
    #[error("profiling failed: {0}")]
    Failed(String),
}

/// Samples every thread for `seconds`, then returns the gzipped profile.
pub async fn cpu_profile(seconds: u64) -> Result<Vec<u8>, ProfileError> {
    use std::sync::atomic::Ordering;
    if !(1..=MAX_SECONDS).contains(&seconds) {
        return Err(ProfileError::BadDuration);
    }
    if PROFILING.swap(true, Ordering::AcqRel) {
        return Err(ProfileError::Busy);
    }
    let result = async {
        let guard = pprof::ProfilerGuardBuilder::default()
            .frequency(FREQUENCY)
            .blocklist(&["libc", "libgcc", "pthread", "vdso"])
            .build()
            .map_err(|err| ProfileError::Failed(err.to_string()))?;
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let report = guard.report().build().map_err(|err| ProfileError::Failed(err.to_string()))?;
        drop(guard);
        let profile = report.pprof().map_err(|err| ProfileError::Failed(err.to_string()))?;
        let mut encoded = Vec::new();
        profile.encode(&mut encoded).map_err(|err| ProfileError::Failed(err.to_string()))?;
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gzip.write_all(&encoded).map_err(|err| ProfileError::Failed(err.to_string()))?;
        gzip.finish().map_err(|err| ProfileError::Failed(err.to_string()))
    }
    .await;
    PROFILING.store(false, Ordering::Release);
    result
}
