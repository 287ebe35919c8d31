//! The `trace_correlation` processor: kernel records joined with the
//! application's spans by TCP connection and time, for what the kernel
//! cannot read a `traceparent` from (TLS, HTTP/2, gRPC, any protocol).
//!
//! In a traces pipeline it indexes each server and client span by its
//! connection (the semantic conventions' peer and local addresses), and
//! gives spans the kernel events of their lifetime as span events. In a
//! logs pipeline it stamps kernel records of a TCP connection that carry no
//! trace context with the span on their connection at their time, holding
//! such records up to `max_wait` for the span to arrive. The pipelines of
//! one config that list it share one bounded index.

mod config;
mod index;
mod spans;

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use flowtel_core::{
    Payload,
    attributes::{find_text, socket_address},
    component::{ComponentError, Processor, ProcessorContext},
    schema::{attr, event},
    self_telemetry::{Counter, Gauge},
    time::now_unix_nanos,
};
use opentelemetry_proto::tonic::{
    common::v1::InstrumentationScope,
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    resource::v1::Resource,
    trace::v1::{ResourceSpans, ScopeSpans, Span, span},
};
use tokio::time::Instant;

pub use self::{
    config::TraceCorrelationConfig,
    index::{Connection, Index, KernelEvent, SpanContext},
    spans::Side,
};

/// How often held records look for their span again.
const RECHECK: Duration = Duration::from_millis(250);

/// Kernel records that become span events.
const SPAN_EVENT_RECORDS: [&str; 4] =
    [event::PACKET_DROP, event::TCP_RETRANSMIT, event::TCP_RESET, event::TCP_CONNECTION];
/// Kernel records that belong to a connection (and may get its span's context).
const CONNECTION_RECORDS: [&str; 5] =
    [event::FLOW, event::PACKET_DROP, event::TCP_RETRANSMIT, event::TCP_RESET, event::TCP_CONNECTION];
/// Record attributes a span event leaves out: the span already names the connection.
const CONNECTION_ATTRIBUTES: [&str; 6] = [
    attr::SOURCE_ADDRESS,
    attr::SOURCE_PORT,
    attr::DESTINATION_ADDRESS,
    attr::DESTINATION_PORT,
    attr::NETWORK_TYPE,
    attr::NETWORK_TRANSPORT,
];

/// flowtel's own metrics of the processor.
#[derive(Clone, Default)]
struct Counters {
    matched: Counter,
    expired: Counter,
    overflow: Counter,
    span_events: Counter,
    span_events_dropped: Counter,
    evicted: Counter,
    connections: Gauge,
}

/// One `trace_correlation` config: the index its pipelines share.
pub struct TraceCorrelation {
    config: TraceCorrelationConfig,
    shared: Arc<Mutex<Shared>>,
}

struct Shared {
    index: Index,
    /// Evictions already added to the counter.
    evicted_counted: u64,
}

impl TraceCorrelation {
    /// The shared part of a (validated) config.
    pub fn new(config: TraceCorrelationConfig) -> Self {
        let index = Index::new(config.max_connections, config.max_per_connection);
        TraceCorrelation { config, shared: Arc::new(Mutex::new(Shared { index, evicted_counted: 0 })) }
    }

    /// A processor for one pipeline.
    pub fn processor(&self) -> TraceCorrelationProcessor {
        TraceCorrelationProcessor {
            config: self.config.clone(),
            shared: self.shared.clone(),
            counters: Counters::default(),
            held_records: VecDeque::new(),
            held_spans: VecDeque::new(),
            next_check: None,
        }
    }
}

/// The resource and scope a held item came with, shared by the items of
/// one scope.
type Origin = Arc<(Option<Resource>, Option<InstrumentationScope>)>;

/// Items released together, grouped by the origin they came with (runs of
/// one origin stay together; held items keep their arrival order).
fn by_origin<T>(items: impl IntoIterator<Item = (Origin, T)>) -> Vec<(Origin, Vec<T>)> {
    let mut groups: Vec<(Origin, Vec<T>)> = Vec::new();
    for (origin, item) in items {
        match groups.last_mut() {
            Some((last, group)) if Arc::ptr_eq(last, &origin) => group.push(item),
            _ => groups.push((origin, vec![item])),
        }
    }
    groups
}

/// A kernel record waiting for the span of its connection.
struct HeldRecord {
    until: Instant,
    candidates: [Connection; 4],
    origin: Origin,
    record: LogRecord,
}

/// A span waiting for the kernel events of its lifetime.
struct HeldSpan {
    until: Instant,
    origin: Origin,
    span: Span,
}

/// The `trace_correlation` processor of one pipeline.
pub struct TraceCorrelationProcessor {
    config: TraceCorrelationConfig,
    shared: Arc<Mutex<Shared>>,
    counters: Counters,
    held_records: VecDeque<HeldRecord>,
    held_spans: VecDeque<HeldSpan>,
    next_check: Option<Instant>,
}

/// The connections a kernel record of a TCP connection can be on (either
/// end may be the client; a span may not know the server's port).
fn record_connections(record: &LogRecord) -> Option<[Connection; 4]> {
    if !CONNECTION_RECORDS.contains(&record.event_name.as_str()) {
        return None;
    }
    let attributes = &record.attributes;
    if find_text(attributes, attr::NETWORK_TRANSPORT).as_deref() != Some("tcp") {
        return None;
    }
    let source = socket_address(attributes, attr::SOURCE_ADDRESS, attr::SOURCE_PORT)?;
    let destination = socket_address(attributes, attr::DESTINATION_ADDRESS, attr::DESTINATION_PORT)?;
    let [a, b] = Connection::candidates(source, destination);
    let any_port = |c: Connection| Connection { server_port: 0, ..c };
    Some([a, b, any_port(a), any_port(b)])
}

/// What a kernel record shows as a span event.
fn kernel_event(record: &LogRecord) -> KernelEvent {
    KernelEvent {
        time: record.time_unix_nano,
        name: record.event_name.clone(),
        attributes: record
            .attributes
            .iter()
            .filter(|kv| !CONNECTION_ATTRIBUTES.contains(&kv.key.as_str()))
            .cloned()
            .collect(),
    }
}

fn stamp(record: &mut LogRecord, context: &SpanContext) {
    record.trace_id = context.trace_id.to_vec();
    record.span_id = context.span_id.to_vec();
    record.flags = context.flags;
}

impl TraceCorrelationProcessor {
    /// Mirrors the index's size and evictions into flowtel's metrics.
    fn report_index(&self, shared: &mut Shared) {
        self.counters.connections.set(shared.index.len() as i64);
        self.counters.evicted.add(shared.index.evicted - shared.evicted_counted);
        shared.evicted_counted = shared.index.evicted;
    }

    fn process_logs(&mut self, resources: &mut Vec<ResourceLogs>) {
        let now = Instant::now();
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        for resource in resources.iter_mut() {
            for scope in &mut resource.scope_logs {
                let origin: Origin = Arc::new((resource.resource.clone(), scope.scope.clone()));
                let mut kept = Vec::with_capacity(scope.log_records.len());
                for mut record in scope.log_records.drain(..) {
                    let Some(candidates) = record_connections(&record) else {
                        kept.push(record);
                        continue;
                    };
                    if SPAN_EVENT_RECORDS.contains(&record.event_name.as_str()) {
                        let event = Arc::new(kernel_event(&record));
                        // Either end may be the client.
                        for connection in &candidates[..2] {
                            shared.index.add_event(connection.client, event.clone());
                        }
                    }
                    if !record.trace_id.is_empty() {
                        kept.push(record);
                    } else if let Some(context) = shared.index.span_at(&candidates, record.time_unix_nano, false) {
                        stamp(&mut record, &context);
                        self.counters.matched.inc();
                        kept.push(record);
                    } else if self.held_records.len() >= self.config.max_held_records {
                        self.counters.overflow.inc();
                        kept.push(record);
                    } else {
                        self.held_records.push_back(HeldRecord {
                            until: now + self.config.max_wait,
                            candidates,
                            origin: origin.clone(),
                            record,
                        });
                    }
                }
                scope.log_records = kept;
            }
            resource.scope_logs.retain(|scope| !scope.log_records.is_empty());
        }
        resources.retain(|resource| !resource.scope_logs.is_empty());
        self.report_index(&mut shared);
        drop(shared);
        if !self.held_records.is_empty() && self.next_check.is_none() {
            self.next_check = Some(now + RECHECK);
        }
    }

    fn process_traces(&mut self, resources: &mut Vec<ResourceSpans>) {
        let now = Instant::now();
        let now_unix = now_unix_nanos();
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        for resource in resources.iter_mut() {
            for scope in &mut resource.scope_spans {
                let origin: Origin = Arc::new((resource.resource.clone(), scope.scope.clone()));
                let mut kept = Vec::with_capacity(scope.spans.len());
                for span in scope.spans.drain(..) {
                    let Some(side) = spans::side(&span) else {
                        kept.push(span);
                        continue;
                    };
                    if let Some(context) = spans::context(&span, &side) {
                        match side {
                            Side::Server(connection) => {
                                shared.index.add_span(connection, context);
                                if let Ok(caller) = span.parent_span_id.as_slice().try_into() {
                                    shared.index.add_call(context.trace_id, caller, connection);
                                }
                            }
                            Side::Client(Some(connection)) => shared.index.add_span(connection, context),
                            Side::Client(None) => shared.index.add_client_span(context),
                        }
                    }
                    // Held until `span_wait` after its end, for kernel events still on
                    // their way (never longer: an end in the future is a skewed clock).
                    let span_wait = self.config.span_wait.as_nanos() as u64;
                    let wait =
                        span.end_time_unix_nano.saturating_add(span_wait).saturating_sub(now_unix).min(span_wait);
                    if wait == 0 || self.held_spans.len() >= self.config.max_held_spans {
                        kept.push(span);
                    } else {
                        self.held_spans.push_back(HeldSpan {
                            until: now + Duration::from_nanos(wait),
                            origin: origin.clone(),
                            span,
                        });
                    }
                }
                for span in &mut kept {
                    self.add_span_events(&mut shared.index, span);
                }
                scope.spans = kept;
            }
            resource.scope_spans.retain(|scope| !scope.spans.is_empty());
        }
        resources.retain(|resource| !resource.scope_spans.is_empty());
        self.report_index(&mut shared);
    }

    /// Gives a span the kernel events of its connection during its
    /// lifetime, up to `max_span_events` (the rest counted on the span).
    fn add_span_events(&self, index: &mut Index, span: &mut Span) {
        let connection = match spans::side(span) {
            Some(Side::Server(connection) | Side::Client(Some(connection))) => connection,
            Some(Side::Client(None)) => {
                let (Ok(trace), Ok(own)) = (span.trace_id.as_slice().try_into(), span.span_id.as_slice().try_into())
                else {
                    return;
                };
                match index.call(trace, own) {
                    Some(connection) => connection,
                    None => return,
                }
            }
            None => return,
        };
        let events = index.events_during(connection, span.start_time_unix_nano, span.end_time_unix_nano);
        let room = self.config.max_span_events.saturating_sub(span.events.len());
        let dropped = events.len().saturating_sub(room);
        for event in events.into_iter().take(room) {
            span.events.push(span::Event {
                time_unix_nano: event.time,
                name: event.name.clone(),
                attributes: event.attributes.clone(),
                dropped_attributes_count: 0,
            });
            self.counters.span_events.inc();
        }
        if dropped > 0 {
            span.dropped_events_count += dropped as u32;
            self.counters.span_events_dropped.add(dropped as u64);
        }
    }

    /// Releases held records that found their span or waited long enough
    /// (all of them when `everything`), and held spans whose wait is over.
    fn release(&mut self, now: Instant, everything: bool, out: &mut Vec<Payload>) {
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        let mut records = Vec::new();
        let mut still = VecDeque::with_capacity(self.held_records.len());
        for mut held in self.held_records.drain(..) {
            let last_chance = everything || held.until <= now;
            if let Some(context) = shared.index.span_at(&held.candidates, held.record.time_unix_nano, last_chance) {
                stamp(&mut held.record, &context);
                self.counters.matched.inc();
                records.push(held);
            } else if last_chance {
                self.counters.expired.inc();
                records.push(held);
            } else {
                still.push_back(held);
            }
        }
        self.held_records = still;
        let mut spans = Vec::new();
        while self.held_spans.front().is_some_and(|held| everything || held.until <= now) {
            if let Some(mut held) = self.held_spans.pop_front() {
                self.add_span_events(&mut shared.index, &mut held.span);
                spans.push(held);
            }
        }
        self.report_index(&mut shared);
        drop(shared);
        let records = by_origin(records.into_iter().map(|held| (held.origin, held.record)));
        if !records.is_empty() {
            out.push(Payload::Logs(
                records
                    .into_iter()
                    .map(|(origin, log_records)| ResourceLogs {
                        resource: origin.0.clone(),
                        scope_logs: vec![ScopeLogs { scope: origin.1.clone(), log_records, ..Default::default() }],
                        ..Default::default()
                    })
                    .collect(),
            ));
        }
        let spans = by_origin(spans.into_iter().map(|held| (held.origin, held.span)));
        if !spans.is_empty() {
            out.push(Payload::Traces(
                spans
                    .into_iter()
                    .map(|(origin, spans)| ResourceSpans {
                        resource: origin.0.clone(),
                        scope_spans: vec![ScopeSpans { scope: origin.1.clone(), spans, ..Default::default() }],
                        ..Default::default()
                    })
                    .collect(),
            ));
        }
        self.next_check = (!self.held_records.is_empty()).then(|| now + RECHECK);
    }
}

#[async_trait::async_trait]
impl Processor for TraceCorrelationProcessor {
    async fn start(&mut self, ctx: ProcessorContext) -> Result<(), ComponentError> {
        let id = ctx.id.to_string();
        let records = |result| {
            ctx.metrics.counter(
                "flowtel_trace_correlation_records_total",
                "Kernel records of TCP connections without a trace context, by outcome: matched (stamped with their connection's span), expired (no span within max_wait), overflow (not held: max_held_records).",
                &[("processor", &id), ("result", result)],
            )
        };
        let processor = [("processor", id.as_str())];
        self.counters = Counters {
            matched: records("matched"),
            expired: records("expired"),
            overflow: records("overflow"),
            span_events: ctx.metrics.counter(
                "flowtel_trace_correlation_span_events_total",
                "Kernel events added to spans as span events.",
                &processor,
            ),
            span_events_dropped: ctx.metrics.counter(
                "flowtel_trace_correlation_span_events_dropped_total",
                "Kernel events left out of spans past max_span_events (counted in the spans' dropped_events_count).",
                &processor,
            ),
            evicted: ctx.metrics.counter(
                "flowtel_trace_correlation_connections_evicted_total",
                "Connections the index forgot to stay within max_connections.",
                &processor,
            ),
            connections: ctx.metrics.gauge(
                "flowtel_trace_correlation_connections",
                "Connections in the index.",
                &processor,
            ),
        };
        Ok(())
    }

    fn process(&mut self, payload: Payload, out: &mut Vec<Payload>) {
        let mut payload = payload.decoded();
        match &mut payload {
            Payload::Logs(resources) => self.process_logs(resources),
            Payload::Traces(resources) => self.process_traces(resources),
            Payload::Metrics(_) | Payload::Encoded(_) => {}
        }
        if !payload.is_empty() {
            out.push(payload);
        }
    }

    fn holds_data(&self) -> bool {
        !self.held_records.is_empty() || !self.held_spans.is_empty()
    }

    fn deadline(&self) -> Option<Instant> {
        let span = self.held_spans.front().map(|held| held.until);
        match (self.next_check, span) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn on_deadline(&mut self, now: Instant, out: &mut Vec<Payload>) {
        self.release(now, false, out);
    }

    fn flush(&mut self, out: &mut Vec<Payload>) {
        self.release(Instant::now(), true, out);
    }
}

#[cfg(test)]
mod tests;
