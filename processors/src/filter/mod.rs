//! The `filter` processor: drops log records, metric data points and spans
//! that match a condition, written in a small language documented in the
//! README (`network.transport == "udp" and destination.port in 8000..8100`).
//! Conditions are parsed when the config is checked: a syntax error stops
//! startup and names its column.

mod config;

use flowtel_core::{
    Payload,
    attributes::of_resource,
    component::Processor,
    condition::{
        Expr, parse_all,
        record::{any, any_log_record, lookup, metric_field, span_field},
    },
};
use opentelemetry_proto::tonic::{common::v1::KeyValue, metrics::v1::metric::Data};

pub use config::{ErrorMode, FilterConfig, LogConditions, MetricConditions, SpanConditions};

/// The `filter` processor.
pub struct FilterProcessor {
    logs: Vec<Expr>,
    metrics: Vec<Expr>,
    datapoints: Vec<Expr>,
    spans: Vec<Expr>,
    span_events: Vec<Expr>,
}

impl FilterProcessor {
    /// A processor with the given (validated) config.
    pub fn new(config: &FilterConfig) -> Self {
        FilterProcessor {
            logs: parse_all(&config.logs.log_record),
            metrics: parse_all(&config.metrics.metric),
            datapoints: parse_all(&config.metrics.datapoint),
            spans: parse_all(&config.traces.span),
            span_events: parse_all(&config.traces.spanevent),
        }
    }
}

impl Processor for FilterProcessor {
    fn process(&mut self, mut payload: Payload, out: &mut Vec<Payload>) {
        match &mut payload {
            Payload::Logs(resources) if !self.logs.is_empty() => {
                for resource in resources.iter_mut() {
                    let resource_attributes = of_resource(resource.resource.as_ref());
                    for scope in &mut resource.scope_logs {
                        scope.log_records.retain(|record| !any_log_record(&self.logs, record, resource_attributes));
                    }
                }
            }
            Payload::Metrics(resources) if !self.metrics.is_empty() || !self.datapoints.is_empty() => {
                for resource in resources.iter_mut() {
                    let resource_attributes = of_resource(resource.resource.as_ref());
                    for scope in &mut resource.scope_metrics {
                        if !self.metrics.is_empty() {
                            scope.metrics.retain(|metric| {
                                let field = |path: &str| metric_field(metric, path);
                                !any(&self.metrics, &|path| lookup(path, &[], resource_attributes, &field))
                            });
                        }
                        if self.datapoints.is_empty() {
                            continue;
                        }
                        for metric in &mut scope.metrics {
                            let name = metric.name.as_str();
                            let field = |path: &str| (path == "metric.name").then(|| name.to_owned());
                            let drop = |attributes: &[KeyValue]| {
                                any(&self.datapoints, &|path| lookup(path, attributes, resource_attributes, &field))
                            };
                            match &mut metric.data {
                                Some(Data::Sum(d)) => d.data_points.retain(|p| !drop(&p.attributes)),
                                Some(Data::Gauge(d)) => d.data_points.retain(|p| !drop(&p.attributes)),
                                Some(Data::Histogram(d)) => d.data_points.retain(|p| !drop(&p.attributes)),
                                Some(Data::ExponentialHistogram(d)) => d.data_points.retain(|p| !drop(&p.attributes)),
                                Some(Data::Summary(d)) => d.data_points.retain(|p| !drop(&p.attributes)),
                                None => {}
                            }
                        }
                    }
                }
            }
            Payload::Traces(resources) if !self.spans.is_empty() || !self.span_events.is_empty() => {
                for resource in resources.iter_mut() {
                    let resource_attributes = of_resource(resource.resource.as_ref());
                    for scope in &mut resource.scope_spans {
                        scope.spans.retain(|span| {
                            let field = |path: &str| span_field(span, path);
                            !any(&self.spans, &|path| lookup(path, &span.attributes, resource_attributes, &field))
                        });
                        if self.span_events.is_empty() {
                            continue;
                        }
                        for span in &mut scope.spans {
                            let span_name = span.name.as_str();
                            span.events.retain(|event| {
                                let field = |path: &str| match path {
                                    "name" => Some(event.name.clone()),
                                    "span.name" => Some(span_name.to_owned()),
                                    _ => None,
                                };
                                !any(&self.span_events, &|path| {
                                    lookup(path, &event.attributes, resource_attributes, &field)
                                })
                            });
                        }
                    }
                }
            }
            _ => {}
        }
        payload.prune_empty();
        if !payload.is_empty() {
            out.push(payload);
        }
    }
}

#[cfg(test)]
mod tests;
