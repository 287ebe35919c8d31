//! The `load_balancing` exporter end to end: an agent spreads spans (by
//! trace id) and kernel-style flow records (by flow, both directions
//! together) over real flowtel gateways found by the `static`, `dns` and
//! `k8s` resolvers; one gateway is killed (`kill -9`) and another added
//! under load, and nothing is lost: the agent routes what it held for the
//! killed gateway to the others, and what the killed gateway had
//! acknowledged waits in its persistent queue until it runs again.

#![allow(clippy::unwrap_used, missing_docs)]

use std::{
    cell::RefCell,
    collections::{BTreeMap, BTreeSet},
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use flowtel_core::schema::attr;
use flowtel_tests::{
    Flowtel, free_port,
    kube::KubeApiServer,
    netns::{ip, is_root},
    sink::Sink,
    wait_for,
};
use k8s_openapi::api::core::v1::{Endpoints, Service};
use opentelemetry_proto::tonic::{
    collector::{
        logs::v1::{ExportLogsServiceRequest, logs_service_client::LogsServiceClient},
        trace::v1::{ExportTraceServiceRequest, trace_service_client::TraceServiceClient},
    },
    common::v1::{AnyValue, KeyValue, any_value},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    resource::v1::Resource,
    trace::v1::{ResourceSpans, ScopeSpans, Span},
};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);
const RUN: &str = "load-balancing";
const SPANS_PER_TRACE: u64 = 3;

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

fn text(key: &str, value: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.into()))
}

fn int(key: &str, value: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(value))
}

fn resource() -> Option<Resource> {
    Some(Resource {
        attributes: vec![text(attr::SERVICE_NAME, "lb-test"), text("test.run", RUN)],
        ..Default::default()
    })
}

/// Trace `k`: its spans are `test.seq` 3k, 3k+1, 3k+2.
fn trace(k: u64) -> ExportTraceServiceRequest {
    let mut trace_id = [0u8; 16];
    trace_id[..8].copy_from_slice(&(k + 1).to_be_bytes());
    trace_id[8..].copy_from_slice(&(k * 7919 + 13).to_le_bytes());
    let spans = (0..SPANS_PER_TRACE)
        .map(|i| Span {
            trace_id: trace_id.to_vec(),
            span_id: (k * SPANS_PER_TRACE + i + 1).to_be_bytes().to_vec(),
            name: "lb".into(),
            attributes: vec![int("test.seq", (k * SPANS_PER_TRACE + i) as i64)],
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    }
}

/// Flow `k`'s record in one direction: `test.seq` 2k forward, 2k+1 back.
fn flow_record(k: u64, reply: bool) -> LogRecord {
    let client = (format!("10.1.{}.{}", k / 250 % 250, k % 250 + 1), 30_000 + k as i64 % 20_000);
    let server = (format!("10.2.0.{}", k % 7 + 1), 80);
    let (source, destination) = if reply { (&server, &client) } else { (&client, &server) };
    LogRecord {
        attributes: vec![
            int("test.seq", (2 * k + u64::from(reply)) as i64),
            text(attr::NETWORK_TRANSPORT, "tcp"),
            text(attr::SOURCE_ADDRESS, &source.0),
            int(attr::SOURCE_PORT, source.1),
            text(attr::DESTINATION_ADDRESS, &destination.0),
            int(attr::DESTINATION_PORT, destination.1),
        ],
        ..Default::default()
    }
}

/// Round `k`'s flow records: flow k forward, and flow k-1's reply.
fn flows(k: u64) -> ExportLogsServiceRequest {
    let mut records = vec![flow_record(k, false)];
    if k > 0 {
        records.push(flow_record(k - 1, true));
    }
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(),
            scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }],
            ..Default::default()
        }],
    }
}

/// Sends rounds `rounds` to the agent (each accepted, retried until it is),
/// pausing `pause` between rounds; stops early when `stop` is set.
fn send_rounds(port: u16, rounds: std::ops::Range<u64>, pause: Duration, stop: Option<&AtomicBool>, sent: &AtomicU64) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let address = format!("http://127.0.0.1:{port}");
        let mut traces = TraceServiceClient::connect(address.clone()).await.unwrap();
        let mut logs = LogsServiceClient::connect(address).await.unwrap();
        for k in rounds {
            if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
                return;
            }
            for _ in 0..200 {
                if traces.export(trace(k)).await.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            for _ in 0..200 {
                if logs.export(flows(k)).await.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            sent.store(k + 1, Ordering::Relaxed);
            tokio::time::sleep(pause).await;
        }
    });
}

/// One gateway: flowtel with an `otlp` receiver on `address`, forwarding to
/// its own sink through a persistent queue (so what it acknowledged
/// survives `kill -9`).
struct Gateway {
    address: String,
    sink: Sink,
    sink_port: u16,
    storage: tempfile::TempDir,
    flowtel: RefCell<Option<Flowtel>>,
}

impl Gateway {
    fn start(address: &str) -> Gateway {
        let sink_port = free_port();
        let gateway = Gateway {
            address: address.to_owned(),
            sink: Sink::start(sink_port),
            sink_port,
            storage: tempfile::tempdir().unwrap(),
            flowtel: RefCell::default(),
        };
        gateway.restart();
        gateway
    }

    /// Starts it (again, on the same storage: what it had queued is sent first).
    fn restart(&self) {
        *self.flowtel.borrow_mut() = Some(Flowtel::start(&format!(
            r#"
extensions:
  file_storage: {{directory: "{}"}}
receivers:
  otlp: {{protocols: {{grpc: {{endpoint: "{}"}}}}}}
exporters:
  otlp_grpc:
    endpoint: 127.0.0.1:{}
    tls: {{insecure: true}}
    retry_on_failure: {{initial_interval: 100ms, max_interval: 300ms, max_elapsed_time: 0s}}
    sending_queue: {{storage: file_storage}}
service:
  extensions: [file_storage]
  telemetry: {{metrics: {{address: "127.0.0.1:${{METRICS_PORT}}"}}}}
  pipelines:
    logs: {{receivers: [otlp], exporters: [otlp_grpc]}}
    traces: {{receivers: [otlp], exporters: [otlp_grpc]}}
"#,
            self.storage.path().display(),
            self.address,
            self.sink_port
        )));
    }

    /// `kill -9`.
    fn kill(&self) {
        if let Some(mut flowtel) = self.flowtel.borrow_mut().take() {
            flowtel.child.kill();
        }
    }
}

/// The agent: an `otlp` receiver, spans to `load_balancing/traces` (by trace
/// id) and logs to `load_balancing/flows` (by flow).
fn agent_config(grpc: u16, resolver: &str) -> String {
    let exporter = |key: &str| {
        format!(
            r#"
    routing_key: {key}
    protocol:
      otlp:
        tls: {{insecure: true}}
        timeout: 2s
        retry_on_failure: {{initial_interval: 100ms, max_interval: 300ms, max_elapsed_time: 0s}}
    resolver:
      {resolver}"#
        )
    };
    format!(
        r#"
receivers:
  otlp: {{protocols: {{grpc: {{endpoint: "127.0.0.1:{grpc}"}}}}}}
exporters:
  load_balancing/traces: {}
  loadbalancing/flows: {}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:${{METRICS_PORT}}"}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [load_balancing/traces]}}
    logs: {{receivers: [otlp], exporters: [loadbalancing/flows]}}
"#,
        exporter("traceID"),
        exporter("flow")
    )
}

/// Which gateways got each span and each flow record.
struct Arrivals {
    spans: BTreeMap<i64, BTreeSet<usize>>,
    records: BTreeMap<i64, BTreeSet<usize>>,
}

fn arrivals(gateways: &[&Gateway]) -> Arrivals {
    let mut found = Arrivals { spans: BTreeMap::new(), records: BTreeMap::new() };
    for (index, gateway) in gateways.iter().enumerate() {
        for seq in gateway.sink.span_seqs(RUN).into_keys() {
            found.spans.entry(seq).or_default().insert(index);
        }
        for seq in gateway.sink.seqs(RUN).into_keys() {
            found.records.entry(seq).or_default().insert(index);
        }
    }
    found
}

/// Waits until every span and record of rounds `0..rounds` arrived somewhere.
fn wait_all(gateways: &[&Gateway], rounds: u64) -> Arrivals {
    let spans = (rounds * SPANS_PER_TRACE) as i64;
    // The reply of the last round's flow is never sent.
    let records = (2 * rounds - 1) as i64;
    wait_for(WAIT, &format!("{spans} spans and {records} flow records at the gateways"), || {
        let found = arrivals(gateways);
        ((0..spans).all(|s| found.spans.contains_key(&s)) && (0..records).all(|s| found.records.contains_key(&s)))
            .then_some(found)
    })
}

/// Each trace of `rounds` on one gateway, and both directions of each flow.
fn assert_together(found: &Arrivals, rounds: std::ops::Range<u64>) -> BTreeSet<usize> {
    let mut used = BTreeSet::new();
    for k in rounds {
        let trace: Vec<&BTreeSet<usize>> =
            (0..SPANS_PER_TRACE).map(|i| &found.spans[&((k * SPANS_PER_TRACE + i) as i64)]).collect();
        assert!(trace.iter().all(|g| g.len() == 1 && *g == trace[0]), "trace {k} on gateways {trace:?}");
        let (forward, back) = (&found.records[&(2 * k as i64)], &found.records[&(2 * k as i64 + 1)]);
        assert!(forward.len() == 1 && forward == back, "flow {k}: forward on {forward:?}, reply on {back:?}");
        used.extend(trace[0]);
    }
    used
}

/// Runs the scenario: a stable phase, `change` under load, a stable phase.
fn balance(agent: &Flowtel, port: u16, gateways: &[&Gateway], change: impl FnOnce()) -> Arrivals {
    let sent = Arc::new(AtomicU64::new(0));
    send_rounds(port, 0..150, Duration::ZERO, None, &sent);
    let before = assert_together(&wait_all(gateways, 150), 0..149);
    assert_eq!(before.len(), 3, "the three gateways share the load: {before:?}");

    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (stop, sent) = (stop.clone(), sent.clone());
        std::thread::spawn(move || send_rounds(port, 150..100_000, Duration::from_millis(5), Some(&stop), &sent))
    };
    std::thread::sleep(Duration::from_secs(1));
    change();
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    let churned = sent.load(Ordering::Relaxed);
    assert!(churned > 300, "the load ran through the change: {churned} rounds");

    send_rounds(port, churned..churned + 150, Duration::ZERO, None, &sent);
    let total = churned + 150;
    let found = wait_all(gateways, total);
    // The first round after the change can pair with a reply sent before it.
    assert_together(&found, churned + 1..total - 1);
    assert!(agent.metric("flowtel_exporter_dropped_items_total", &[]) == 0.0, "nothing dropped: {}", agent.metrics());
    found
}

#[test]
fn static_backends_share_the_load_and_a_restarted_gateway_loses_nothing() {
    let port = free_port();
    let gateways: Vec<Gateway> = (0..3).map(|_| Gateway::start(&format!("127.0.0.1:{}", free_port()))).collect();
    let hostnames: Vec<String> = gateways.iter().map(|g| format!("\"{}\"", g.address)).collect();
    let agent = Flowtel::start(&agent_config(port, &format!("static: {{hostnames: [{}]}}", hostnames.join(", "))));
    let all: Vec<&Gateway> = gateways.iter().collect();
    // A static list keeps a killed gateway: what is for it waits until it is back.
    balance(&agent, port, &all, || {
        gateways[1].kill();
        std::thread::sleep(Duration::from_secs(2));
        gateways[1].restart();
    });
    assert_eq!(agent.metric("flowtel_load_balancing_backends", &[]), 6.0, "3 backends for each of the two exporters");
    for gateway in &gateways {
        let sent = agent.metric(
            "flowtel_exporter_sent_items_total",
            &[("exporter", "load_balancing/traces"), ("backend", &gateway.address)],
        );
        assert!(sent > 0.0, "each backend has its own queue and counters: {}", gateway.address);
    }
}

/// After the change, the fourth gateway has taken the second's place, and
/// what the agent held for the second went to the others.
fn assert_replaced(agent: &Flowtel, found: &Arrivals) {
    let last: BTreeSet<usize> =
        found.spans.range((found.spans.len() as i64 - 300)..).flat_map(|(_, g)| g.clone()).collect();
    assert_eq!(last, BTreeSet::from([0, 2, 3]), "after the change, the fourth gateway takes the second's place");
    assert!(
        agent.metric("flowtel_load_balancing_rerouted_items_total", &[]) > 0.0,
        "what waited for the killed gateway went to the others"
    );
}

/// A hosts file the agent reads as its `/etc/hosts`, naming the gateways.
fn write_hosts(path: &Path, name: &str, addresses: &[&str]) {
    let lines: String = addresses.iter().map(|a| format!("{a} {name}\n")).collect();
    std::fs::write(path, format!("127.0.0.1 localhost\n{lines}")).unwrap();
}

#[test]
fn dns_backends_follow_the_name_and_a_removed_gateways_data_moves_to_its_new_owner() {
    if !is_root() {
        panic!("needs root to give the agent its own /etc/hosts (a mount namespace); CI runs as root");
    }
    let port = free_port();
    let gateway_port = free_port();
    let ips = ["127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14"];
    let gateways: Vec<Gateway> = ips.iter().map(|ip| Gateway::start(&format!("{ip}:{gateway_port}"))).collect();
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    let name = "lb-gateways.flowtel.test";
    write_hosts(&hosts, name, &ips[..3]);
    let resolver = format!("dns: {{hostname: {name}, port: {gateway_port}, interval: 200ms}}");
    let agent = Flowtel::start_with_hosts(&agent_config(port, &resolver), &hosts);
    let all: Vec<&Gateway> = gateways.iter().collect();
    let found = balance(&agent, port, &all, || {
        // The second gateway is killed; the name then says the fourth
        // instead. Out of rotation, the second starts again only to send
        // what it had stored.
        gateways[1].kill();
        std::thread::sleep(Duration::from_millis(500));
        write_hosts(&hosts, name, &[ips[0], ips[2], ips[3]]);
        std::thread::sleep(Duration::from_millis(500));
        gateways[1].restart();
    });
    assert_replaced(&agent, &found);
}

/// Addresses of the host on an empty bridge the test creates (Kubernetes
/// refuses loopback addresses in Endpoints); removed on drop.
struct HostAddresses(&'static str);

impl HostAddresses {
    fn add(name: &'static str, addresses: &[&str]) -> HostAddresses {
        let _ = std::process::Command::new("ip").args(["link", "del", name]).output();
        ip(&["link", "add", name, "type", "bridge"]);
        let dummy = HostAddresses(name);
        for address in addresses {
            ip(&["addr", "add", &format!("{address}/32"), "dev", name]);
        }
        ip(&["link", "set", name, "up"]);
        dummy
    }
}

impl Drop for HostAddresses {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip").args(["link", "del", self.0]).output();
    }
}

#[test]
fn k8s_backends_follow_the_services_endpoints() {
    if !is_root() {
        panic!("needs root to give the host the gateways' addresses (a bridge of its own); CI runs as root");
    }
    let kube = KubeApiServer::start();
    let port = free_port();
    let gateway_port = free_port();
    let ips = ["10.89.0.21", "10.89.0.22", "10.89.0.23", "10.89.0.24"];
    let _addresses = HostAddresses::add("flt-lb0", &ips);
    let gateways: Vec<Gateway> = ips.iter().map(|ip| Gateway::start(&format!("{ip}:{gateway_port}"))).collect();
    kube.create::<Service>(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "lb-gateways", "namespace": "default"},
        "spec": {"ports": [{"name": "otlp", "port": 4317}]}
    }));
    let subsets = |addresses: &[&str]| {
        json!([{"addresses": addresses.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>(),
                "ports": [{"name": "otlp", "port": gateway_port}]}])
    };
    kube.create::<Endpoints>(json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "lb-gateways", "namespace": "default"},
        "subsets": subsets(&ips[..3])
    }));
    let resolver = format!(
        "k8s: {{service: lb-gateways.default, ports: [{gateway_port}], auth_type: kubeConfig, kubeconfig: \"{}\"}}",
        kube.kubeconfig.display()
    );
    let agent = Flowtel::start(&agent_config(port, &resolver));
    let all: Vec<&Gateway> = gateways.iter().collect();
    let found = balance(&agent, port, &all, || {
        gateways[1].kill();
        std::thread::sleep(Duration::from_millis(500));
        kube.merge_patch::<Endpoints>("default", "lb-gateways", json!({"subsets": subsets(&[ips[0], ips[2], ips[3]])}));
        std::thread::sleep(Duration::from_millis(500));
        gateways[1].restart();
    });
    assert_replaced(&agent, &found);
    let log = agent.child.output();
    assert!(
        log.contains("via=Endpoints") || log.contains("via=\"Endpoints\""),
        "a 1.20 server serves no EndpointSlice v1"
    );
}
