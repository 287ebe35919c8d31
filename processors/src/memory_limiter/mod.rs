//! The `memory_limiter` processor: when the memory flowtel holds goes above
//! the soft limit (`limit_mib - spike_limit_mib`), the receivers feeding its
//! pipeline are refused, so they push back: the `otlp` receiver answers with
//! a retryable status (gRPC `UNAVAILABLE`, HTTP 503), the `ebpf` receiver
//! counts what it could not hand over. Below the soft limit data flows again.
//! Data already in the pipeline goes on: nothing is dropped here.
//!
//! Memory is the heap flowtel holds (counted by its allocator), measured
//! when data arrives, at most every `check_interval`.

mod config;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Instant,
};

use flowtel_core::{Payload, component::Processor, intake::Admission, memory};

pub use config::MemoryLimiterConfig;

/// The limiter's state, shared with the receivers' outputs.
pub struct MemoryGate {
    soft_limit: u64,
    check_interval_ns: u64,
    started: Instant,
    /// Nanoseconds since `started` of the last measurement (+1; 0: never).
    last_check: AtomicU64,
    refusing: AtomicBool,
    measure: fn() -> Option<u64>,
}

impl MemoryGate {
    /// A gate refusing above `soft_limit` bytes of what `measure` reports.
    pub fn new(soft_limit: u64, check_interval: std::time::Duration, measure: fn() -> Option<u64>) -> Self {
        MemoryGate {
            soft_limit,
            check_interval_ns: check_interval.as_nanos() as u64,
            started: Instant::now(),
            last_check: AtomicU64::new(0),
            refusing: AtomicBool::new(false),
            measure,
        }
    }
}

impl Admission for MemoryGate {
    fn refusing(&self) -> bool {
        let now = self.started.elapsed().as_nanos() as u64 + 1;
        let last = self.last_check.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= self.check_interval_ns)
            && self.last_check.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
            && let Some(used) = (self.measure)()
        {
            let above = used > self.soft_limit;
            if self.refusing.swap(above, Ordering::Relaxed) != above {
                let mib = used >> 20;
                if above {
                    tracing::warn!(
                        used_mib = mib,
                        soft_limit_mib = self.soft_limit >> 20,
                        "Memory above the soft limit: refusing data."
                    );
                } else {
                    tracing::info!(used_mib = mib, "Memory below the soft limit again: taking data.");
                }
            }
        }
        self.refusing.load(Ordering::Relaxed)
    }
}

/// The `memory_limiter` processor.
pub struct MemoryLimiter {
    gate: Arc<MemoryGate>,
}

impl MemoryLimiter {
    /// A limiter with the given (validated) config, measuring flowtel's memory.
    pub fn new(config: &MemoryLimiterConfig) -> Self {
        let (soft, _) = config.limits(memory::total().unwrap_or(u64::MAX));
        MemoryLimiter { gate: Arc::new(MemoryGate::new(soft, config.check_interval, memory::in_use)) }
    }
}

impl Processor for MemoryLimiter {
    fn passes_encoded(&self) -> bool {
        true
    }

    fn process(&mut self, payload: Payload, out: &mut Vec<Payload>) {
        out.push(payload);
    }

    fn admission(&self) -> Option<Arc<dyn Admission>> {
        Some(self.gate.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::atomic::AtomicU64, time::Duration};

    use super::*;

    static USED: AtomicU64 = AtomicU64::new(0);

    fn used() -> Option<u64> {
        Some(USED.load(Ordering::Relaxed))
    }

    #[test]
    fn refuses_above_the_soft_limit_and_recovers_below_it() {
        let gate = MemoryGate::new(100, Duration::ZERO, used);
        USED.store(50, Ordering::Relaxed);
        assert!(!gate.refusing());
        USED.store(150, Ordering::Relaxed);
        assert!(gate.refusing());
        USED.store(99, Ordering::Relaxed);
        assert!(!gate.refusing());
    }

    #[test]
    fn limits_follow_the_collectors_rules() {
        let mib = |n: u64| n << 20;
        let config =
            |limit_mib, spike_limit_mib| MemoryLimiterConfig { limit_mib, spike_limit_mib, ..Default::default() };
        assert_eq!(config(1000, 0).limits(0), (mib(800), mib(1000)), "spike defaults to 20%");
        assert_eq!(config(1000, 100).limits(0), (mib(900), mib(1000)));
        let by_share = MemoryLimiterConfig { limit_percentage: 50, spike_limit_percentage: 10, ..Default::default() };
        assert_eq!(by_share.limits(1000), (400, 500));
        use flowtel_core::config::Validate;
        assert_eq!(MemoryLimiterConfig::default().validate()[0].0, "limit_mib");
        assert_eq!(config(100, 100).validate()[0].0, "spike_limit_mib");
    }
}
