//! The kernel's monotonic clock (what `bpf_ktime_get_ns` reads), Unix time,
//! and the receiver's periodic work.

/// Unix time minus the kernel's monotonic clock.
pub fn monotonic_to_unix_ns() -> u64 {
    read(libc::CLOCK_REALTIME).saturating_sub(read(libc::CLOCK_MONOTONIC))
}

/// The kernel's monotonic clock now.
pub fn monotonic_now_ns() -> u64 {
    read(libc::CLOCK_MONOTONIC)
}

/// `(monotonic_to_unix_ns(), Unix time now)`.
pub fn clock_now() -> (u64, u64) {
    let offset = monotonic_to_unix_ns();
    (offset, offset.saturating_add(monotonic_now_ns()))
}

/// Ticks every `period`, the first after one period; a late tick delays
/// the next rather than bunching them.
pub fn interval(period: std::time::Duration) -> tokio::time::Interval {
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}

fn read(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
