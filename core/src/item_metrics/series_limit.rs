//! The series a rule keeps apart, bounded: past the limit, a new series is
//! refused (and folded by the caller into the overflow series) until idle
//! ones are forgotten.

use std::collections::HashMap;

/// How long a series unseen stays counted against the limit.
const IDLE_NANOS: u64 = 5 * 60 * 1_000_000_000;
/// How often a full set looks for idle series at most.
const SWEEP_EVERY_NANOS: u64 = 1_000_000_000;

/// A rule's known series (by their attribute values), at most `max`.
#[derive(Debug)]
pub struct SeriesLimit {
    max: usize,
    /// Each series' last sighting, in Unix nanoseconds.
    known: HashMap<Vec<String>, u64>,
    last_sweep: u64,
}

impl SeriesLimit {
    /// A limit of `max` series (at least one).
    pub fn new(max: usize) -> Self {
        SeriesLimit { max: max.max(1), known: HashMap::new(), last_sweep: 0 }
    }

    /// Whether the series `key`, seen at `now`, is kept apart: it is known,
    /// or there is room for it (once series idle for 5 minutes are
    /// forgotten).
    pub fn admit(&mut self, key: &[String], now: u64) -> bool {
        if let Some(seen) = self.known.get_mut(key) {
            *seen = now;
            return true;
        }
        if self.known.len() >= self.max && now.saturating_sub(self.last_sweep) >= SWEEP_EVERY_NANOS {
            self.last_sweep = now;
            self.known.retain(|_, seen| now.saturating_sub(*seen) < IDLE_NANOS);
        }
        if self.known.len() >= self.max {
            return false;
        }
        self.known.insert(key.to_vec(), now);
        true
    }

    /// How many series are known.
    pub fn len(&self) -> usize {
        self.known.len()
    }

    /// Whether no series is known.
    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> Vec<String> {
        vec![text.to_owned()]
    }

    #[test]
    fn past_the_limit_new_series_are_refused_until_old_ones_go_idle() {
        let mut limit = SeriesLimit::new(2);
        assert!(limit.admit(&key("a"), 0));
        assert!(limit.admit(&key("b"), 0));
        assert!(!limit.admit(&key("c"), 1), "full");
        assert!(limit.admit(&key("a"), 2), "known series stay");
        let later = IDLE_NANOS + 1;
        assert!(limit.admit(&key("a"), later));
        assert!(limit.admit(&key("c"), later), "b went idle and made room");
        assert_eq!(limit.len(), 2);
    }
}
