//! Privileged, real kernel, real peers: the configs of `examples/` run as
//! their READMEs say, against rotel as the OTLP backend — the agent
//! straight to a backend, and agents → gateway → backend. The tests only
//! narrow the kernel receiver to loopback and choose free ports (the
//! Hubble example keeps its documented port, 4245). Needs root
//! and `cargo xtask setup`.

#![allow(clippy::unwrap_used, missing_docs)]

use std::{net::TcpStream, time::Duration};

use flowtel_tests::{
    free_port,
    netns::is_root,
    otlp_json::items,
    process::{Flowtel, Recorder, Rotel},
    root, wait_for,
};

/// An example's config, watching loopback, its telemetry on the harness's port.
fn example(path: &str) -> String {
    let text = std::fs::read_to_string(root().join("examples").join(path)).unwrap();
    let mut config =
        text.replace("interfaces: []\n    flush_interval: 10s", "interfaces: [lo]\n    flush_interval: 500ms");
    for default in ["127.0.0.1:8888", "0.0.0.0:8888"] {
        config = config.replace(default, "127.0.0.1:${METRICS_PORT}");
    }
    assert!(config.contains("${METRICS_PORT}"), "{path} has a telemetry address");
    config
}

/// A refused connection on loopback, to `port`.
fn refused(port: u16) {
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

/// Whether the backend got a flow record to or from `port`.
fn flow_reached(recorder: &Recorder, port: u16) -> bool {
    let requests = recorder.requests();
    let logs = items(requests.iter().filter(|(signal, _)| signal == "logs").map(|(_, r)| r), "logs");
    logs.iter().any(|record| {
        record.event_name == "network.flow"
            && [record.attributes.get("destination.port"), record.attributes.get("source.port")]
                .iter()
                .any(|p| p.is_some_and(|p| *p == port.to_string()))
    })
}

/// One test runs the examples in turn: two agents on one interface would
/// each take over the other's classifiers.
#[test]
fn the_examples_run_as_written() {
    if !is_root() {
        eprintln!("skipped: needs root to load eBPF programs");
        return;
    }
    the_agent_sends_the_kernels_records_to_an_otlp_backend();
    agents_reach_the_backend_through_the_gateway();
    grpc_clients_read_flows_over_the_hubble_api();
}

/// The README's grpcurl command, as written, against the Hubble example.
fn grpc_clients_read_flows_over_the_hubble_api() {
    let _flowtel = Flowtel::start(&example("hubble/otel-config.yaml"));
    let port = free_port();
    refused(port);
    let readme = std::fs::read_to_string(root().join("examples/hubble/README.md")).unwrap();
    let command = readme.lines().find(|line| line.starts_with("grpcurl ")).expect("the README's grpcurl command");
    let args = ["-plaintext", "-d", r#"{"number": 20}"#, "127.0.0.1:4245", "observer.Observer/GetFlows"];
    assert_eq!(
        command,
        format!("grpcurl {}", args.map(|a| if a.contains(' ') { format!("'{a}'") } else { a.to_owned() }).join(" "))
    );
    wait_for(Duration::from_secs(30), "the flow over the Hubble API", || {
        let output = std::process::Command::new(flowtel_tests::grpcurl()).args(args).output().unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        let to_port = [format!("\"destinationPort\": {port}"), format!("\"destination_port\": {port}")];
        (output.status.success() && to_port.iter().any(|p| text.contains(p.as_str()))).then_some(())
    });
}

fn the_agent_sends_the_kernels_records_to_an_otlp_backend() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::start(dir.path());
    let rotel = Rotel::start(dir.path(), free_port(), recorder.port);
    let backend = format!("127.0.0.1:{}", rotel.grpc_port);
    let (grpc, http) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
    let _agent = Flowtel::start_with_env(
        &example("otlp-backend/otel-config.yaml"),
        &[
            ("OTLP_BACKEND", backend.as_str()),
            ("OTLP_BACKEND_INSECURE", "true"),
            ("FLOWTEL_OTLP_GRPC_ENDPOINT", grpc.as_str()),
            ("FLOWTEL_OTLP_HTTP_ENDPOINT", http.as_str()),
            ("FLOWTEL_QUEUE_DIRECTORY", &dir.path().join("queue").display().to_string()),
        ],
    );
    let port = free_port();
    refused(port);
    wait_for(Duration::from_secs(30), "the flow at the backend", || flow_reached(&recorder, port).then_some(()));
}

fn agents_reach_the_backend_through_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::start(dir.path());
    let rotel = Rotel::start(dir.path(), free_port(), recorder.port);
    let backend = format!("127.0.0.1:{}", rotel.grpc_port);
    let (grpc, http) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
    let _gateway = Flowtel::start_with_env(
        &example("gateway/gateway.yaml"),
        &[
            ("OTLP_BACKEND", backend.as_str()),
            ("OTLP_BACKEND_INSECURE", "true"),
            ("FLOWTEL_OTLP_GRPC_ENDPOINT", grpc.as_str()),
            ("FLOWTEL_OTLP_HTTP_ENDPOINT", http.as_str()),
        ],
    );
    let _agent = Flowtel::start_with_env(
        &example("gateway/agent.yaml"),
        &[("FLOWTEL_GATEWAY", grpc.as_str()), ("FLOWTEL_GATEWAY_INSECURE", "true")],
    );
    let port = free_port();
    refused(port);
    wait_for(Duration::from_secs(30), "the agent's flow at the backend, through the gateway", || {
        flow_reached(&recorder, port).then_some(())
    });
}
