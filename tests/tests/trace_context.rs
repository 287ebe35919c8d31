//! Privileged, real kernel: the W3C trace context of plaintext HTTP/1.x
//! requests, read by the TC programs from the `traceparent` header the
//! official OpenTelemetry SDK's instrumentation sends, and carried by every
//! kernel record of the request's connection; bad headers counted, never
//! attached.
//!
//! flowtel runs in the client's namespace, attached to its side of a veth
//! pair; that namespace loses a share of what the server sends, so there
//! are drops and retransmits to correlate. Needs root.

#![allow(clippy::unwrap_used, missing_docs)]

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    path::Path,
    time::Duration,
};

use flowtel_tests::{
    Flowtel, free_port, hubble_call_in, metric_value,
    netns::{Netns, VethPair, finish, is_root},
    otlp_json::{Item, file_requests, items},
    process::{Recorder, Rotel},
    tls::TestPki,
    wait_for,
};
use serde_json::{Value, json};

/// Time for a flush (1 s) and the records' hand-over to land in the file.
const SETTLE: Duration = Duration::from_millis(2500);
/// The server's port.
const PORT: &str = "8080";
/// Kernel records that belong to a connection.
const CONNECTION_EVENTS: [&str; 5] =
    ["network.flow", "network.packet.drop", "network.tcp.retransmit", "network.tcp.reset", "network.tcp.connection"];

/// flowtel with the `ebpf` receiver settings `receiver`, writing logs to
/// `dir/logs.jsonl` (and serving them over Hubble) and metrics to
/// `dir/metrics.jsonl`.
fn config(dir: &Path, receiver: &str, hubble_port: u16) -> String {
    format!(
        r#"
receivers:
  ebpf: {{interfaces: [veth0], flush_interval: 1s, {receiver}}}
exporters:
  file/logs: {{path: "{dir}/logs.jsonl"}}
  file/metrics: {{path: "{dir}/metrics.jsonl"}}
  hubble: {{endpoint: "127.0.0.1:{hubble_port}"}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:${{METRICS_PORT}}"}}}}
  pipelines:
    logs: {{receivers: [ebpf], exporters: [file/logs, hubble]}}
    metrics: {{receivers: [ebpf], exporters: [file/metrics]}}
"#,
        dir = dir.display()
    )
}

/// One request the instrumented client made.
#[derive(Debug)]
struct Request {
    trace_id: String,
    span_id: String,
    port: String,
    start: u64,
    end: u64,
}

fn attr<'a>(item: &'a Item, key: &str) -> &'a str {
    item.attributes.get(key).map_or("", String::as_str)
}

fn trace_id(item: &Item) -> &str {
    item.raw["traceId"].as_str().unwrap_or_default()
}

fn span_id(item: &Item) -> &str {
    item.raw["spanId"].as_str().unwrap_or_default()
}

fn time(item: &Item) -> u64 {
    item.raw["timeUnixNano"].as_str().and_then(|t| t.parse().ok()).unwrap_or(0)
}

/// The client's port of a record of a connection to the server (empty when it is not one).
fn client_port(item: &Item) -> &str {
    if attr(item, "destination.port") == PORT {
        attr(item, "source.port")
    } else if attr(item, "source.port") == PORT {
        attr(item, "destination.port")
    } else {
        ""
    }
}

/// Starts one of the tests' Python servers in `ns` and waits until it listens.
fn start_server(ns: &Netns, script: &str, args: &[&str]) -> std::process::Child {
    let mut server = ns.script(script, args);
    let mut line = String::new();
    BufReader::new(server.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "{script} did not start");
    server
}

/// Stops a server the test started.
fn stop(mut server: std::process::Child) {
    let _ = server.kill();
    let _ = server.wait();
}

/// flowtel's own metrics, read from inside `ns`.
fn metrics_in(ns: &Netns, port: u16) -> String {
    finish(ns.python(&format!(
        "import urllib.request\nprint(urllib.request.urlopen('http://127.0.0.1:{port}/metrics').read().decode())"
    )))
}

#[test]
fn kernel_records_carry_the_trace_context_of_their_request() {
    if !is_root() {
        eprintln!("SKIPPED: trace context needs root (CI runs it as root)");
        return;
    }
    traced_requests_over_a_lossy_path();
    bad_headers_are_counted_and_never_attached();
    for protocol in [Protocol::Http, Protocol::Https, Protocol::Grpc] {
        spans_and_kernel_records_join(protocol);
    }
}

fn traced_requests_over_a_lossy_path() {
    const THREADS: usize = 4;
    const REQUESTS: usize = 5;
    let pair = VethPair::quiet("tc", false);
    pair.a.lose_tcp_from_port(PORT, 6);
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs.jsonl");
    let hubble = format!("127.0.0.1:{}", free_port());
    let hubble_port = hubble.rsplit_once(':').unwrap().1.parse().unwrap();
    let mut flowtel = Flowtel::start_in_netns(&config(dir.path(), "", hubble_port), &pair.a.name);
    let server = start_server(
        &pair.b,
        "traced_http.py",
        &["server", "--address", VethPair::B_V4, "--port", PORT, "--body", "300000"],
    );

    // Keep-alive sessions, several requests in flight at once over pooled connections.
    let url = format!("http://{}:{PORT}/", VethPair::B_V4);
    let client = finish(pair.a.script(
        "traced_http.py",
        &["client", "--url", &url, "--threads", &THREADS.to_string(), "--requests", &REQUESTS.to_string()],
    ));
    let requests = parse_requests(&client);
    assert_eq!(requests.len(), THREADS * REQUESTS, "{client}");
    let mut by_port: BTreeMap<&str, Vec<&Request>> = BTreeMap::new();
    for request in &requests {
        by_port.entry(&request.port).or_default().push(request);
    }
    assert_eq!(by_port.len(), THREADS, "one kept-alive connection per session: {requests:?}");
    std::thread::sleep(SETTLE);

    // Hubble clients find a request's flows by its trace id.
    let found_by_hubble = |trace: &str| {
        let call = json!({"method": "GetFlows", "request": {"whitelist": [{"trace_id": [trace]}]}});
        let responses = hubble_call_in(Some(&pair.a.name), &hubble, &call);
        responses.into_iter().filter_map(|r| r.get("flow").cloned()).collect::<Vec<Value>>()
    };
    let hubble_answers: BTreeMap<&str, Vec<Value>> =
        requests.iter().map(|r| (r.trace_id.as_str(), found_by_hubble(&r.trace_id))).collect();
    let metrics = metrics_in(&pair.a, flowtel.metrics_port);
    assert!(flowtel.child.stop().success(), "{}", flowtel.child.output());
    stop(server);
    let records = items(&file_requests(&logs), "logs");

    let mut counted: BTreeMap<&str, usize> = BTreeMap::new();
    // Per connection: when its first record with a context happened, and the
    // latest record without one.
    let mut first_traced: BTreeMap<&str, u64> = BTreeMap::new();
    let mut last_untraced: BTreeMap<&str, (u64, String)> = BTreeMap::new();
    for record in records.iter().filter(|r| CONNECTION_EVENTS.contains(&r.event_name.as_str())) {
        let port = client_port(record);
        let Some(on_connection) = by_port.get(port) else { continue };
        let what = format!("{} of connection :{port} at {}: {:?}", record.event_name, time(record), record.raw);
        *counted.entry(&record.event_name).or_default() += 1;
        if trace_id(record).is_empty() {
            let latest = last_untraced.entry(port).or_default();
            if time(record) > latest.0 {
                *latest = (time(record), what);
            }
            continue;
        }
        let first = first_traced.entry(port).or_insert(u64::MAX);
        *first = (*first).min(time(record));
        // Never another connection's context, and the span id the header carried.
        let request = on_connection
            .iter()
            .find(|r| r.trace_id == trace_id(record))
            .unwrap_or_else(|| panic!("a trace id of another request: {what}"));
        assert_eq!(span_id(record), request.span_id, "{what}");
        // The header's flags: sampled, and (W3C level 2) a random trace id.
        assert_eq!(record.raw["flags"], json!(3), "{what}");
        match record.event_name.as_str() {
            // Events happen while their request is in flight, or after the
            // connection's last one (its close).
            "network.packet.drop" | "network.tcp.retransmit" => {
                let slack = 20_000_000;
                let last = on_connection.iter().map(|r| r.start).max() == Some(request.start);
                let end = if last { u64::MAX } else { request.end + slack };
                assert!(
                    (request.start.saturating_sub(slack)..=end).contains(&time(record)),
                    "not during its request {request:?}: {what}"
                );
            }
            // A connection ends with the context of its last request.
            "network.tcp.connection" => {
                let last = on_connection.iter().max_by_key(|r| r.start).unwrap();
                assert_eq!(trace_id(record), last.trace_id, "{what}");
            }
            _ => {}
        }
    }
    // Only what happened before a connection's first request (its handshake) has no context.
    for (port, (at, what)) in &last_untraced {
        assert!(first_traced.get(port).is_some_and(|first| at <= first), "after the first request: {what}");
    }
    assert_eq!(first_traced.len(), THREADS, "every connection's records carry context");
    for event in ["network.flow", "network.packet.drop", "network.tcp.retransmit", "network.tcp.connection"] {
        assert!(counted.get(event).copied().unwrap_or(0) > 0, "no {event} records of the connections: {counted:?}");
    }
    // Each request's header read on veth0's egress (again if the request was retransmitted).
    assert!(
        metric_value(&metrics, "flowtel_ebpf_trace_context_requests_total", &[("result", "read")])
            >= requests.len() as f64,
        "{metrics}"
    );

    // Hubble returns a request's flows and drops, and nothing of other requests.
    let with_drops = requests
        .iter()
        .max_by_key(|r| {
            records.iter().filter(|d| d.event_name == "network.packet.drop" && trace_id(d) == r.trace_id).count()
        })
        .unwrap();
    for (trace, flows) in &hubble_answers {
        assert!(!flows.is_empty(), "Hubble found no flow of trace {trace}");
        for flow in flows {
            assert_eq!(flow["trace_context"]["parent"]["trace_id"], json!(trace), "{flow}");
        }
    }
    assert!(
        hubble_answers[with_drops.trace_id.as_str()].iter().any(|f| f["verdict"] == "DROPPED"),
        "the drops of trace {} through Hubble",
        with_drops.trace_id
    );

    // The metrics' points carry traced events of their interval as exemplars.
    let points = items(&file_requests(&dir.path().join("metrics.jsonl")), "metrics");
    let traces: Vec<&str> = requests.iter().map(|r| r.trace_id.as_str()).collect();
    for name in ["network.tcp.retransmits", "network.tcp.rtt", "network.packet.drops", "network.flow.bytes"] {
        let exemplars: Vec<&Value> = points
            .iter()
            .filter(|p| p.name == name)
            .flat_map(|p| p.raw["exemplars"].as_array().into_iter().flatten())
            .collect();
        assert!(!exemplars.is_empty(), "no exemplar on {name}");
        for exemplar in exemplars {
            let trace = exemplar["traceId"].as_str().unwrap_or_default();
            assert!(traces.contains(&trace), "{name}: an exemplar of another trace: {exemplar}");
            assert_eq!(exemplar["spanId"].as_str().map(str::len), Some(16), "{exemplar}");
        }
    }
}

fn bad_headers_are_counted_and_never_attached() {
    const VALID: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const CROWDED_CONNECTIONS: usize = 20;
    const MAX_CONNECTIONS: usize = 8;
    let pair = VethPair::quiet("tb", false);
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs.jsonl");
    let receiver = format!("trace_context: {{max_connections: {MAX_CONNECTIONS}}}");
    let mut flowtel = Flowtel::start_in_netns(&config(dir.path(), &receiver, free_port()), &pair.a.name);
    let server = start_server(&pair.b, "http_load.py", &["server", VethPair::B_V4, PORT]);

    // One kept-alive connection: a valid context, then requests whose
    // headers are wrong in every way, each of which must clear it; then
    // more connections than the kernel keeps contexts for.
    let malformed = [
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333z-01",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
    ];
    let client = pair.a.python(&format!(
        "import socket,time,json\n\
         c=socket.create_connection(('{server}',{PORT}));c.setsockopt(socket.IPPROTO_TCP,socket.TCP_NODELAY,1)\n\
         def ask(*parts):\n  for i,p in enumerate(parts):\n    if i: time.sleep(0.05)\n    c.sendall(p)\n\
         \x20 d=b''\n  while not d.endswith(b'ok'): d+=c.recv(100)\n\
         head=b'GET / HTTP/1.1\\r\\nHost: server\\r\\n'\n\
         ask(head+b'TraceParent: {VALID}\\r\\n\\r\\n')\ntime.sleep(1.5)\n\
         for value in {malformed:?}: ask(head+b'traceparent: '+value.encode()+b'\\r\\n\\r\\n')\n\
         ask(head+b'traceparent: 00-0af7651916cd', b'43dd8448eb211c80319c-b7ad6b7169203331-01\\r\\n\\r\\n')\n\
         ask(head+b'Cookie: '+b'k'*1100+b'\\r\\ntraceparent: {VALID}\\r\\n\\r\\n')\n\
         ask(head+b'\\r\\n')\n\
         print(c.getsockname()[1]);time.sleep(1.5);c.close()\n\
         crowd=[socket.create_connection(('{server}',{PORT})) for i in range({CROWDED_CONNECTIONS})]\n\
         for k in crowd:\n  k.sendall(head+b'traceparent: {VALID}\\r\\n\\r\\n');d=b''\n\
         \x20 while not d.endswith(b'ok'): d+=k.recv(100)\n\
         time.sleep(1.5)\nfor k in crowd: k.close()\n",
        server = VethPair::B_V4,
        malformed = malformed.to_vec(),
    ));
    let port = finish(client);
    std::thread::sleep(SETTLE);
    let metrics = metrics_in(&pair.a, flowtel.metrics_port);
    assert!(flowtel.child.stop().success(), "{}", flowtel.child.output());
    stop(server);
    let records = items(&file_requests(&logs), "logs");

    let requests = |result| metric_value(&metrics, "flowtel_ebpf_trace_context_requests_total", &[("result", result)]);
    assert_eq!(requests("malformed"), malformed.len() as f64, "{metrics}");
    assert_eq!(requests("unreadable"), 2.0, "a header split across segments, one past the window");
    assert_eq!(requests("absent"), 1.0);
    assert_eq!(requests("read"), (1 + CROWDED_CONNECTIONS) as f64);
    assert_eq!(
        metric_value(&metrics, "flowtel_ebpf_trace_context_map_full_total", &[]),
        (CROWDED_CONNECTIONS - MAX_CONNECTIONS) as f64,
        "contexts of connections past max_connections are refused and counted"
    );

    // The valid context reached the first flush; after the bad requests cleared it, nothing carries it.
    let of_connection: Vec<&Item> = records
        .iter()
        .filter(|r| CONNECTION_EVENTS.contains(&r.event_name.as_str()) && client_port(r) == port)
        .collect();
    let first_request = of_connection.iter().map(|r| time(r)).min().unwrap();
    let traced: Vec<&&Item> = of_connection.iter().filter(|r| !trace_id(r).is_empty()).collect();
    assert!(!traced.is_empty(), "the valid request's context reached its flows");
    assert!(traced.iter().all(|r| trace_id(r) == "0af7651916cd43dd8448eb211c80319c"));
    let closing = of_connection.iter().find(|r| r.event_name == "network.tcp.connection").unwrap();
    assert_eq!(trace_id(closing), "", "the connection ended after requests without a valid context");
    assert!(traced.iter().all(|r| time(r) < first_request + 1_400_000_000), "only before the bad requests: {traced:?}");

    // Of the crowd, only the connections the map had room for carry the context.
    let crowd_connections: BTreeMap<&str, bool> = records
        .iter()
        .filter(|r| r.event_name == "network.tcp.connection" && !client_port(r).is_empty() && client_port(r) != port)
        .map(|r| (client_port(r), !trace_id(r).is_empty()))
        .collect();
    assert_eq!(crowd_connections.len(), CROWDED_CONNECTIONS);
    assert_eq!(crowd_connections.values().filter(|traced| **traced).count(), MAX_CONNECTIONS);
}

/// The client's requests, from its output.
fn parse_requests(output: &str) -> Vec<Request> {
    output
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            Request {
                trace_id: v["trace_id"].as_str().unwrap().into(),
                span_id: v["span_id"].as_str().unwrap().into(),
                port: v["port"].to_string(),
                start: v["start"].as_u64().unwrap(),
                end: v["end"].as_u64().unwrap(),
            }
        })
        .collect()
}

/// Kernel records that become span events.
const SPAN_EVENT_RECORDS: [&str; 4] =
    ["network.tcp.retransmit", "network.packet.drop", "network.tcp.reset", "network.tcp.connection"];

/// How the instrumented client and server talk.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Protocol {
    /// Plaintext HTTP/1.1: the kernel reads the `traceparent`.
    Http,
    /// HTTP/1.1 over TLS: only the span join can give records a context.
    Https,
    /// gRPC (HTTP/2, `grpcio`): likewise.
    Grpc,
}

/// The SDK's spans go through flowtel (`otlp` receiver → `trace_correlation`
/// → rotel), the kernel's records through the same processor: records of a
/// request's connection during its span carry its context (from the
/// kernel's read of the header over HTTP, from the span join over HTTPS and
/// gRPC), and each span has the connection's kernel events as span events.
fn spans_and_kernel_records_join(protocol: Protocol) {
    const THREADS: usize = 3;
    const REQUESTS: usize = 3;
    let what = format!("{protocol:?}");
    let pair = VethPair::quiet(&format!("t{}", what.to_lowercase()), false);
    pair.a.lose_tcp_from_port(PORT, 6);
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::start_in_netns(dir.path(), &pair.a.name);
    let rotel = Rotel::start_in_netns(dir.path(), free_port(), recorder.port, &pair.a.name);
    let logs = dir.path().join("logs.jsonl");
    let otlp_port = free_port();
    let config = format!(
        r#"
receivers:
  ebpf: {{interfaces: [veth0], flush_interval: 1s}}
  otlp: {{protocols: {{grpc: {{endpoint: "0.0.0.0:{otlp_port}"}}}}}}
processors:
  trace_correlation: {{max_wait: 20s}}
exporters:
  file: {{path: "{logs}"}}
  otlp_grpc: {{endpoint: "127.0.0.1:{rotel}", tls: {{insecure: true}}}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:${{METRICS_PORT}}"}}}}
  pipelines:
    logs: {{receivers: [ebpf], processors: [trace_correlation], exporters: [file]}}
    traces: {{receivers: [otlp], processors: [trace_correlation], exporters: [otlp_grpc]}}
"#,
        logs = logs.display(),
        rotel = rotel.grpc_port,
    );
    let mut flowtel = Flowtel::start_in_netns(&config, &pair.a.name);
    let pki = TestPki::new(dir.path());
    let (cert, key) = (pki.server_cert.display().to_string(), pki.server_key.display().to_string());
    let server_otlp = format!("http://{}:{otlp_port}", VethPair::A_V4);
    let client_otlp = format!("http://127.0.0.1:{otlp_port}");
    let (threads, requests) = (THREADS.to_string(), REQUESTS.to_string());
    let script = if protocol == Protocol::Grpc { "traced_grpc.py" } else { "traced_http.py" };
    let mut server_args = vec!["server", "--address", VethPair::B_V4, "--port", PORT, "--body", "300000"];
    server_args.extend(["--otlp", &server_otlp]);
    if protocol == Protocol::Https {
        server_args.extend(["--tls", &cert, &key]);
    }
    let server = start_server(&pair.b, script, &server_args);
    let target = match protocol {
        Protocol::Http => format!("http://{}:{PORT}/", VethPair::B_V4),
        Protocol::Https => format!("https://{}:{PORT}/", VethPair::B_V4),
        Protocol::Grpc => format!("{}:{PORT}", VethPair::B_V4),
    };
    let target_flag = if protocol == Protocol::Grpc { "--target" } else { "--url" };
    let client = finish(pair.a.script(
        script,
        &["client", target_flag, &target, "--threads", &threads, "--requests", &requests, "--otlp", &client_otlp],
    ));
    let mut requests = parse_requests(&client);
    assert_eq!(requests.len(), THREADS * REQUESTS, "{what}: {client}");
    let spans = |recorder: &Recorder| {
        items(recorder.requests().iter().filter(|(signal, _)| signal == "traces").map(|(_, request)| request), "traces")
    };
    // Every client and server span reaches the backend, with its events.
    let received = wait_for(Duration::from_secs(30), "the spans at the backend", || {
        let spans = spans(&recorder);
        (spans.len() >= 2 * requests.len()).then_some(spans)
    });
    let metrics = metrics_in(&pair.a, flowtel.metrics_port);
    assert!(flowtel.child.stop().success(), "{}", flowtel.child.output());
    stop(server);
    let records = items(&file_requests(&logs), "logs");
    // Each request's connection, as its server span saw the client's port.
    for request in &mut requests {
        let server_span = received
            .iter()
            .find(|s| s.raw["parentSpanId"].as_str() == Some(request.span_id.as_str()))
            .unwrap_or_else(|| panic!("{what}: the server span called by {request:?}"));
        request.port = attr(server_span, "net.peer.port").to_owned();
    }

    let event_count = |span: &Item, name: &str| {
        span.raw["events"].as_array().map_or(0, |events| events.iter().filter(|e| e["name"] == name).count())
    };
    let mut in_windows = 0;
    let mut span_events = 0;
    for request in &requests {
        let client_span = received
            .iter()
            .find(|s| s.raw["spanId"].as_str() == Some(request.span_id.as_str()))
            .unwrap_or_else(|| panic!("{what}: the client span of {request:?} at the backend"));
        let window = request.start..=request.end;
        let mut expected = 0;
        let mut exact = true;
        for name in SPAN_EVENT_RECORDS {
            let during: Vec<&Item> = records
                .iter()
                .filter(|r| r.event_name == name && client_port(r) == request.port && window.contains(&time(r)))
                .collect();
            // During the span: this request's context and no other.
            for record in &during {
                in_windows += 1;
                assert_eq!(
                    (trace_id(record), span_id(record)),
                    (request.trace_id.as_str(), request.span_id.as_str()),
                    "{what}: {name} during {request:?}: {:?}",
                    record.raw
                );
            }
            expected += during.len();
            exact &= event_count(client_span, name) == during.len();
        }
        // Each of the connection's events during the span is a span event, up
        // to 32; the rest are counted on the span.
        let events = client_span.raw["events"].as_array().map_or(0, Vec::len);
        span_events += events;
        let dropped = client_span.raw["droppedEventsCount"].as_u64().unwrap_or(0) as usize;
        assert_eq!((events, dropped), (expected.min(32), expected.saturating_sub(32)), "{what}: {:?}", client_span.raw);
        assert!(expected > 32 || exact, "{what}: the events of {request:?}: {:?}", client_span.raw);
    }
    assert!(in_windows > 0, "{what}: no retransmit or drop happened during a request");
    assert!(span_events > 0, "{what}: no span got a kernel event");
    // Records of connections without spans (the server's OTLP export) pass
    // on without a context, once they waited max_wait (here: at shutdown).
    let unrelated: Vec<&Item> = records
        .iter()
        .filter(|r| [attr(r, "source.port"), attr(r, "destination.port")].contains(&otlp_port.to_string().as_str()))
        .collect();
    assert!(!unrelated.is_empty() && unrelated.iter().all(|r| trace_id(r).is_empty()), "{what}");
    let read = metric_value(&metrics, "flowtel_ebpf_trace_context_requests_total", &[("result", "read")]);
    let matched = metric_value(&metrics, "flowtel_trace_correlation_records_total", &[("result", "matched")]);
    if protocol != Protocol::Http {
        // Nothing readable on the wire: every context came from the join.
        assert_eq!(read, 0.0, "{what}");
        assert!(matched > 0.0, "{what}: {metrics}");
    } else {
        assert!(read >= requests.len() as f64, "{what}: {metrics}");
    }
}
