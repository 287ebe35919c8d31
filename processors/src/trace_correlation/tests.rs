use std::time::Duration;

use flowtel_core::Payload;
use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, KeyValue, any_value::Value},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    trace::v1::{ResourceSpans, ScopeSpans, Span, span::SpanKind},
};
use tokio::time::Instant;

use super::*;

const TRACE: [u8; 16] = [0xab; 16];
const CALLER: [u8; 8] = [0xca; 8];
const SERVER_SPAN: [u8; 8] = [0x5e; 8];
/// The span's lifetime (Unix ns), long ago: no span is held for events.
const START: u64 = 1_000_000_000_000;
const END: u64 = START + 50_000_000;

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

fn text(key: &str, value: &str) -> KeyValue {
    kv(key, Value::StringValue(value.into()))
}

fn int(key: &str, value: i64) -> KeyValue {
    kv(key, Value::IntValue(value))
}

/// A server span as Python's WSGI instrumentation sends it (older names):
/// client 10.0.0.1:40000 called port 8080.
fn server_span() -> Span {
    Span {
        trace_id: TRACE.to_vec(),
        span_id: SERVER_SPAN.to_vec(),
        parent_span_id: CALLER.to_vec(),
        kind: SpanKind::Server as i32,
        start_time_unix_nano: START,
        end_time_unix_nano: END,
        flags: 0x301,
        attributes: vec![
            text("net.peer.ip", "10.0.0.1"),
            int("net.peer.port", 40_000),
            int("net.host.port", 8080),
            text("net.host.name", "server"),
        ],
        ..Default::default()
    }
}

/// The client span that made the call: it names only the server.
fn client_span() -> Span {
    Span {
        trace_id: TRACE.to_vec(),
        span_id: CALLER.to_vec(),
        kind: SpanKind::Client as i32,
        start_time_unix_nano: START - 1_000_000,
        end_time_unix_nano: END + 1_000_000,
        attributes: vec![text("server.address", "server"), int("server.port", 8080)],
        ..Default::default()
    }
}

/// A kernel record from the server to the client at `time`.
fn record(event_name: &str, time: u64) -> LogRecord {
    LogRecord {
        time_unix_nano: time,
        event_name: event_name.into(),
        attributes: vec![
            text("network.transport", "tcp"),
            text("source.address", "10.0.0.2"),
            int("source.port", 8080),
            text("destination.address", "10.0.0.1"),
            int("destination.port", 40_000),
            int("network.tcp.retransmit.segments", 1),
        ],
        ..Default::default()
    }
}

fn logs(records: Vec<LogRecord>) -> Payload {
    Payload::Logs(vec![ResourceLogs {
        scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }],
        ..Default::default()
    }])
}

fn traces(spans: Vec<Span>) -> Payload {
    Payload::Traces(vec![ResourceSpans {
        scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
        ..Default::default()
    }])
}

fn records_of(out: &[Payload]) -> Vec<LogRecord> {
    out.iter()
        .filter_map(|p| match p {
            Payload::Logs(resources) => Some(resources),
            _ => None,
        })
        .flatten()
        .flat_map(|r| &r.scope_logs)
        .flat_map(|s| s.log_records.clone())
        .collect()
}

fn spans_of(out: &[Payload]) -> Vec<Span> {
    out.iter()
        .filter_map(|p| match p {
            Payload::Traces(resources) => Some(resources),
            _ => None,
        })
        .flatten()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| s.spans.clone())
        .collect()
}

/// A logs and a traces processor sharing one index.
fn pipelines(config: TraceCorrelationConfig) -> (TraceCorrelationProcessor, TraceCorrelationProcessor) {
    let shared = TraceCorrelation::new(config);
    (shared.processor(), shared.processor())
}

#[test]
fn a_record_on_a_spans_connection_gets_the_callers_context() {
    let (mut logs_pipeline, mut traces_pipeline) = pipelines(TraceCorrelationConfig::default());
    let mut out = Vec::new();
    traces_pipeline.process(traces(vec![server_span()]), &mut out);
    out.clear();
    logs_pipeline.process(logs(vec![record("network.tcp.retransmit", START + 10_000_000)]), &mut out);
    let records = records_of(&out);
    assert_eq!(records.len(), 1);
    // The span id the request's traceparent carried: the server span's caller.
    assert_eq!((records[0].trace_id.as_slice(), records[0].span_id.as_slice()), (&TRACE[..], &CALLER[..]));
    assert_eq!(records[0].flags, 1);
    assert_eq!(logs_pipeline.counters.matched.get(), 1);
}

#[test]
fn a_record_waits_for_its_span_and_no_longer_than_max_wait() {
    let config = TraceCorrelationConfig { max_wait: Duration::from_secs(5), ..Default::default() };
    let (mut logs_pipeline, mut traces_pipeline) = pipelines(config);
    let mut out = Vec::new();
    // Before the span: held, not passed on.
    logs_pipeline.process(logs(vec![record("network.packet.drop", START + 1)]), &mut out);
    // A record of another connection, and one outside any span.
    let mut elsewhere = record("network.packet.drop", START + 1);
    elsewhere.attributes[3] = text("destination.address", "10.0.0.9");
    logs_pipeline.process(logs(vec![elsewhere]), &mut out);
    assert!(records_of(&out).is_empty());
    assert!(logs_pipeline.deadline().is_some());

    traces_pipeline.process(traces(vec![server_span()]), &mut Vec::new());
    logs_pipeline.on_deadline(Instant::now(), &mut out);
    let released = records_of(&out);
    assert_eq!(released.len(), 1, "the record whose span arrived");
    assert_eq!(released[0].trace_id, TRACE);

    out.clear();
    logs_pipeline.on_deadline(Instant::now() + Duration::from_secs(6), &mut out);
    let expired = records_of(&out);
    assert_eq!(expired.len(), 1, "the other record, after max_wait, without a context");
    assert!(expired[0].trace_id.is_empty());
    assert_eq!((logs_pipeline.counters.matched.get(), logs_pipeline.counters.expired.get()), (1, 1));
    assert!(logs_pipeline.deadline().is_none());
}

#[test]
fn records_with_a_context_or_without_a_connection_pass_unchanged() {
    let (mut logs_pipeline, _) = pipelines(TraceCorrelationConfig::default());
    let mut traced = record("network.tcp.retransmit", START);
    traced.trace_id = vec![1; 16];
    traced.span_id = vec![2; 8];
    let mut udp = record("network.flow", START);
    udp.attributes[0] = text("network.transport", "udp");
    let other = LogRecord { body: None, event_name: "app.log".into(), ..Default::default() };
    let mut out = Vec::new();
    let input = vec![traced, udp, other];
    logs_pipeline.process(logs(input.clone()), &mut out);
    assert_eq!(records_of(&out), input);
    assert!(logs_pipeline.deadline().is_none());
}

#[test]
fn spans_get_the_kernel_events_of_their_lifetime_bounded() {
    let config = TraceCorrelationConfig { max_span_events: 2, ..Default::default() };
    let (mut logs_pipeline, mut traces_pipeline) = pipelines(config);
    let mut out = Vec::new();
    let mut events = vec![
        record("network.tcp.retransmit", START + 1_000_000),
        record("network.packet.drop", START + 2_000_000),
        record("network.tcp.retransmit", START + 3_000_000),
        // After the span: not its event.
        record("network.tcp.retransmit", END + 100_000_000),
        // Flows are not events.
        record("network.flow", START + 4_000_000),
    ];
    events[1].attributes.push(text("network.drop.reason", "NETFILTER_DROP"));
    logs_pipeline.process(logs(events), &mut out);
    out.clear();
    traces_pipeline.process(traces(vec![server_span(), client_span()]), &mut out);
    let spans = spans_of(&out);
    assert_eq!(spans.len(), 2);
    for span in &spans {
        let names: Vec<&str> = span.events.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["network.tcp.retransmit", "network.packet.drop"], "{:?}", span.kind);
        assert_eq!(span.dropped_events_count, 1, "the third event of its lifetime");
        let drop = &span.events[1];
        assert!(drop.attributes.iter().any(|kv| kv.key == "network.drop.reason"));
        assert!(!drop.attributes.iter().any(|kv| kv.key == "source.address"), "the span names the connection");
    }
    assert_eq!(traces_pipeline.counters.span_events.get(), 4);
    assert_eq!(traces_pipeline.counters.span_events_dropped.get(), 2);
}

#[test]
fn a_client_span_finds_its_connection_through_the_server_span_it_called() {
    let (_, mut traces_pipeline) = pipelines(TraceCorrelationConfig::default());
    traces_pipeline.process(traces(vec![server_span()]), &mut Vec::new());
    let mut shared = traces_pipeline.shared.lock().unwrap();
    assert_eq!(
        shared.index.call(TRACE, CALLER),
        Some(Connection { client: "10.0.0.1:40000".parse().unwrap(), server_port: 8080 })
    );
}

#[test]
fn a_span_that_ends_later_is_held_for_its_events() {
    let config = TraceCorrelationConfig { span_wait: Duration::from_secs(2), ..Default::default() };
    let (mut logs_pipeline, mut traces_pipeline) = pipelines(config);
    let now = flowtel_core::time::now_unix_nanos();
    let mut span = server_span();
    (span.start_time_unix_nano, span.end_time_unix_nano) = (now - 10_000_000, now);
    let mut out = Vec::new();
    traces_pipeline.process(traces(vec![span]), &mut out);
    assert!(spans_of(&out).is_empty(), "held");
    logs_pipeline.process(logs(vec![record("network.tcp.reset", now - 5_000_000)]), &mut Vec::new());
    traces_pipeline.on_deadline(Instant::now() + Duration::from_secs(3), &mut out);
    let spans = spans_of(&out);
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].events.len(), 1, "the reset that arrived after the span");
}

#[test]
fn the_index_stays_within_its_bound_and_counts_what_it_forgets() {
    let config = TraceCorrelationConfig { max_connections: 10_000, ..Default::default() };
    let (_, mut traces_pipeline) = pipelines(config);
    let spans: Vec<Span> = (0..10_500u32)
        .map(|i| {
            let mut span = server_span();
            span.attributes[0] = text("net.peer.ip", &format!("10.{}.{}.{}", i >> 16, (i >> 8) & 0xff, i & 0xff));
            span
        })
        .collect();
    traces_pipeline.process(traces(spans), &mut Vec::new());
    assert_eq!(traces_pipeline.shared.lock().unwrap().index.len(), 10_000);
    assert_eq!(traces_pipeline.counters.evicted.get(), 500);
    assert_eq!(traces_pipeline.counters.connections.get(), 10_000);
}

#[test]
fn past_max_held_records_a_record_goes_on_at_once_and_is_counted() {
    let config = TraceCorrelationConfig { max_held_records: 1, ..Default::default() };
    let (mut logs_pipeline, _) = pipelines(config);
    let mut out = Vec::new();
    let records = vec![record("network.packet.drop", START), record("network.packet.drop", START + 1)];
    logs_pipeline.process(logs(records), &mut out);
    assert_eq!(records_of(&out).len(), 1, "the second record is not held");
    assert_eq!(logs_pipeline.counters.overflow.get(), 1);
    out.clear();
    logs_pipeline.flush(&mut out);
    assert_eq!(records_of(&out).len(), 1, "the held one, at shutdown");
    assert_eq!(logs_pipeline.counters.expired.get(), 1);
}

#[test]
fn hostile_span_times_neither_panic_nor_hold_a_span_past_span_wait() {
    let config = TraceCorrelationConfig { span_wait: Duration::from_secs(1), ..Default::default() };
    let (mut logs_pipeline, mut traces_pipeline) = pipelines(config);
    let mut out = Vec::new();
    let mut future = server_span();
    (future.start_time_unix_nano, future.end_time_unix_nano) = (u64::MAX - 1, u64::MAX);
    let mut backwards = server_span();
    (backwards.start_time_unix_nano, backwards.end_time_unix_nano) = (END, START);
    traces_pipeline.process(traces(vec![future, backwards]), &mut out);
    logs_pipeline.process(logs(vec![record("network.tcp.reset", u64::MAX)]), &mut Vec::new());
    traces_pipeline.on_deadline(Instant::now() + Duration::from_millis(1100), &mut out);
    assert_eq!(spans_of(&out).len(), 2, "released within span_wait");
}

#[test]
fn waits_past_an_hour_are_refused() {
    use flowtel_core::config::Validate;
    let config = TraceCorrelationConfig { max_wait: Duration::from_secs(7200), ..Default::default() };
    assert_eq!(config.validate()[0].0, "max_wait");
}

#[test]
fn a_grpc_server_span_names_its_peer_in_brackets_and_ports_as_text() {
    let span = Span {
        kind: SpanKind::Server as i32,
        attributes: vec![text("net.peer.ip", "[::1]"), text("net.peer.port", "50051")],
        ..Default::default()
    };
    assert_eq!(
        spans::side(&span),
        Some(Side::Server(Connection { client: "[::1]:50051".parse().unwrap(), server_port: 0 }))
    );
}

#[test]
fn records_held_from_one_resource_are_released_under_it_together() {
    let (mut logs_pipeline, _) = pipelines(TraceCorrelationConfig::default());
    let records = vec![record("network.packet.drop", START), record("network.tcp.retransmit", START + 1)];
    logs_pipeline.process(logs(records), &mut Vec::new());
    let mut out = Vec::new();
    logs_pipeline.flush(&mut out);
    let [Payload::Logs(resources)] = out.as_slice() else { panic!("one logs payload: {out:?}") };
    assert_eq!(resources.len(), 1);
    assert_eq!(resources[0].scope_logs[0].log_records.len(), 2);
}
