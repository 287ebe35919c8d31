//! The `filter` processor: drops log records, metric data points and spans
//! that match a condition, written in a small language documented in the
//! README (`network.transport == "udp" and destination.port in 8000..8100`).
//! Conditions are parsed when the config is checked: a syntax error stops
//! startup and names its column.

mod config;
pub mod expression;

use std::borrow::Cow;

use flowtel_core::{
    Payload,
    attributes::{find_text, of_resource},
    component::Processor,
};
use opentelemetry_proto::tonic::{
    common::v1::{KeyValue, any_value::Value},
    logs::v1::LogRecord,
    metrics::v1::{Metric, metric::Data},
};

pub use config::{ErrorMode, FilterConfig, LogConditions, MetricConditions, SpanConditions};

use self::expression::Expr;

/// The `filter` processor.
pub struct FilterProcessor {
    logs: Vec<Expr>,
    metrics: Vec<Expr>,
    datapoints: Vec<Expr>,
    spans: Vec<Expr>,
    span_events: Vec<Expr>,
}

/// Parses validated conditions.
pub fn parse_all(conditions: &[String]) -> Vec<Expr> {
    // The config was validated: every condition parses.
    conditions.iter().filter_map(|c| expression::parse(c).ok()).collect()
}

/// Looks `path` up: `resource.<key>` in the resource's attributes, the
/// named fields, else the item's own attributes.
fn lookup(
    path: &str,
    own: &[KeyValue],
    resource: &[KeyValue],
    field: &dyn Fn(&str) -> Option<String>,
) -> Option<String> {
    if let Some(key) = path.strip_prefix("resource.") {
        return find_text(resource, key).map(Cow::into_owned);
    }
    field(path).or_else(|| find_text(own, path).map(Cow::into_owned))
}

/// A metric's own fields, by the names `metrics.metric` conditions use
/// (`metric.`-prefixed too, as in `metric.name`).
fn metric_field(metric: &Metric, path: &str) -> Option<String> {
    Some(match path.strip_prefix("metric.").unwrap_or(path) {
        "name" => metric.name.clone(),
        "unit" => metric.unit.clone(),
        "description" => metric.description.clone(),
        "type" => match metric.data.as_ref()? {
            Data::Gauge(_) => "METRIC_DATA_TYPE_GAUGE",
            Data::Sum(_) => "METRIC_DATA_TYPE_SUM",
            Data::Histogram(_) => "METRIC_DATA_TYPE_HISTOGRAM",
            Data::ExponentialHistogram(_) => "METRIC_DATA_TYPE_EXPONENTIAL_HISTOGRAM",
            Data::Summary(_) => "METRIC_DATA_TYPE_SUMMARY",
        }
        .to_owned(),
        _ => return None,
    })
}

/// Whether a log record (under a resource with these attributes) matches
/// any of the conditions.
pub fn any_log_record(conditions: &[Expr], record: &LogRecord, resource: &[KeyValue]) -> bool {
    let field = |name: &str| match name {
        "event_name" => Some(record.event_name.clone()),
        "severity_text" => Some(record.severity_text.clone()),
        "severity_number" => Some(record.severity_number.to_string()),
        "body" => match record.body.as_ref().and_then(|b| b.value.as_ref()) {
            Some(Value::StringValue(s)) => Some(s.clone()),
            _ => None,
        },
        _ => None,
    };
    any(conditions, &|path| lookup(path, &record.attributes, resource, &field))
}

fn any(conditions: &[Expr], lookup: &dyn Fn(&str) -> Option<String>) -> bool {
    conditions.iter().any(|c| c.matches(lookup))
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
                            let field = |path: &str| matches!(path, "name" | "span.name").then(|| span.name.clone());
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
