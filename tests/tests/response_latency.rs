//! Privileged, real kernel: request/response latency from packet timing.
//! A server in one namespace waits a known 30 ms before each reply, over
//! plaintext TCP and over TLS; flowtel, on the client's veth, must put each
//! reply in the histogram bucket that holds 30 ms (plus the veth's
//! microseconds), per server, and on the replies' flow records. Needs root.

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use flowtel_tests::{
    Flowtel,
    netns::{VethPair, is_root},
    otlp_json::{Item, file_requests, items, number},
    tls::TestPki,
};

/// The server's wait before each reply.
const DELAY: Duration = Duration::from_millis(30);
/// Requests per connection.
const REQUESTS: usize = 20;

/// A server on `port` (TLS with `cert`/`key` when given) answering each
/// line after `DELAY`, for one connection.
fn server(port: u16, tls: Option<(&str, &str)>) -> String {
    let wrap = match tls {
        Some((cert, key)) => format!(
            "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain('{cert}', '{key}'); conn = ctx.wrap_socket(conn, server_side=True)"
        ),
        None => String::new(),
    };
    format!(
        r#"
import socket, ssl, time
listener = socket.socket(); listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("{addr}", {port})); listener.listen(1)
print("listening", flush=True)
conn, _ = listener.accept()
{wrap}
reader = conn.makefile("rb")
for line in reader:
    time.sleep({delay})
    conn.sendall(b"answer " + line)
"#,
        addr = VethPair::B_V4,
        delay = DELAY.as_secs_f64(),
    )
}

/// A client sending `REQUESTS` lines one after the other, each after the previous answer.
fn client(port: u16, tls: bool) -> String {
    let wrap = if tls {
        "ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE; conn = ctx.wrap_socket(conn)"
    } else {
        ""
    };
    format!(
        r#"
import socket, ssl
conn = socket.create_connection(("{addr}", {port}))
{wrap}
reader = conn.makefile("rb")
for i in range({REQUESTS}):
    conn.sendall(b"request %d\n" % i)
    assert reader.readline().startswith(b"answer")
conn.close()
"#,
        addr = VethPair::B_V4,
    )
}

fn config(dir: &std::path::Path) -> String {
    format!(
        r#"
receivers:
  ebpf: {{interfaces: [veth0], flush_interval: 1s}}
exporters:
  file/logs: {{path: "{dir}/logs.jsonl"}}
  file/metrics: {{path: "{dir}/metrics.jsonl"}}
  debug/metrics: {{verbosity: normal}}
service:
  pipelines:
    logs: {{receivers: [ebpf], exporters: [file/logs]}}
    metrics: {{receivers: [ebpf], exporters: [file/metrics, debug/metrics]}}
"#,
        dir = dir.display()
    )
}

fn attr<'a>(item: &'a Item, key: &str) -> &'a str {
    item.attributes.get(key).map_or("", String::as_str)
}

/// The observations of a histogram point, as (upper bound in seconds, count).
fn buckets(point: &Item) -> Vec<(f64, u64)> {
    let bounds: Vec<f64> =
        point.raw["explicitBounds"].as_array().unwrap().iter().map(|b| b.as_f64().unwrap()).collect();
    let counts: Vec<u64> = point.raw["bucketCounts"].as_array().unwrap().iter().map(number).collect();
    counts.iter().enumerate().map(|(i, &c)| (bounds.get(i).copied().unwrap_or(f64::INFINITY), c)).collect()
}

#[test]
fn replies_delayed_by_the_server_land_in_the_bucket_of_the_delay() {
    assert!(is_root(), "this privileged test needs root: run `cargo xtask test` as root");
    let pair = VethPair::create("rsp");
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let mut flowtel = Flowtel::start_in_netns(&config(dir.path()), &pair.a.name);
    let (plain, tls) = (7101, 7102);
    let (cert, key) = (pki.server_cert.display().to_string(), pki.server_key.display().to_string());
    for (port, server_tls) in [(plain, None), (tls, Some((cert.as_str(), key.as_str())))] {
        let mut server = pair.b.python(&server(port, server_tls));
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(server.stdout.as_mut().unwrap()), &mut line).unwrap();
        assert_eq!(line.trim(), "listening");
        let client = pair.a.python(&client(port, server_tls.is_some())).wait_with_output().unwrap();
        assert!(client.status.success(), "client: {}", String::from_utf8_lossy(&client.stderr));
        let _ = server.kill();
        let _ = server.wait();
    }
    std::thread::sleep(Duration::from_millis(2500));
    assert!(flowtel.child.stop().success(), "{}", flowtel.child.output());
    let output = flowtel.child.output();

    let metrics = items(&file_requests(&dir.path().join("metrics.jsonl")), "metrics");
    let delay = DELAY.as_secs_f64();
    for port in [plain, tls] {
        let point = metrics
            .iter()
            .rev()
            .find(|m| {
                m.name == "network.tcp.response.duration"
                    && attr(m, "server.address") == VethPair::B_V4
                    && attr(m, "server.port") == port.to_string()
            })
            .unwrap_or_else(|| panic!("no response latency for server port {port}"));
        assert_eq!(attr(point, "network.interface.name"), "veth0");
        let buckets = buckets(point);
        // The bucket holding the delay: its bound is the first at or above it.
        let (index, &(upper, _)) = buckets.iter().enumerate().find(|(_, (upper, _))| *upper >= delay).unwrap();
        let lower = buckets[index - 1].0;
        let in_bucket = buckets[index].1;
        let at_least_delay: u64 = buckets[index..].iter().map(|b| b.1).sum();
        let between: u64 = buckets.iter().filter(|(upper, _)| *upper > 0.002 && *upper < lower).map(|b| b.1).sum();
        // Every reply waited the delay; most (all, on a quiet machine) land in
        // its bucket, a busy machine's scheduler adding to some of them. Over
        // TLS 1.3 the server's session tickets, sent once the handshake is
        // done, can answer the client's first data before the first reply.
        let timed = if port == plain { REQUESTS } else { REQUESTS - 1 };
        assert!(
            at_least_delay as usize >= timed && in_bucket as usize > REQUESTS / 2,
            "port {port}: the {REQUESTS} delayed replies: {at_least_delay} at or above the delay's bucket, {in_bucket} in it ({lower:.4} s, {upper:.4} s]; buckets {buckets:?}"
        );
        // Plaintext has no exchange but the requests; TLS adds its handshake's
        // (quick, but the key exchange's time on a busy machine is anyone's guess).
        if port == plain {
            assert_eq!(between, 0, "port {port}: nothing between zero and the delay: {buckets:?}");
        }
    }
    // The debug exporter prints the histogram with its percentiles.
    assert!(
        output.lines().any(|l| l.contains("network.tcp.response.duration") && l.contains("p50=0.03")),
        "debug exporter: {output}"
    );

    let logs = items(&file_requests(&dir.path().join("logs.jsonl")), "logs");
    let replies: Vec<&Item> = logs
        .iter()
        .filter(|r| r.event_name == "network.flow" && attr(r, "source.port") == plain.to_string())
        .filter(|r| !attr(r, "network.tcp.responses").is_empty())
        .collect();
    let responses: u64 = replies.iter().map(|r| attr(r, "network.tcp.responses").parse::<u64>().unwrap()).sum();
    assert_eq!(responses as usize, REQUESTS, "the server's flow records count its replies: {replies:?}");
    for reply in &replies {
        let mean: f64 = attr(reply, "network.tcp.response.duration").parse().unwrap();
        assert!((delay..delay + 0.015).contains(&mean), "mean response time on the record: {mean}");
    }
}
