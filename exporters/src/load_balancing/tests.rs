use std::collections::{BTreeMap, BTreeSet};

use flowtel_core::{Payload, schema::attr};
use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    metrics::v1::{Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric::Data},
    resource::v1::Resource,
    trace::v1::{ResourceSpans, ScopeSpans, Span},
};

use super::{
    config::RoutingKey,
    ring::Ring,
    routing::{Router, route},
};

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![kv(attr::SERVICE_NAME, Value::StringValue(service.into()))],
        ..Default::default()
    })
}

fn ring() -> Ring {
    Ring::new(&["a:4317".into(), "b:4317".into(), "c:4317".into()])
}

fn router(key: RoutingKey) -> Router {
    Router { key, attributes: vec!["tenant".into()] }
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope { name: "lb-test".into(), ..Default::default() })
}

/// Spans of traces 0..n, `per` each, interleaved, under two resources.
fn spans(n: u8, per: u8) -> Payload {
    let resource_spans = ["checkout", "cart"]
        .iter()
        .map(|service| ResourceSpans {
            resource: resource(service),
            scope_spans: vec![ScopeSpans {
                scope: scope(),
                spans: (0..per)
                    .flat_map(|i| {
                        (0..n).map(move |t| Span {
                            trace_id: vec![t + 1; 16],
                            span_id: vec![i + 1; 8],
                            ..Default::default()
                        })
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    Payload::Traces(resource_spans)
}

#[test]
fn each_traces_spans_go_to_one_backend_under_their_own_resource_and_scope() {
    let parts = route(spans(60, 4), &router(RoutingKey::TraceId), &ring()).unwrap();
    assert_eq!(parts.len(), 3, "60 traces spread over the three backends");
    let mut owners: BTreeMap<u8, BTreeSet<usize>> = BTreeMap::new();
    let mut total = 0;
    for (backend, part) in &parts {
        let Payload::Traces(resources) = part else { panic!("traces stay traces") };
        for resource in resources {
            assert!(resource.resource.is_some());
            for scope_spans in &resource.scope_spans {
                assert_eq!(scope_spans.scope, scope());
                for span in &scope_spans.spans {
                    owners.entry(span.trace_id[0]).or_default().insert(*backend);
                    total += 1;
                }
            }
        }
    }
    assert_eq!(total, 60 * 4 * 2, "nothing lost or doubled");
    assert!(owners.values().all(|backends| backends.len() == 1), "{owners:?}");
}

fn flow_record(reply: bool, n: i64) -> LogRecord {
    let (client, server) = ((format!("10.0.0.{n}"), 40_000 + n), ("10.9.9.9".to_owned(), 443));
    let (source, destination) = if reply { (&server, &client) } else { (&client, &server) };
    LogRecord {
        attributes: vec![
            kv(attr::NETWORK_TRANSPORT, Value::StringValue("tcp".into())),
            kv(attr::SOURCE_ADDRESS, Value::StringValue(source.0.clone())),
            kv(attr::SOURCE_PORT, Value::IntValue(source.1)),
            kv(attr::DESTINATION_ADDRESS, Value::StringValue(destination.0.clone())),
            kv(attr::DESTINATION_PORT, Value::IntValue(destination.1)),
        ],
        ..Default::default()
    }
}

fn logs(records: Vec<LogRecord>) -> Payload {
    Payload::Logs(vec![ResourceLogs {
        resource: resource("node"),
        scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }],
        ..Default::default()
    }])
}

/// The backend of each record, by its client's address (at `client_at`).
fn owner_by_client(parts: Vec<(usize, Payload)>, client_at: usize) -> BTreeMap<String, usize> {
    let mut owners = BTreeMap::new();
    for (backend, part) in parts {
        let Payload::Logs(resources) = part else { panic!("logs stay logs") };
        for record in resources.iter().flat_map(|r| &r.scope_logs).flat_map(|s| &s.log_records) {
            let Some(Value::StringValue(client)) =
                record.attributes[client_at].value.as_ref().and_then(|v| v.value.clone())
            else {
                panic!("an address")
            };
            owners.insert(client, backend);
        }
    }
    owners
}

#[test]
fn both_directions_of_a_flow_go_to_one_backend_in_separate_payloads() {
    for key in [RoutingKey::Flow, RoutingKey::TraceId] {
        let forward = route(logs((1..50).map(|n| flow_record(false, n)).collect()), &router(key), &ring()).unwrap();
        let back = route(logs((1..50).map(|n| flow_record(true, n)).collect()), &router(key), &ring()).unwrap();
        // The client is the source going there and the destination coming back.
        let (there, back) = (owner_by_client(forward, 1), owner_by_client(back, 3));
        assert_eq!(there.len(), 49);
        assert_eq!(there, back, "{key:?}");
        let used: BTreeSet<usize> = there.values().copied().collect();
        assert_eq!(used.len(), 3, "{key:?}: flows spread over the backends");
    }
}

#[test]
fn a_traced_record_goes_with_its_trace_and_the_flow_key_keeps_it_with_its_flow() {
    let mut traced = flow_record(false, 7);
    traced.trace_id = vec![9; 16];
    let span = Payload::Traces(vec![ResourceSpans {
        resource: resource("api"),
        scope_spans: vec![ScopeSpans {
            spans: vec![Span { trace_id: vec![9; 16], span_id: vec![1; 8], ..Default::default() }],
            ..Default::default()
        }],
        ..Default::default()
    }]);
    let span_owner = route(span, &router(RoutingKey::TraceId), &ring()).unwrap()[0].0;
    let by_trace = route(logs(vec![traced.clone()]), &router(RoutingKey::TraceId), &ring()).unwrap()[0].0;
    assert_eq!(by_trace, span_owner, "traceID: a kernel record joins its request's spans");
    let by_flow = route(logs(vec![traced]), &router(RoutingKey::Flow), &ring()).unwrap()[0].0;
    let untraced = route(logs(vec![flow_record(true, 7)]), &router(RoutingKey::Flow), &ring()).unwrap()[0].0;
    assert_eq!(by_flow, untraced, "flow: with or without a trace, a flow's records stay together");
}

fn gauge_points(tenants: &[&str]) -> Payload {
    let points = tenants
        .iter()
        .map(|tenant| NumberDataPoint {
            attributes: vec![kv("tenant", Value::StringValue((*tenant).into()))],
            ..Default::default()
        })
        .collect();
    Payload::Metrics(vec![ResourceMetrics {
        resource: resource("db"),
        scope_metrics: vec![ScopeMetrics {
            scope: scope(),
            metrics: vec![Metric {
                name: "queue.depth".into(),
                unit: "{item}".into(),
                data: Some(Data::Gauge(Gauge { data_points: points })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn point_owners(payload: Payload, key: RoutingKey) -> BTreeMap<String, BTreeSet<usize>> {
    let mut owners: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    for (backend, part) in route(payload, &router(key), &ring()).unwrap() {
        let Payload::Metrics(resources) = part else { panic!("metrics stay metrics") };
        for metric in resources.iter().flat_map(|r| &r.scope_metrics).flat_map(|s| &s.metrics) {
            assert_eq!((metric.name.as_str(), metric.unit.as_str()), ("queue.depth", "{item}"));
            let Some(Data::Gauge(gauge)) = &metric.data else { panic!("a gauge stays a gauge") };
            for point in &gauge.data_points {
                let Some(Value::StringValue(tenant)) = point.attributes[0].value.as_ref().and_then(|v| v.value.clone())
                else {
                    panic!("tenant")
                };
                owners.entry(tenant).or_default().insert(backend);
            }
        }
    }
    owners
}

#[test]
fn metric_streams_and_attributes_split_a_metrics_points() {
    let tenants: Vec<String> = (0..40).map(|t| format!("t{t}")).collect();
    let names: Vec<&str> = tenants.iter().map(String::as_str).collect();
    for key in [RoutingKey::StreamId, RoutingKey::Attributes] {
        let owners = point_owners(gauge_points(&names), key);
        let used: BTreeSet<usize> = owners.values().flatten().copied().collect();
        assert_eq!(used.len(), 3, "{key:?}: the points of one metric spread");
        let again = point_owners(gauge_points(&names[..5]), key);
        assert!(
            again.iter().all(|(tenant, backends)| owners[tenant] == *backends),
            "{key:?}: a stream keeps its backend"
        );
    }
    let whole = point_owners(gauge_points(&names), RoutingKey::Metric);
    let used: BTreeSet<usize> = whole.values().flatten().copied().collect();
    assert_eq!(used.len(), 1, "metric: all of a metric's points together");
}

#[test]
fn nothing_is_routed_without_backends() {
    let payload = spans(1, 1);
    assert_eq!(route(payload.clone(), &router(RoutingKey::TraceId), &Ring::default()).unwrap_err(), payload);
}
