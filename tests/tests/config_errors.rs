//! `flowtel validate` and `flowtel --config` on bad configs: exit 1 and a
//! message naming the path of every problem.

#![allow(clippy::unwrap_used, missing_docs)]

use std::process::{Command, Output};

use flowtel_tests::flowtel_bin;

fn flowtel(args: &[&str], config: &str) -> (Output, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("otel-config.yaml");
    std::fs::write(&path, config).unwrap();
    let output = Command::new(flowtel_bin())
        .args(args)
        .arg("--config")
        .arg(&path)
        .env("FLOWTEL_TEST_PORT", "4999")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stderr)
}

const GOOD_TAIL: &str = r#"
service:
  pipelines:
    logs: {receivers: [otlp], processors: [batch], exporters: [debug]}
"#;

const GOOD_HEAD: &str = r#"
receivers:
  otlp: {protocols: {grpc: {endpoint: "127.0.0.1:${env:FLOWTEL_TEST_PORT}"}}}
processors:
  batch:
exporters:
  debug:
"#;

#[test]
fn a_good_config_validates() {
    let (output, stderr) = flowtel(&["validate"], &format!("{GOOD_HEAD}{GOOD_TAIL}"));
    assert!(output.status.success(), "{stderr}");
}

/// Processor sections written for the OpenTelemetry Collector load as they
/// are, next to its exporters (whose clients are built, not connected).
#[test]
fn a_collectors_processor_sections_validate() {
    let config = r#"
receivers:
  otlp: {protocols: {grpc: {endpoint: "127.0.0.1:${env:FLOWTEL_TEST_PORT}"}}}
processors:
  memory_limiter: {check_interval: 1s, limit_percentage: 75, spike_limit_percentage: 15}
  k8sattributes:
    passthrough: true
    extract:
      otel_annotations: true
      metadata: [k8s.namespace.name, k8s.deployment.name, k8s.replicaset.name, k8s.statefulset.name,
        k8s.daemonset.name, k8s.cronjob.name, k8s.job.name, k8s.node.name, k8s.node.uid, k8s.pod.name,
        k8s.pod.uid, k8s.pod.start_time, k8s.cluster.uid, k8s.container.name, container.id, container.image.name,
        container.image.tag, service.namespace, service.name, service.version, service.instance.id]
      labels:
        - {tag_name: $1, key_regex: (app\.kubernetes\.io/.+), from: pod}
      annotations:
        - {tag_name: a1, key: annotation-one, from: pod}
    exclude:
      pods: [{name: jaeger-agent}, {name: otel-.*}]
    pod_association:
      - sources: [{from: resource_attribute, name: k8s.pod.ip}]
      - sources: [{from: resource_attribute, name: k8s.pod.uid}]
      - sources: [{from: connection}]
  probabilisticsampler:
    mode: hash_seed
    sampling_percentage: 15.3
    hash_seed: 22
    attribute_source: record
    from_attribute: logID
    sampling_priority: priority
    fail_closed: false
  logdedup:
    interval: 60s
    log_count_attribute: dedup_count
    timezone: America/Los_Angeles
    exclude_fields: [attributes.remote_ip]
    conditions: ['attributes["ID"] == 1', 'severity_number >= SEVERITY_NUMBER_ERROR']
  filter:
    error_mode: ignore
    logs:
      log_record:
        - 'IsMatch(body, ".*password.*")'
        - 'severity_number < SEVERITY_NUMBER_WARN'
        - 'resource.attributes["service.name"] == "noisy" and attributes["http.route"] != nil'
    metrics:
      metric: ['name == "my.metric" and resource.attributes["my_label"] == "abc123"', 'type == METRIC_DATA_TYPE_HISTOGRAM']
      datapoint: ['metric.name == "my.metric" and IsMatch(attributes["my_label"], "abc.*")']
    traces:
      span: ['attributes["container.name"] == "app_container_1"', 'resource.attributes["host.name"] == "localhost"']
      spanevent: ['attributes["grpc"] == true', 'IsMatch(name, ".*grpc.*")']
  batch:
exporters:
  otlp:
    endpoint: otel-collector.observability.svc:4317
    tls: {insecure: true}
  otlphttp: {endpoint: "https://otlp.example.com:4318"}
service:
  pipelines:
    logs: {receivers: [otlp], processors: [memory_limiter, k8sattributes, probabilisticsampler, logdedup, filter, batch], exporters: [otlp]}
    metrics: {receivers: [otlp], processors: [memory_limiter, filter, batch], exporters: [otlphttp]}
"#;
    let (output, stderr) = flowtel(&["validate"], config);
    assert!(output.status.success(), "{stderr}");
}

#[test]
fn the_default_config_validates() {
    let output = Command::new(flowtel_bin())
        .args(["validate", "--config"])
        .arg(flowtel_tests::root().join("otel-config.yaml"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn the_example_configs_validate() {
    for example in [
        "tempo/otel-config.yaml",
        "prometheus/otel-config.yaml",
        "otlp-backend/otel-config.yaml",
        "gateway/agent.yaml",
        "gateway/agent-load-balancing.yaml",
        "gateway/gateway.yaml",
        "hubble/otel-config.yaml",
    ] {
        let config = flowtel_tests::root().join(format!("examples/{example}"));
        let output = Command::new(flowtel_bin())
            .args(["validate", "--config"])
            .arg(&config)
            .env("TRACES_BACKEND", "tempo.example:4317")
            .env("K8S_NODE_NAME", "node-1")
            .env("OTLP_BACKEND", "backend.example:4317")
            .env("FLOWTEL_GATEWAY", "gateway.example:4317")
            .env("FLOWTEL_GATEWAYS", "gateways.example")
            .output()
            .unwrap();
        assert!(output.status.success(), "{}: {}", config.display(), String::from_utf8_lossy(&output.stderr));
    }
}

#[test]
fn each_kind_of_bad_config_names_its_path() {
    let cases: &[(&str, String, &str)] = &[
        (
            "unknown key",
            format!("{GOOD_HEAD}  otlp_grpc: {{endpoint: \"a:1\", tls: {{insecure: true}}, retries: 3}}{GOOD_TAIL}"),
            "exporters::otlp_grpc::retries: unknown field: found `retries`",
        ),
        (
            "unknown component type",
            format!("{GOOD_HEAD}  kafka:{GOOD_TAIL}"),
            "exporters::kafka: unknown exporter type `kafka`",
        ),
        (
            "dangling reference",
            format!(
                "{GOOD_HEAD}\nservice:\n  pipelines:\n    logs: {{receivers: [otlp], exporters: [debug/missing]}}\n"
            ),
            "service::pipelines::logs::exporters: `debug/missing` is not defined",
        ),
        (
            "pipeline without receivers",
            format!("{GOOD_HEAD}\nservice:\n  pipelines:\n    logs: {{exporters: [debug]}}\n"),
            "service::pipelines::logs::receivers: a pipeline needs at least one receiver",
        ),
        (
            "pipeline without exporters",
            format!("{GOOD_HEAD}\nservice:\n  pipelines:\n    logs: {{receivers: [otlp]}}\n"),
            "service::pipelines::logs::exporters: a pipeline needs at least one exporter",
        ),
        (
            "bad duration",
            format!("{GOOD_HEAD}  otlp_grpc: {{endpoint: \"a:1\", timeout: 5 seconds please}}{GOOD_TAIL}"),
            "exporters::otlp_grpc::timeout:",
        ),
        (
            "bad size",
            GOOD_HEAD.replace(
                "grpc: {endpoint: \"127.0.0.1:${env:FLOWTEL_TEST_PORT}\"}",
                "http: {max_request_body_size: lots}",
            ) + GOOD_TAIL,
            "receivers::otlp::protocols::http::max_request_body_size:",
        ),
        (
            "bad listen endpoint",
            GOOD_HEAD.replace("127.0.0.1:${env:FLOWTEL_TEST_PORT}", "localhost") + GOOD_TAIL,
            "receivers::otlp::protocols::grpc::endpoint: \"localhost\" has no port",
        ),
        (
            "bad exporter endpoint",
            format!("{GOOD_HEAD}  otlp_http: {{endpoint: \"ftp://backend\"}}{GOOD_TAIL}"),
            "exporters::otlp_http::endpoint:",
        ),
        (
            "pipeline of an unknown signal",
            format!("{GOOD_HEAD}\nservice:\n  pipelines:\n    profiles: {{receivers: [otlp], exporters: [debug]}}\n"),
            "service::pipelines::profiles:",
        ),
        (
            "filter condition syntax",
            GOOD_HEAD
                .replace("  batch:\n", "  batch:\n  filter: {logs: {log_record: ['destination.port in 8000-8100']}}\n")
                + GOOD_TAIL,
            "processors::filter::logs::log_record[0]: column 21: `in` takes a CIDR",
        ),
        (
            "sampling percentage",
            GOOD_HEAD.replace("  batch:\n", "  batch:\n  probabilistic_sampler: {sampling_percentage: 101}\n")
                + GOOD_TAIL,
            "processors::probabilistic_sampler::sampling_percentage: must be 0 to 100",
        ),
        (
            "unknown Kubernetes attribute",
            GOOD_HEAD.replace("  batch:\n", "  batch:\n  k8s_attributes: {extract: {metadata: [k8s.pod.colour]}}\n")
                + GOOD_TAIL,
            "processors::k8s_attributes::extract::metadata[0]: unknown attribute \"k8s.pod.colour\"",
        ),
        ("not YAML", "receivers: [unclosed".to_owned(), "config: not a valid YAML mapping"),
    ];
    for (what, config, expected) in cases {
        for args in [&["validate"][..], &[][..]] {
            let (output, stderr) = flowtel(args, config);
            assert_eq!(output.status.code(), Some(1), "{what} ({args:?}): {stderr}");
            assert!(stderr.contains(expected), "{what} ({args:?}): expected {expected:?} in:\n{stderr}");
        }
    }
}

#[test]
fn every_problem_is_reported_together() {
    // An unknown section, a bad field, a dangling reference and a garbage
    // CA file (found at different steps of loading) come out in one list.
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "this is not a certificate").unwrap();
    let config = format!(
        r#"
recievers: {{}}
receivers:
  otlp: {{protocols: {{grpc: {{endpoint: "nowhere"}}}}}}
processors:
  batch: {{timeout: soon}}
exporters:
  otlp_grpc: {{endpoint: "a:1", tls: {{ca_file: "{ca}"}}}}
service:
  pipelines:
    logs: {{receivers: [otlp, ghost], processors: [batch], exporters: [otlp_grpc]}}
"#,
        ca = ca.display()
    );
    let (output, stderr) = flowtel(&["validate"], &config);
    assert_eq!(output.status.code(), Some(1));
    for path in [
        "recievers: unknown section",
        "receivers::otlp::protocols::grpc::endpoint",
        "processors::batch::timeout",
        "exporters::otlp_grpc::tls::ca_file: ",
        "is not PEM certificates",
        "service::pipelines::logs::receivers: `ghost` is not defined",
    ] {
        assert!(stderr.contains(path), "expected {path:?} in:\n{stderr}");
    }
    let config = r#"
receivers:
  otlp: {protocols: {grpc: {endpoint: "nowhere"}}}
processors:
  batch: {timeout: soon, send_batch_size: 10, send_batch_max_size: 5}
exporters:
  otlp_grpc: {endpoint: "a:1", timeout: forever}
  mystery:
service:
  pipelines:
    logs: {receivers: [otlp, ghost], processors: [batch], exporters: [otlp_grpc]}
"#;
    let (output, stderr) = flowtel(&["validate"], config);
    assert_eq!(output.status.code(), Some(1));
    for path in [
        "receivers::otlp::protocols::grpc::endpoint",
        "processors::batch::timeout",
        "exporters::otlp_grpc::timeout",
        "exporters::mystery",
        "service::pipelines::logs::receivers: `ghost` is not defined",
    ] {
        assert!(stderr.contains(path), "expected {path:?} in:\n{stderr}");
    }
}

#[test]
fn an_unreachable_kubernetes_api_stops_startup_with_the_reason() {
    let config = format!(
        "{}{}",
        GOOD_HEAD.replace(
            "  batch:\n",
            "  batch:\n  k8s_attributes: {auth_type: kubeConfig, kubeconfig: /nonexistent/kubeconfig}\n"
        ),
        GOOD_TAIL.replace("processors: [batch]", "processors: [k8s_attributes, batch]")
    );
    let (output, stderr) = flowtel(&["validate"], &config);
    assert!(output.status.success(), "the file itself is valid: {stderr}");
    let (output, stderr) = flowtel(&[], &config);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("processors::k8s_attributes: cannot read the kubeconfig /nonexistent/kubeconfig"),
        "{stderr}"
    );
}

#[test]
fn hostile_config_files_are_refused_with_the_reason() {
    // Nested 100,000 deep: refused before a YAML parser spends minutes on it.
    let deep = format!("receivers: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    let (output, stderr) = flowtel(&["validate"], &deep);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("line 1: collections nested deeper than 64 levels"), "{stderr}");
    // A key given twice: YAML forbids it, and the second would silently win.
    let twice = format!("{GOOD_HEAD}  debug:{GOOD_TAIL}");
    let (output, stderr) = flowtel(&["validate"], &twice);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("duplicate entry with key \"debug\""), "{stderr}");
    // More headers than an HTTP client can hold: an error, not a panic.
    let headers: Vec<String> = (0..24_577).map(|i| format!("h{i}: v")).collect();
    let many = format!("{GOOD_HEAD}  otlp_grpc: {{endpoint: \"a:1\", headers: {{{}}}}}{GOOD_TAIL}", headers.join(", "));
    for args in [&["validate"][..], &[][..]] {
        let (output, stderr) = flowtel(args, &many);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("exporters::otlp_grpc::headers: 24577 headers; at most 256 are allowed"), "{stderr}");
    }
}

#[test]
fn an_unset_environment_variable_is_named() {
    let config =
        format!("{GOOD_HEAD}  otlp_grpc: {{endpoint: \"${{env:FLOWTEL_TEST_UNSET}}backend:4317\"}}{GOOD_TAIL}");
    let (output, stderr) = flowtel(&["validate"], &config);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: exporters::otlp_grpc::endpoint: environment variable FLOWTEL_TEST_UNSET is not set"),
        "{stderr}"
    );
}

/// Connectors wired wrong and metric definitions that cannot work: every
/// problem with its path, in one run.
#[test]
fn connector_wiring_and_metric_definitions_are_checked() {
    let config = r#"
receivers:
  otlp: {protocols: {grpc: {endpoint: "127.0.0.1:${env:FLOWTEL_TEST_PORT}"}}}
connectors:
  count/one_side:
  forward:
  forward/loop:
  signal_to_metrics:
    logs:
      - name: bytes
        sum: {value: "Int(AdjustedCount())"}
      - name: rtt
        histogram: {buckets: [1, 0.5], value: network.tcp.srtt}
        attributes: [{key: a}, {key: a}]
      - name: both
        sum: {value: "1"}
        histogram: {value: "1"}
      - name: typo
        sum: {value: "1"}
        conditions: ['event_name == ']
      - name: from_resource
        sum: {value: "1"}
        attributes: [{key: 'resource.attributes["k8s.pod.name"]'}]
exporters:
  debug:
  prometheus: {endpoint: "127.0.0.1:0", const_labels: {"bad label": x}}
service:
  pipelines:
    logs: {receivers: [otlp], exporters: [count/one_side, forward, signal_to_metrics]}
    traces: {receivers: [forward], exporters: [debug]}
    metrics: {receivers: [signal_to_metrics], exporters: [prometheus, forward/loop]}
    metrics/again: {receivers: [forward/loop], exporters: [forward/loop]}
"#;
    let (output, stderr) = flowtel(&["validate"], config);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    for expected in [
        "connectors::signal_to_metrics::logs::0::sum::value: `Int(AdjustedCount())` is neither a number nor an attribute key",
        "connectors::signal_to_metrics::logs::1::histogram::buckets: bounds must increase: 1 then 0.5",
        "connectors::signal_to_metrics::logs::1::attributes::1::key: `a` is listed twice",
        "connectors::signal_to_metrics::logs::2: needs exactly one of `sum`, `histogram` or `exponential_histogram`",
        "connectors::signal_to_metrics::logs::3::conditions::0: column",
        "connectors::signal_to_metrics::logs::4::attributes::0::key: `resource.attributes[\"k8s.pod.name\"]` is not an attribute key",
        "connectors::count/one_side: used as an exporter by `logs` but as a receiver by no pipeline",
        "service::pipelines::logs::exporters: `forward` cannot turn logs into what the pipelines receiving from it take (`traces`)",
        "service::pipelines::traces::receivers: `forward` makes no traces",
        "service::pipelines: connectors lead a pipeline back to itself: metrics/again → forward/loop → metrics/again",
        "exporters::prometheus::const_labels::bad label:",
    ] {
        assert!(stderr.contains(expected), "missing {expected:?} in:\n{stderr}");
    }
}

#[test]
fn persistent_queues_and_their_storage_are_checked() {
    let config = r#"
extensions:
  file_storage: {directory: /tmp, compaction: {on_shutdown: true}}
  file_storage/unlisted: {directory: /tmp, max_size: 1KiB}
receivers:
  otlp: {protocols: {grpc: {endpoint: "127.0.0.1:${env:FLOWTEL_TEST_PORT}"}}}
exporters:
  otlp_grpc/a: {endpoint: "127.0.0.1:1", sending_queue: {storage: file_storage/unlisted}}
  otlp_grpc/b: {endpoint: "127.0.0.1:1", sending_queue: {storage: file_storage/missing}}
  otlp_http: {endpoint: "http://127.0.0.1:1", sending_queue: {storage: "bad id/x/y"}}
service:
  extensions: [file_storage, file_storage/other]
  pipelines:
    logs: {receivers: [otlp], exporters: [otlp_grpc/a, otlp_grpc/b, otlp_http]}
"#;
    let (output, stderr) = flowtel(&["validate"], config);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    for expected in [
        "extensions::file_storage::compaction::on_shutdown: unknown field: found `on_shutdown`",
        "extensions::file_storage/unlisted::max_size: must be at least",
        "service::extensions: `file_storage/other` is not defined under `extensions`",
        "exporters::otlp_grpc/a::sending_queue::storage: `file_storage/unlisted` is not listed in `service::extensions`",
        "exporters::otlp_grpc/b::sending_queue::storage: `file_storage/missing` is not defined under `extensions`",
        "exporters::otlp_http::sending_queue::storage: invalid id \"bad id/x/y\"",
    ] {
        assert!(stderr.contains(expected), "missing {expected:?} in:\n{stderr}");
    }

    // A directory that is missing stops startup with the reason.
    let config = r#"
extensions:
  file_storage: {directory: /nonexistent/flowtel-queue}
receivers:
  otlp: {protocols: {grpc: {endpoint: "127.0.0.1:0"}}}
exporters:
  otlp_grpc: {endpoint: "127.0.0.1:1", sending_queue: {storage: file_storage}}
service:
  extensions: [file_storage]
  pipelines:
    logs: {receivers: [otlp], exporters: [otlp_grpc]}
"#;
    let (output, stderr) = flowtel(&[], config);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr
            .contains("directory /nonexistent/flowtel-queue does not exist; create it or set `create_directory: true`"),
        "{stderr}"
    );
}

#[test]
fn load_balancing_exporters_are_checked() {
    let config = r#"
receivers:
  otlp: {protocols: {grpc: {endpoint: "127.0.0.1:${env:FLOWTEL_TEST_PORT}"}}}
exporters:
  load_balancing/none:
    protocol: {otlp: {tls: {insecure: true}}}
    resolver: {}
  load_balancing/two:
    routing_key: attributes
    protocol: {otlp: {timeout: 0s, compresion: gzip}}
    resolver: {static: {hostnames: []}, dns: {hostname: gw, interval: 0s}}
  loadbalancing/key:
    routing_key: spanID
    protocol: {otlp: {}}
    resolver: {k8s: {service: a.b.c, kubeconfig: /x}}
service:
  pipelines:
    traces: {receivers: [otlp], exporters: [load_balancing/none, load_balancing/two, loadbalancing/key]}
"#;
    let (output, stderr) = flowtel(&["validate"], config);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    for expected in [
        "exporters::load_balancing/none::resolver: needs exactly one of `static`, `dns` or `k8s`",
        "exporters::load_balancing/two::resolver: needs exactly one of",
        "exporters::load_balancing/two::resolver::static::hostnames: must name at least one backend",
        "exporters::load_balancing/two::resolver::dns::interval: must be more than 0",
        "exporters::load_balancing/two::routing_attributes: `routing_key: attributes` needs at least one",
        "exporters::loadbalancing/key::routing_key: unknown variant: found `spanID`",
    ] {
        assert!(stderr.contains(expected), "missing {expected:?} in:\n{stderr}");
    }

    // The backends' settings are an otlp_grpc exporter's, checked with their path.
    let config = r#"
receivers:
  otlp: {protocols: {grpc: {endpoint: "127.0.0.1:${env:FLOWTEL_TEST_PORT}"}}}
exporters:
  load_balancing:
    protocol: {otlp: {timeout: 0s, compresion: gzip}}
    resolver: {static: {hostnames: [a]}}
service:
  pipelines:
    traces: {receivers: [otlp], exporters: [load_balancing]}
"#;
    let (output, stderr) = flowtel(&["validate"], config);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("exporters::load_balancing::protocol::otlp::compresion: unknown field"), "{stderr}");
}
