//! The Prometheus text format (0.0.4) and OpenMetrics text, written by one
//! encoder (`prometheus-client`) for flowtel's own `/metrics` and the
//! `prometheus` exporter.
//!
//! The encoder writes names, help, types, units, labels (escaped), values
//! and histogram buckets. Its API takes only exemplars it recorded itself,
//! so the exemplars of points that arrive aggregated (OTLP) and sample
//! timestamps are appended here to the sample lines it wrote, whose order
//! per series is fixed by the format.

use std::{fmt::Write as _, sync::Arc};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _, NoLabelSet},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::{Registry, Unit},
};

/// A text format a scraper can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format, version 0.0.4.
    Prometheus,
    /// OpenMetrics 1.0 text (exemplars, `# EOF`).
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics when it names
    /// `application/openmetrics-text` and `open_metrics` allows it.
    pub fn negotiate(accept: Option<&str>, open_metrics: bool) -> Format {
        if open_metrics && accept.is_some_and(|accept| accept.contains("application/openmetrics-text")) {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }

    /// The response's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// What kind of metric a family is.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// Only goes up; the encoder adds `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Cumulative buckets with these upper bounds (+Inf comes last by itself).
    Histogram(Vec<f64>),
    /// Labels describing a target; the encoder adds `_info`.
    Info,
}

/// A trace an exemplar points to, with the value it measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Exemplar {
    /// Its labels (`trace_id`, `span_id`).
    pub labels: Vec<(String, String)>,
    /// The value measured.
    pub value: f64,
    /// When, in Unix seconds.
    pub timestamp: Option<f64>,
}

/// A series' value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A counter's, gauge's or info's value.
    Number(f64),
    /// A histogram's: per-bucket (not cumulative) counts, one more than the bounds.
    Histogram {
        /// The sum of the values.
        sum: f64,
        /// How many.
        count: u64,
        /// Count per bucket, the last one up to +Inf.
        buckets: Vec<u64>,
    },
}

/// One series of a family.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Its labels.
    pub labels: Vec<(String, String)>,
    /// Its value.
    pub value: Value,
    /// The sample time in Unix milliseconds, when sent.
    pub timestamp_ms: Option<i64>,
    /// A counter's exemplar (index 0), or a histogram's by bucket.
    pub exemplars: Vec<Option<Exemplar>>,
}

/// A metric family: its name (without the `_total` or `_info` the format
/// adds), help, unit suffix and series.
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    /// The name, sanitized.
    pub name: String,
    /// What it measures.
    pub help: String,
    /// The unit suffix the name ends with (OpenMetrics `# UNIT`), if any.
    pub unit: Option<String>,
    /// Its kind.
    pub kind: Kind,
    /// Its series.
    pub series: Vec<Series>,
}

#[derive(Debug)]
struct FamilyCollector(Arc<Family>);

impl Collector for FamilyCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let family = &self.0;
        // The encoder appends the unit to the name, which carries it already.
        let (name, unit) = match &family.unit {
            Some(unit) => match family.name.strip_suffix(&format!("_{unit}")) {
                Some(stem) => (stem, Some(Unit::Other(unit.clone()))),
                None => (family.name.as_str(), None),
            },
            None => (family.name.as_str(), None),
        };
        let metric_type = match family.kind {
            Kind::Counter => MetricType::Counter,
            Kind::Gauge => MetricType::Gauge,
            Kind::Histogram(_) => MetricType::Histogram,
            Kind::Info => MetricType::Info,
        };
        let mut metric = encoder.encode_descriptor(name, &family.help, unit.as_ref(), metric_type)?;
        for series in &family.series {
            let labels = &series.labels;
            let mut point = metric.encode_family(labels)?;
            match (&family.kind, &series.value) {
                // Whole numbers are written as integers (`42`, not `42.0`).
                (Kind::Counter, Value::Number(value)) => match whole(*value) {
                    Some(whole) if whole >= 0 => ConstCounter::new(whole as u64).encode(point)?,
                    _ => ConstCounter::new(*value).encode(point)?,
                },
                (Kind::Gauge, Value::Number(value)) => match whole(*value) {
                    Some(whole) => ConstGauge::new(whole).encode(point)?,
                    None => ConstGauge::new(*value).encode(point)?,
                },
                (Kind::Info, _) => point.encode_info(&Vec::<(String, String)>::new())?,
                (Kind::Histogram(bounds), Value::Histogram { sum, count, buckets }) => {
                    let pairs: Vec<(f64, u64)> =
                        bounds.iter().copied().chain([f64::INFINITY]).zip(buckets.iter().copied()).collect();
                    point.encode_histogram::<NoLabelSet>(*sum, *count, &pairs, None)?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// `value` as an integer, when it is one that an `f64` holds exactly.
fn whole(value: f64) -> Option<i64> {
    (value.fract() == 0.0 && value.abs() < 9.007_199_254_740_992e15).then_some(value as i64)
}

/// Writes `families` in `format`, with `const_labels` on every series.
pub fn encode(format: Format, families: Vec<Family>, const_labels: &[(String, String)]) -> String {
    let mut out = String::new();
    for family in families {
        let family = Arc::new(family);
        let mut registry = Registry::with_labels(
            const_labels.iter().map(|(k, v)| (std::borrow::Cow::Owned(k.clone()), std::borrow::Cow::Owned(v.clone()))),
        );
        registry.register_collector(Box::new(FamilyCollector(family.clone())));
        let mut text = String::new();
        let encoded = match format {
            Format::Prometheus => prometheus_client::encoding::prometheus_text::encode(&mut text, &registry),
            Format::OpenMetrics => prometheus_client::encoding::text::encode_registry(&mut text, &registry),
        };
        if encoded.is_err() {
            continue;
        }
        append_with_extras(&mut out, &text, &family, format);
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

/// What to append to one sample line.
#[derive(Default)]
struct LineExtras<'a> {
    timestamp_ms: Option<i64>,
    exemplar: Option<&'a Exemplar>,
}

/// The extras of each sample line of a series, in the format's line order.
fn line_extras<'a>(kind: &Kind, series: &'a Series, format: Format) -> Vec<LineExtras<'a>> {
    let plain = |exemplar| LineExtras { timestamp_ms: series.timestamp_ms, exemplar };
    let exemplar = |index: usize| match format {
        Format::OpenMetrics => series.exemplars.get(index).and_then(Option::as_ref),
        Format::Prometheus => None,
    };
    match kind {
        Kind::Counter => vec![plain(exemplar(0))],
        Kind::Gauge | Kind::Info => vec![plain(None)],
        Kind::Histogram(bounds) => {
            let buckets = (0..=bounds.len()).map(|i| plain(exemplar(i)));
            match format {
                // `_sum` and `_count` first, then the buckets.
                Format::OpenMetrics => [plain(None), plain(None)].into_iter().chain(buckets).collect(),
                // The buckets (with +Inf), then `_sum` and `_count`.
                Format::Prometheus => buckets.chain([plain(None), plain(None)]).collect(),
            }
        }
    }
}

fn append_with_extras(out: &mut String, text: &str, family: &Family, format: Format) {
    let plain = family.series.iter().all(|series| {
        series.timestamp_ms.is_none() && (format == Format::Prometheus || series.exemplars.iter().all(Option::is_none))
    });
    if plain {
        out.push_str(text);
        return;
    }
    let mut extras = family.series.iter().flat_map(|series| line_extras(&family.kind, series, format));
    for line in text.lines() {
        out.push_str(line);
        if !line.starts_with('#')
            && let Some(extra) = extras.next()
        {
            if let Some(ms) = extra.timestamp_ms {
                match format {
                    Format::Prometheus => {
                        let _ = write!(out, " {ms}");
                    }
                    Format::OpenMetrics => {
                        let _ = write!(out, " {}", ms as f64 / 1000.0);
                    }
                }
            }
            if let Some(exemplar) = extra.exemplar {
                out.push_str(" # {");
                for (index, (key, value)) in exemplar.labels.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{key}=\"{}\"", escape(value));
                }
                let _ = write!(out, "}} {}", exemplar.value);
                if let Some(seconds) = exemplar.timestamp {
                    let _ = write!(out, " {seconds}");
                }
            }
        }
        out.push('\n');
    }
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn exemplar(value: f64) -> Option<Exemplar> {
        Some(Exemplar {
            labels: labels(&[("trace_id", "0af7651916cd43dd8448eb211c80319c")]),
            value,
            timestamp: Some(1.5),
        })
    }

    fn families() -> Vec<Family> {
        vec![
            Family {
                name: "flow_bytes".into(),
                help: "Bytes seen.".into(),
                unit: Some("bytes".into()),
                kind: Kind::Counter,
                series: vec![Series {
                    labels: labels(&[("pod", "say \"hi\"")]),
                    value: Value::Number(42.0),
                    timestamp_ms: Some(1_700_000_000_123),
                    exemplars: vec![exemplar(7.0)],
                }],
            },
            Family {
                name: "rtt_seconds".into(),
                help: "RTT.".into(),
                unit: Some("seconds".into()),
                kind: Kind::Histogram(vec![0.1, 1.0]),
                series: vec![Series {
                    labels: Vec::new(),
                    value: Value::Histogram { sum: 2.5, count: 3, buckets: vec![1, 1, 1] },
                    timestamp_ms: None,
                    exemplars: vec![None, exemplar(0.5), None],
                }],
            },
        ]
    }

    #[test]
    fn prometheus_text_has_timestamps_and_no_exemplars() {
        let text = encode(Format::Prometheus, families(), &labels(&[("cluster", "a")]));
        assert!(text.contains("# TYPE flow_bytes_total counter\n"), "{text}");
        assert!(text.contains("flow_bytes_total{cluster=\"a\",pod=\"say \\\"hi\\\"\"} 42 1700000000123\n"), "{text}");
        assert!(text.contains("rtt_seconds_bucket{cluster=\"a\",le=\"1\"} 2\n"), "{text}");
        assert!(text.contains("rtt_seconds_bucket{cluster=\"a\",le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("rtt_seconds_count{cluster=\"a\"} 3\n"), "{text}");
        assert!(!text.contains("trace_id") && !text.contains("# EOF"), "{text}");
    }

    #[test]
    fn open_metrics_has_units_exemplars_and_eof() {
        let text = encode(Format::OpenMetrics, families(), &[]);
        assert!(text.contains("# UNIT flow_bytes bytes\n"), "{text}");
        assert!(
            text.contains(
                "flow_bytes_total{pod=\"say \\\"hi\\\"\"} 42 1700000000.123 # {trace_id=\"0af7651916cd43dd8448eb211c80319c\"} 7 1.5\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "rtt_seconds_bucket{le=\"1.0\"} 2 # {trace_id=\"0af7651916cd43dd8448eb211c80319c\"} 0.5 1.5\n"
            ),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn accept_headers_choose_the_format() {
        let scraper = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
        assert_eq!(Format::negotiate(Some(scraper), true), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some(scraper), false), Format::Prometheus);
        assert_eq!(Format::negotiate(None, true), Format::Prometheus);
    }
}
