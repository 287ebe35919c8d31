//! A scrape of the `prometheus` exporter at 10,000 and 100,000 series (time
//! and bytes), against a baseline in the same run: `prometheus-client`
//! encoding the same counters from its own registry.
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

use criterion::{Criterion, criterion_group, criterion_main};
use flowtel_core::{Payload, component::Exporter, exposition::Format};
use flowtel_exporters::prometheus::{PrometheusConfig, PrometheusExporter};
use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, KeyValue, any_value::Value},
    metrics::v1::{
        AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric::Data,
        number_data_point,
    },
};
use prometheus_client::{metrics::counter::Counter, metrics::family::Family, registry::Registry};

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(Value::StringValue(value.into())) }),
        ..Default::default()
    }
}

fn labels(i: usize) -> [(String, String); 4] {
    [
        ("k8s_src_namespace_name".into(), "shop".into()),
        ("k8s_src_owner_name".into(), format!("web-{}", i / 100)),
        ("k8s_dst_namespace_name".into(), "shop".into()),
        ("k8s_dst_owner_name".into(), format!("db-{}", i % 100)),
    ]
}

/// One counter with `series` points, as `signal_to_metrics` makes them.
fn payload(series: usize) -> Payload {
    let points = (0..series)
        .map(|i| NumberDataPoint {
            attributes: labels(i).iter().map(|(k, v)| kv(&k.replace('_', "."), v)).collect(),
            value: Some(number_data_point::Value::AsInt(1500 * i as i64)),
            time_unix_nano: 1_700_000_000_000_000_000,
            ..Default::default()
        })
        .collect();
    let metric = Metric {
        name: "network.workload.bytes".into(),
        unit: "By".into(),
        data: Some(Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Delta as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    };
    Payload::Metrics(vec![ResourceMetrics {
        scope_metrics: vec![ScopeMetrics { metrics: vec![metric], ..Default::default() }],
        ..Default::default()
    }])
}

fn scrape(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut group = c.benchmark_group("prometheus scrape");
    group.sample_size(10);
    for series in [10_000, 100_000] {
        let mut registry = Registry::default();
        let family = Family::<Vec<(String, String)>, Counter>::default();
        registry.register("network_workload_bytes", "", family.clone());
        for i in 0..series {
            family.get_or_create(&labels(i).to_vec()).inc_by(1500 * i as u64);
        }
        let mut baseline = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut baseline, &registry).unwrap();
        group.bench_function(format!("baseline: prometheus-client's registry, {series} series"), |b| {
            b.iter(|| {
                let mut text = String::with_capacity(baseline.len());
                prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
                text
            });
        });

        let exporter =
            PrometheusExporter::new(&PrometheusConfig { max_series: 1_000_000, ..PrometheusConfig::default() });
        runtime.block_on(exporter.export(&payload(series))).unwrap();
        let text = exporter.scrape(Format::Prometheus);
        let open_metrics = exporter.scrape(Format::OpenMetrics);
        println!(
            "prometheus scrape of {series} series: {} bytes (text), {} bytes (OpenMetrics); baseline {} bytes",
            text.len(),
            open_metrics.len(),
            baseline.len()
        );
        group.bench_function(format!("the exporter, {series} series"), |b| {
            b.iter(|| exporter.scrape(Format::Prometheus))
        });
    }
    group.finish();
}

criterion_group!(benches, scrape);
criterion_main!(benches);
