//! Pushes flowtel's own metrics over OTLP/gRPC with the OpenTelemetry SDK,
//! the way the Go collector reports on itself.

use std::{collections::BTreeSet, sync::Arc};

use opentelemetry::{KeyValue, metrics::MeterProvider as _};
use opentelemetry_otlp::{MetricExporter, WithExportConfig};
use opentelemetry_sdk::{
    Resource,
    metrics::{PeriodicReader, SdkMeterProvider},
};

use super::{MetricsRegistry, OtlpPushConfig};

/// The OTLP metric exporter could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the OTLP metric exporter for {endpoint}: {source}")]
pub struct OtlpPushError {
    /// Where it was to push.
    pub endpoint: String,
    /// Why.
    pub source: opentelemetry_otlp::ExporterBuildError,
}

/// A running OTLP push of the registry's metrics.
pub struct OtlpPush {
    provider: Option<SdkMeterProvider>,
}

impl OtlpPush {
    /// Starts pushing every metric now in `registry` every `config.interval`.
    pub fn start(config: &OtlpPushConfig, registry: Arc<MetricsRegistry>) -> Result<Self, OtlpPushError> {
        let exporter = MetricExporter::builder()
            .with_tonic()
            .with_endpoint(config.endpoint.clone())
            .build()
            .map_err(|source| OtlpPushError { endpoint: config.endpoint.clone(), source })?;
        let reader = PeriodicReader::builder(exporter).with_interval(config.interval).build();
        let provider = SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(Resource::builder().with_service_name("flowtel").build())
            .build();
        let meter = provider.meter("flowtel");

        let names: BTreeSet<(&'static str, &'static str, bool)> =
            registry.samples().into_iter().map(|s| (s.name, s.help, s.is_counter)).collect();
        for (name, help, is_counter) in names {
            let otel_name = name.strip_suffix("_total").unwrap_or(name);
            let registry = registry.clone();
            let observe = move || {
                registry
                    .family_samples(name)
                    .into_iter()
                    .map(|s| {
                        let attrs: Vec<KeyValue> = s.labels.into_iter().map(|(k, v)| KeyValue::new(k, v)).collect();
                        (s.value, attrs)
                    })
                    .collect::<Vec<_>>()
            };
            if is_counter {
                meter
                    .f64_observable_counter(otel_name)
                    .with_description(help)
                    .with_callback(move |observer| {
                        for (value, attrs) in observe() {
                            observer.observe(value, &attrs);
                        }
                    })
                    .build();
            } else {
                meter
                    .f64_observable_gauge(otel_name)
                    .with_description(help)
                    .with_callback(move |observer| {
                        for (value, attrs) in observe() {
                            observer.observe(value, &attrs);
                        }
                    })
                    .build();
            }
        }
        Ok(OtlpPush { provider: Some(provider) })
    }

    /// Pushes once more and stops. Safe to call twice.
    pub fn shutdown(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(err) = provider.shutdown()
        {
            tracing::warn!(error = %err, "Final push of own metrics failed.");
        }
    }
}
