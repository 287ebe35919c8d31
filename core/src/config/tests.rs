use super::*;

fn env(name: &str) -> Option<String> {
    (name == "BACKEND").then(|| "collector:4317".to_owned())
}

fn paths(result: Result<RawConfig, ConfigErrors>) -> Vec<String> {
    result.expect_err("config should be refused").into_iter().map(|e| e.path).collect()
}

#[test]
fn sections_components_and_pipelines_are_read() {
    let config = load_str_with_env(
        r#"
receivers:
  otlp:
exporters:
  otlp_grpc/backend: {endpoint: "${env:BACKEND}"}
service:
  pipelines:
    logs/main: {receivers: [otlp], exporters: [otlp_grpc/backend]}
"#,
        &env,
    )
    .expect("valid");
    let exporter = config.exporters.keys().next().expect("one exporter");
    assert_eq!(exporter.to_string(), "otlp_grpc/backend");
    let pipelines = config.check_pipelines().expect("valid pipelines");
    assert_eq!(pipelines[0].id.to_string(), "logs/main");
    assert_eq!(config.telemetry, TelemetryConfig::default());

    #[derive(Debug, serde::Deserialize)]
    struct Endpoint {
        endpoint: String,
    }
    impl Validate for Endpoint {}
    let decoded: Endpoint = config.exporters[exporter].decode().expect("decodes");
    assert_eq!(decoded.endpoint, "collector:4317");
}

#[test]
fn unknown_sections_and_bad_ids_are_all_reported() {
    let found = paths(load_str_with_env("recievers: {}\nreceivers: {'bad id/': {}}\nservice: {pipelines: {}}\n", &env));
    assert_eq!(found, vec!["recievers", "receivers::bad id/"]);
}

#[test]
fn telemetry_is_strict() {
    let found = paths(load_str_with_env("service: {telemetry: {metrics: {address: 'x'}, logs: {level: loud}}}", &env));
    assert!(found.iter().all(|p| p.starts_with("service::telemetry")), "{found:?}");
}
