//! `processors::trace_correlation` config.

use std::time::Duration;

use flowtel_core::config::Validate;
use serde::Deserialize;

/// The longest a record or span may be held.
const MAX_WAIT: Duration = Duration::from_secs(3600);

/// `processors::trace_correlation`: kernel records joined with the
/// application's spans by connection and time.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TraceCorrelationConfig {
    /// How long a kernel record of a TCP connection without a trace context
    /// is held for a span of its connection to arrive (SDKs export spans in
    /// batches, 5 s apart by default, after the kernel saw the traffic).
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    /// How long after its end a span with a connection is held for kernel
    /// events of its lifetime still on their way (most arrive before it).
    #[serde(with = "humantime_serde")]
    pub span_wait: Duration,
    /// Connections the shared index keeps spans and kernel events of; the
    /// least recently used is forgotten past it (counted).
    pub max_connections: usize,
    /// Spans and kernel events kept per connection (the oldest go first).
    pub max_per_connection: usize,
    /// Records held at once (by each logs pipeline; a kernel record takes
    /// about 1.5 KiB); past it a record waits no more and goes on without a
    /// context (counted).
    pub max_held_records: usize,
    /// Spans held at once (by each traces pipeline); past it a span goes on
    /// with the events known so far.
    pub max_held_spans: usize,
    /// Kernel events a span gets at most; the rest are counted in its
    /// `dropped_events_count`.
    pub max_span_events: usize,
}

impl Default for TraceCorrelationConfig {
    fn default() -> Self {
        TraceCorrelationConfig {
            max_wait: Duration::from_secs(10),
            span_wait: Duration::from_secs(1),
            max_connections: 10_000,
            max_per_connection: 256,
            max_held_records: 20_000,
            max_held_spans: 20_000,
            max_span_events: 32,
        }
    }
}

impl Validate for TraceCorrelationConfig {
    fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        for (field, value) in [("max_wait", self.max_wait), ("span_wait", self.span_wait)] {
            if value > MAX_WAIT {
                problems.push((field.into(), format!("must be at most {}", humantime::format_duration(MAX_WAIT))));
            }
        }
        for (field, value) in [
            ("max_connections", self.max_connections),
            ("max_per_connection", self.max_per_connection),
            ("max_held_records", self.max_held_records),
            ("max_held_spans", self.max_held_spans),
        ] {
            if value == 0 {
                problems.push((field.into(), "must be more than 0".into()));
            }
        }
        problems
    }
}
