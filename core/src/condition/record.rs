//! Conditions evaluated on OTLP items: a log record, a metric or data
//! point, a span or span event, each under its resource.

use std::borrow::Cow;

use opentelemetry_proto::tonic::{
    common::v1::{KeyValue, any_value::Value},
    logs::v1::LogRecord,
    metrics::v1::{Metric, metric::Data},
    trace::v1::Span,
};

use super::Expr;
use crate::attributes::find_text;

/// Looks `path` up: `resource.<key>` in the resource's attributes, the
/// named fields (`field`), else the item's own attributes.
pub fn lookup(
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
pub fn metric_field(metric: &Metric, path: &str) -> Option<String> {
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

/// A log record's own fields, by the names conditions use.
pub fn log_record_field(record: &LogRecord, name: &str) -> Option<String> {
    match name {
        "event_name" => Some(record.event_name.clone()),
        "severity_text" => Some(record.severity_text.clone()),
        "severity_number" => Some(record.severity_number.to_string()),
        "body" => match record.body.as_ref().and_then(|b| b.value.as_ref()) {
            Some(Value::StringValue(s)) => Some(s.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// A span's own fields, by the names conditions use (`name`, `span.name`, `kind`).
pub fn span_field(span: &Span, name: &str) -> Option<String> {
    match name {
        "name" | "span.name" => Some(span.name.clone()),
        "kind" | "span.kind" => Some(
            opentelemetry_proto::tonic::trace::v1::span::SpanKind::try_from(span.kind)
                .map_or_else(|_| span.kind.to_string(), |kind| kind.as_str_name().to_owned()),
        ),
        _ => None,
    }
}

/// Whether a log record (under a resource with these attributes) matches
/// any of the conditions.
pub fn any_log_record(conditions: &[Expr], record: &LogRecord, resource: &[KeyValue]) -> bool {
    let field = |name: &str| log_record_field(record, name);
    any(conditions, &|path| lookup(path, &record.attributes, resource, &field))
}

/// Whether any of the conditions holds, with attributes looked up by `lookup`.
pub fn any(conditions: &[Expr], lookup: &dyn Fn(&str) -> Option<String>) -> bool {
    conditions.iter().any(|c| c.matches(lookup))
}
