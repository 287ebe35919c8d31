//! Reading OTLP/JSON export requests (as the recorder and the `file`
//! exporter write them) into flat items a test can check.

use std::{collections::BTreeMap, path::Path};

use serde_json::Value;

/// One log record, span or metric data point with its context.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    /// Resource attributes, scalar values as strings.
    pub resource: BTreeMap<String, String>,
    /// Scope name.
    pub scope_name: String,
    /// Scope version.
    pub scope_version: String,
    /// The item's own attributes.
    pub attributes: BTreeMap<String, String>,
    /// Log body, span name or metric name.
    pub name: String,
    /// Log severity text (empty for other signals).
    pub severity: String,
    /// A log record's `eventName` (empty for other signals).
    pub event_name: String,
    /// The log record, span or data point as it came, for what the flat fields leave out.
    pub raw: Value,
}

/// The scalar in an OTLP/JSON `AnyValue`, as a string (bytes in their
/// base64 form).
fn scalar(value: &Value) -> String {
    for key in ["stringValue", "intValue", "boolValue", "doubleValue", "bytesValue"] {
        if let Some(v) = value.get(key) {
            return match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
        }
    }
    String::new()
}

fn attributes(list: &Value) -> BTreeMap<String, String> {
    list.as_array()
        .map(|kvs| {
            kvs.iter().map(|kv| (kv["key"].as_str().unwrap_or_default().to_owned(), scalar(&kv["value"]))).collect()
        })
        .unwrap_or_default()
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

/// A JSON number that OTLP/JSON may write as a string (64-bit integers).
pub fn number(value: &Value) -> u64 {
    match value {
        Value::String(s) => s.parse().unwrap_or(0),
        other => other.as_u64().unwrap_or(0),
    }
}

/// The export requests a `file` exporter wrote to `path`, one JSON object a
/// line (none when the file is not there yet). A last line still being
/// written is left for a later read; every complete line must parse.
pub fn file_requests(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{}: {err}: {line}", path.display())))
        .collect()
}

/// The log records named `event_name` whose attributes include every
/// `(key, value)` of `matching`.
pub fn records<'a>(logs: &'a [Item], event_name: &str, matching: &[(&str, &str)]) -> Vec<&'a Item> {
    logs.iter()
        .filter(|r| {
            r.event_name == event_name
                && matching.iter().all(|(k, v)| r.attributes.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

/// Flattens export requests of `signal` (`logs`, `traces`, `metrics`).
pub fn items<'a>(requests: impl IntoIterator<Item = &'a Value>, signal: &str) -> Vec<Item> {
    let (resources_key, scopes_key, items_key) = match signal {
        "logs" => ("resourceLogs", "scopeLogs", "logRecords"),
        "traces" => ("resourceSpans", "scopeSpans", "spans"),
        _ => ("resourceMetrics", "scopeMetrics", "metrics"),
    };
    let mut out = Vec::new();
    for request in requests {
        for resource in request[resources_key].as_array().into_iter().flatten() {
            let resource_attributes = attributes(&resource["resource"]["attributes"]);
            for scope in resource[scopes_key].as_array().into_iter().flatten() {
                let base = Item {
                    resource: resource_attributes.clone(),
                    scope_name: text(&scope["scope"]["name"]),
                    scope_version: text(&scope["scope"]["version"]),
                    attributes: BTreeMap::new(),
                    name: String::new(),
                    severity: String::new(),
                    event_name: String::new(),
                    raw: Value::Null,
                };
                for item in scope[items_key].as_array().into_iter().flatten() {
                    match signal {
                        "logs" => out.push(Item {
                            attributes: attributes(&item["attributes"]),
                            name: scalar(&item["body"]),
                            severity: text(&item["severityText"]),
                            event_name: text(&item["eventName"]),
                            raw: item.clone(),
                            ..base.clone()
                        }),
                        "traces" => out.push(Item {
                            attributes: attributes(&item["attributes"]),
                            name: text(&item["name"]),
                            raw: item.clone(),
                            ..base.clone()
                        }),
                        _ => {
                            for kind in ["sum", "gauge", "histogram", "exponentialHistogram", "summary"] {
                                for point in item[kind]["dataPoints"].as_array().into_iter().flatten() {
                                    out.push(Item {
                                        attributes: attributes(&point["attributes"]),
                                        name: text(&item["name"]),
                                        raw: point.clone(),
                                        ..base.clone()
                                    });
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    out
}
