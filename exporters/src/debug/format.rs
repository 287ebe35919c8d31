//! One-line renderings of OTLP items for people.

use std::fmt::Write as _;

use flowtel_core::{
    Payload,
    histogram::{REPORTED_QUANTILES, explicit_quantile, exponential_quantile},
    time::rfc3339_millis as timestamp,
};
use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, KeyValue, any_value::Value},
    metrics::v1::{metric::Data, number_data_point},
};

/// `Logs: 2 resources, 130 log records`.
pub(super) fn summary(payload: &Payload) -> String {
    let resources = match payload {
        Payload::Logs(v) => v.len(),
        Payload::Metrics(v) => v.len(),
        Payload::Traces(v) => v.len(),
        Payload::Encoded(encoded) => return summary(&encoded.decode()),
    };
    let signal = payload.signal();
    format!("{signal}: {resources} resources, {} {}\n", payload.item_count(), signal.item_name())
}

/// A line per item: time, name or body, then attributes as `key=value`.
pub(super) fn lines(payload: &Payload) -> String {
    let mut out = String::new();
    match payload {
        Payload::Encoded(encoded) => return lines(&encoded.decode()),
        Payload::Logs(resources) => {
            for resource in resources {
                for scope in &resource.scope_logs {
                    for record in &scope.log_records {
                        let time = if record.time_unix_nano != 0 {
                            record.time_unix_nano
                        } else {
                            record.observed_time_unix_nano
                        };
                        let _ = write!(
                            out,
                            "{} {}",
                            timestamp(time),
                            severity(&record.severity_text, record.severity_number)
                        );
                        if !record.event_name.is_empty() {
                            let _ = write!(out, " {}", record.event_name);
                        }
                        if let Some(body) = record.body.as_ref().and_then(|b| b.value.as_ref()) {
                            let _ = write!(out, " {}", value(body));
                        }
                        attributes(&mut out, &record.attributes);
                        out.push('\n');
                    }
                }
            }
        }
        Payload::Metrics(resources) => {
            for resource in resources {
                for scope in &resource.scope_metrics {
                    for metric in &scope.metrics {
                        metric_lines(&mut out, metric);
                    }
                }
            }
        }
        Payload::Traces(resources) => {
            for resource in resources {
                for scope in &resource.scope_spans {
                    for span in &scope.spans {
                        let duration_us = span.end_time_unix_nano.saturating_sub(span.start_time_unix_nano) / 1000;
                        let _ = write!(
                            out,
                            "{} span {} trace={} span={} {}us",
                            timestamp(span.start_time_unix_nano),
                            span.name,
                            hex::encode(&span.trace_id),
                            hex::encode(&span.span_id),
                            duration_us
                        );
                        attributes(&mut out, &span.attributes);
                        if let Some(status) = span.status.as_ref().filter(|s| s.code == 2) {
                            let _ = write!(out, " status=error({})", status.message);
                        }
                        out.push('\n');
                        // Its events as a sequence, each at its offset from the span's start
                        // (a packet journey's hooks read as `retis sort` shows them).
                        for event in &span.events {
                            let offset_us =
                                event.time_unix_nano.saturating_sub(span.start_time_unix_nano) as f64 / 1000.0;
                            let _ = write!(out, "  +{offset_us:.3}us {}", event.name);
                            attributes(&mut out, &event.attributes);
                            out.push('\n');
                        }
                    }
                }
            }
        }
    }
    out
}

fn metric_lines(out: &mut String, metric: &opentelemetry_proto::tonic::metrics::v1::Metric) {
    let unit = if metric.unit.is_empty() { String::new() } else { format!(" {}", metric.unit) };
    // One line per data point: time, name, value, unit, attributes.
    let mut line = |time: u64, value: String, attrs: &[KeyValue]| {
        let _ = write!(out, "{} {} {value}{unit}", timestamp(time), metric.name);
        attributes(out, attrs);
        out.push('\n');
    };
    let distribution = |count: u64, sum: f64| format!("count={count} sum={sum}");
    match &metric.data {
        Some(Data::Gauge(g)) => {
            g.data_points.iter().for_each(|p| line(p.time_unix_nano, number(&p.value), &p.attributes));
        }
        Some(Data::Sum(s)) => {
            s.data_points.iter().for_each(|p| line(p.time_unix_nano, number(&p.value), &p.attributes));
        }
        Some(Data::Histogram(h)) => h.data_points.iter().for_each(|p| {
            let quantile = |q| explicit_quantile(&p.explicit_bounds, &p.bucket_counts, q, p.min, p.max);
            let text = distribution(p.count, p.sum.unwrap_or(0.0)) + &percentiles(quantile);
            line(p.time_unix_nano, text, &p.attributes);
        }),
        Some(Data::ExponentialHistogram(h)) => h.data_points.iter().for_each(|p| {
            // Percentiles of the positive range (latencies and sizes have no negative values).
            let positive = p.positive.as_ref();
            let (offset, counts) = positive.map_or((0, &[][..]), |b| (b.offset, b.bucket_counts.as_slice()));
            let quantile = |q| exponential_quantile(p.scale, p.zero_count, offset, counts, q);
            let text = distribution(p.count, p.sum.unwrap_or(0.0)) + &percentiles(quantile);
            line(p.time_unix_nano, text, &p.attributes);
        }),
        Some(Data::Summary(s)) => {
            s.data_points.iter().for_each(|p| line(p.time_unix_nano, distribution(p.count, p.sum), &p.attributes));
        }
        None => line(0, "(no data)".into(), &[]),
    }
}

/// ` p50=… p90=… p99=… p99.9=…` where the histogram has data.
fn percentiles(quantile: impl Fn(f64) -> Option<f64>) -> String {
    let mut text = String::new();
    for (q, name) in REPORTED_QUANTILES {
        if let Some(value) = quantile(q) {
            let _ = write!(text, " {name}={value:.6}");
        }
    }
    text
}

fn number(value: &Option<number_data_point::Value>) -> String {
    match value {
        Some(number_data_point::Value::AsInt(i)) => i.to_string(),
        Some(number_data_point::Value::AsDouble(d)) => d.to_string(),
        None => "-".into(),
    }
}

fn severity(text: &str, number: i32) -> String {
    if !text.is_empty() {
        text.to_owned()
    } else {
        match number {
            1..=4 => "TRACE",
            5..=8 => "DEBUG",
            9..=12 => "INFO",
            13..=16 => "WARN",
            17..=20 => "ERROR",
            21..=24 => "FATAL",
            _ => "-",
        }
        .to_owned()
    }
}

fn attributes(out: &mut String, attributes: &[KeyValue]) {
    for kv in attributes {
        let rendered = kv.value.as_ref().and_then(|v: &AnyValue| v.value.as_ref()).map(value).unwrap_or_default();
        let _ = write!(out, " {}={}", kv.key, rendered);
    }
}

fn value(value: &Value) -> String {
    match value {
        Value::StringValue(s) => {
            if s.contains(' ') || s.is_empty() {
                format!("{s:?}")
            } else {
                s.clone()
            }
        }
        Value::BoolValue(b) => b.to_string(),
        Value::IntValue(i) => i.to_string(),
        Value::DoubleValue(d) => d.to_string(),
        Value::BytesValue(b) => hex::encode(b),
        Value::ArrayValue(a) => {
            let items: Vec<String> = a.values.iter().filter_map(|v| v.value.as_ref()).map(self::value).collect();
            format!("[{}]", items.join(","))
        }
        Value::KvlistValue(kv) => {
            let items: Vec<String> = kv
                .values
                .iter()
                .map(|kv| {
                    format!(
                        "{}={}",
                        kv.key,
                        kv.value.as_ref().and_then(|v| v.value.as_ref()).map(self::value).unwrap_or_default()
                    )
                })
                .collect();
            format!("{{{}}}", items.join(","))
        }
        Value::StringValueStrindex(i) => format!("#{i}"),
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::metrics::v1::{
        Histogram, HistogramDataPoint, Metric, ResourceMetrics, ScopeMetrics, metric::Data,
    };

    use super::*;

    #[test]
    fn histograms_print_their_percentiles() {
        let point = HistogramDataPoint {
            count: 100,
            sum: Some(150.0),
            explicit_bounds: vec![1.0, 2.0],
            bucket_counts: vec![0, 100, 0],
            time_unix_nano: 1,
            ..Default::default()
        };
        let metric = Metric {
            name: "network.tcp.rtt".into(),
            unit: "s".into(),
            data: Some(Data::Histogram(Histogram { data_points: vec![point], aggregation_temporality: 2 })),
            ..Default::default()
        };
        let payload = Payload::Metrics(vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics { metrics: vec![metric], ..Default::default() }],
            ..Default::default()
        }]);
        let text = lines(&payload);
        assert!(
            text.contains("network.tcp.rtt count=100 sum=150 p50=1.500000 p90=1.900000 p99=1.990000 p99.9=1.999000 s"),
            "{text}"
        );
    }

    #[test]
    fn a_span_prints_its_events_in_sequence() {
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span::Event};
        let event = |name: &str, time_unix_nano| Event { name: name.into(), time_unix_nano, ..Default::default() };
        let span = Span {
            name: "network.packet.journey".into(),
            start_time_unix_nano: 1_000_000,
            end_time_unix_nano: 1_004_000,
            events: vec![event("net_dev_queue", 1_000_000), event("kfree_skb", 1_004_000)],
            status: Some(Status { code: 2, message: "NETFILTER_DROP".into() }),
            ..Default::default()
        };
        let payload = Payload::Traces(vec![ResourceSpans {
            scope_spans: vec![ScopeSpans { spans: vec![span], ..Default::default() }],
            ..Default::default()
        }]);
        let text = lines(&payload);
        let printed: Vec<&str> = text.lines().collect();
        assert_eq!(printed.len(), 3, "{text}");
        assert!(
            printed[0].contains("span network.packet.journey") && printed[0].ends_with("status=error(NETFILTER_DROP)")
        );
        assert_eq!(printed[1..], ["  +0.000us net_dev_queue", "  +4.000us kfree_skb"]);
    }
}
