use std::time::Duration;

use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, KeyValue, any_value::Value},
    metrics::v1::{
        AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric::Data,
        number_data_point,
    },
    resource::v1::Resource,
};

use super::*;

fn point(pod: &str, value: i64) -> NumberDataPoint {
    NumberDataPoint {
        attributes: vec![KeyValue {
            key: "k8s.pod.name".into(),
            value: Some(AnyValue { value: Some(Value::StringValue(pod.into())) }),
            ..Default::default()
        }],
        value: Some(number_data_point::Value::AsInt(value)),
        time_unix_nano: 1_700_000_000_000_000_000,
        ..Default::default()
    }
}

fn text_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(Value::StringValue(value.into())) }),
        ..Default::default()
    }
}

fn metrics(name: &str, data: Data) -> Payload {
    Payload::Metrics(vec![ResourceMetrics {
        resource: Some(Resource {
            attributes: vec![
                text_kv("service.name", "app"),
                text_kv("k8s.cluster.name", "prod"),
                text_kv("host.name", "n1"),
            ],
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![Metric { name: name.into(), unit: "By".into(), data: Some(data), ..Default::default() }],
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn sum(points: Vec<NumberDataPoint>, temporality: AggregationTemporality) -> Data {
    Data::Sum(Sum { data_points: points, aggregation_temporality: temporality as i32, is_monotonic: true })
}

fn exporter(config: PrometheusConfig) -> PrometheusExporter {
    PrometheusExporter::new(&config)
}

fn export(exporter: &PrometheusExporter, payload: Payload) {
    tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(exporter.export(&payload)).unwrap();
}

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn deltas_add_up_and_cumulative_points_replace() {
    let exporter = exporter(PrometheusConfig::default());
    for _ in 0..3 {
        export(&exporter, metrics("bytes", sum(vec![point("a", 10)], AggregationTemporality::Delta)));
    }
    export(&exporter, metrics("total.bytes", sum(vec![point("a", 7)], AggregationTemporality::Cumulative)));
    export(&exporter, metrics("total.bytes", sum(vec![point("a", 9)], AggregationTemporality::Cumulative)));
    let text = exporter.scrape(Format::Prometheus);
    assert_eq!(value(&text, r#"bytes_total{job="app",k8s_pod_name="a"}"#), Some(30.0), "{text}");
    assert_eq!(value(&text, r#"total_bytes_total{job="app",k8s_pod_name="a"}"#), Some(9.0), "{text}");
}

#[test]
fn a_name_taken_by_another_type_is_refused_and_max_series_holds() {
    let exporter = exporter(PrometheusConfig { max_series: 2, ..PrometheusConfig::default() });
    export(
        &exporter,
        metrics("bytes", sum(vec![point("a", 1), point("b", 1), point("c", 1)], AggregationTemporality::Delta)),
    );
    export(&exporter, metrics("bytes", Data::Gauge(Gauge { data_points: vec![point("a", 5)] })));
    let text = exporter.scrape(Format::Prometheus);
    assert!(text.contains(r#"k8s_pod_name="a""#) && text.contains(r#"k8s_pod_name="b""#), "{text}");
    assert!(!text.contains(r#"k8s_pod_name="c""#), "past max_series: {text}");
    assert_eq!(value(&text, r#"bytes_total{job="app",k8s_pod_name="a"}"#), Some(1.0), "the gauge was refused");
}

#[test]
fn idle_series_expire() {
    let exporter =
        exporter(PrometheusConfig { metric_expiration: Duration::from_millis(50), ..PrometheusConfig::default() });
    export(&exporter, metrics("bytes", sum(vec![point("a", 1)], AggregationTemporality::Delta)));
    assert!(exporter.scrape(Format::Prometheus).contains("bytes_total"));
    std::thread::sleep(Duration::from_millis(80));
    let text = exporter.scrape(Format::Prometheus);
    assert!(!text.contains("bytes_total") && !text.contains("target_info"), "{text}");
}

#[test]
fn resource_attributes_become_labels_as_configured_and_timestamps_are_sent() {
    let payload = || metrics("bytes", sum(vec![point("a", 1)], AggregationTemporality::Delta));
    let plain = exporter(PrometheusConfig::default());
    export(&plain, payload());
    let text = plain.scrape(Format::Prometheus);
    assert!(text.contains(r#"target_info{host_name="n1",job="app",k8s_cluster_name="prod"} 1"#), "{text}");
    assert_eq!(value(&text, r#"bytes_total{job="app",k8s_pod_name="a"}"#), Some(1.0), "{text}");

    let constant = exporter(PrometheusConfig {
        resource_constant_labels: vec!["k8s.cluster.name".into()],
        send_timestamps: true,
        ..PrometheusConfig::default()
    });
    export(&constant, payload());
    let text = constant.scrape(Format::Prometheus);
    assert!(
        text.contains(r#"bytes_total{job="app",k8s_cluster_name="prod",k8s_pod_name="a"} 1 1700000000000"#),
        "{text}"
    );

    let all = exporter(PrometheusConfig {
        resource_to_telemetry_conversion: ResourceToTelemetry { enabled: true },
        ..PrometheusConfig::default()
    });
    export(&all, payload());
    let text = all.scrape(Format::Prometheus);
    assert_eq!(
        value(&text, r#"bytes_total{host_name="n1",job="app",k8s_cluster_name="prod",k8s_pod_name="a"}"#),
        Some(1.0),
        "{text}"
    );
}
