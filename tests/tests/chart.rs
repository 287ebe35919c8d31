//! `charts/flowtel` rendered as `helm template` would (tests/chart-render)
//! for an agent, a gateway and both: every object is accepted by the real
//! API server the tests run (Kubernetes 1.20, so the PodDisruptionBudget and
//! HPA API versions are chosen from its `Capabilities.APIVersions`), and
//! every rendered flowtel config passes `flowtel validate`; values asking
//! for something impossible fail with a clear message. Needs
//! `cargo xtask setup` (the API server, Go and sprig).

#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Command;

use flowtel_tests::{chart::render, flowtel_bin, kube::KubeApiServer};
use serde_json::{Value, json};

/// What the tests' Kubernetes 1.20 API server serves, as Helm would learn it.
const KUBERNETES_1_20: &[&str] = &[
    "apps/v1",
    "policy/v1beta1",
    "autoscaling/v1",
    "autoscaling/v2beta1",
    "autoscaling/v2beta2",
    "rbac.authorization.k8s.io/v1",
];
/// What current clusters serve besides.
const CURRENT: &[&str] = &["apps/v1", "policy/v1", "autoscaling/v2", "rbac.authorization.k8s.io/v1"];

fn kinds(list: &Value) -> Vec<(String, String)> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| (item["kind"].as_str().unwrap().to_owned(), item["apiVersion"].as_str().unwrap().to_owned()))
        .collect()
}

/// `flowtel validate` on each rendered ConfigMap's config; the problems of those that fail.
fn validate_configs(list: &Value) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let mut problems = Vec::new();
    let mut found = 0;
    for item in list["items"].as_array().unwrap().iter().filter(|item| item["kind"] == "ConfigMap") {
        found += 1;
        let path = dir.path().join("otel-config.yaml");
        std::fs::write(&path, item["data"]["otel-config.yaml"].as_str().unwrap()).unwrap();
        let output = Command::new(flowtel_bin())
            .args(["validate", "--config"])
            .arg(&path)
            .envs([("MY_POD_IP", "10.0.0.5"), ("K8S_NODE_NAME", "node-1")])
            .output()
            .unwrap();
        if !output.status.success() {
            problems.push(String::from_utf8_lossy(&output.stderr).into_owned());
        }
    }
    assert!(found > 0, "no ConfigMap rendered");
    problems
}

#[test]
fn agent_gateway_and_both_render_into_objects_the_api_server_accepts() {
    let api = KubeApiServer::start();
    api.create_namespace("observability", json!({}));
    let dir = tempfile::tempdir().unwrap();
    for (release, mode) in [("agents", "daemonset"), ("gateways", "deployment"), ("tier", "both")] {
        let values = format!(
            "mode: {mode}\notlpEndpoint: otel-collector.observability.svc:4317\ngateway:\n  autoscaling: {{enabled: true}}\nagent:\n  priorityClassName: system-node-critical\nserviceMonitor: {{enabled: false}}\npodAnnotations: {{team: network}}\n"
        );
        let list =
            render(&values, release, "observability", KUBERNETES_1_20).unwrap_or_else(|err| panic!("{mode}: {err}"));
        let kinds = kinds(&list);
        let has = |kind: &str| kinds.iter().any(|(k, _)| k == kind);
        assert_eq!(has("DaemonSet"), mode != "deployment", "{mode}: {kinds:?}");
        assert_eq!(has("Deployment") && has("Service"), mode != "daemonset", "{mode}: {kinds:?}");
        if mode != "daemonset" {
            assert!(kinds.contains(&("PodDisruptionBudget".into(), "policy/v1beta1".into())), "{kinds:?}");
            assert!(kinds.contains(&("HorizontalPodAutoscaler".into(), "autoscaling/v2beta2".into())), "{kinds:?}");
        }
        // Least privilege: named capabilities, never privileged by default.
        for item in list["items"].as_array().unwrap().iter().filter(|item| item["kind"] == "DaemonSet") {
            let security = &item["spec"]["template"]["spec"]["containers"][0]["securityContext"];
            assert_eq!(security["privileged"], Value::Null, "{security}");
            assert_eq!(
                security["capabilities"]["add"],
                json!(["BPF", "PERFMON", "NET_ADMIN", "SYS_PTRACE", "DAC_READ_SEARCH", "SYSLOG"])
            );
            assert_eq!(item["spec"]["template"]["spec"]["tolerations"], json!([{"operator": "Exists"}]));
        }
        let problems = validate_configs(&list);
        assert!(problems.is_empty(), "{mode}: {problems:?}");
        let path = dir.path().join(format!("{release}.json"));
        std::fs::write(&path, list.to_string()).unwrap();
        api.apply_list(&path);
    }

    // The example values for a cluster.
    let example = std::fs::read_to_string(flowtel_tests::root().join("examples/kubernetes/values.yaml")).unwrap();
    let list = render(&example, "example", "observability", KUBERNETES_1_20).unwrap();
    assert!(validate_configs(&list).is_empty());
    let path = dir.path().join("example.json");
    std::fs::write(&path, list.to_string()).unwrap();
    api.apply_list(&path);

    // The agent of `both` sends to the release's gateway Service.
    let both = render("mode: both\n", "tier", "observability", KUBERNETES_1_20).unwrap();
    let agent_config = both["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["metadata"]["name"] == "tier-flowtel-agent" && item["kind"] == "ConfigMap")
        .map(|item| item["data"]["otel-config.yaml"].as_str().unwrap().to_owned())
        .unwrap();
    assert!(agent_config.contains("endpoint: tier-flowtel-gateway.observability.svc:4317"), "{agent_config}");
}

#[test]
fn current_clusters_get_current_api_versions() {
    let list =
        render("mode: deployment\ngateway: {autoscaling: {enabled: true}}\n", "flowtel", "default", CURRENT).unwrap();
    let kinds = kinds(&list);
    assert!(kinds.contains(&("PodDisruptionBudget".into(), "policy/v1".into())), "{kinds:?}");
    assert!(kinds.contains(&("HorizontalPodAutoscaler".into(), "autoscaling/v2".into())), "{kinds:?}");
    let privileged = render("privileged: true\n", "flowtel", "default", CURRENT).unwrap();
    let daemonset = privileged["items"].as_array().unwrap().iter().find(|item| item["kind"] == "DaemonSet").unwrap();
    assert_eq!(daemonset["spec"]["template"]["spec"]["containers"][0]["securityContext"], json!({"privileged": true}));
}

#[test]
fn impossible_values_fail_with_a_clear_message() {
    let error = render("mode: agent\n", "flowtel", "default", CURRENT).unwrap_err();
    assert!(error.contains("mode must be daemonset, deployment or both, not \"agent\""), "{error}");
    let error = render("image: {repository: \"\"}\n", "flowtel", "default", CURRENT).unwrap_err();
    assert!(error.contains("image.repository is required"), "{error}");

    // Rendered, but refused by flowtel with the path of the problem.
    let bad_endpoint = render("otlpEndpoint: \"collector with no port\"\n", "flowtel", "default", CURRENT).unwrap();
    let problems = validate_configs(&bad_endpoint).join("\n");
    assert!(problems.contains("exporters::otlp_grpc::endpoint"), "{problems}");
    let no_such_exporter = render(
        "config:\n  service:\n    pipelines:\n      logs: {receivers: [ebpf], exporters: [kafka]}\n",
        "flowtel",
        "default",
        CURRENT,
    )
    .unwrap();
    let problems = validate_configs(&no_such_exporter).join("\n");
    assert!(problems.contains("`kafka` is not defined under `exporters` or `connectors`"), "{problems}");
}
