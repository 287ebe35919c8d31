//! Exemplars: kernel records that carry a trace context, attached to the
//! metric points they count in (`network.tcp.retransmits`,
//! `network.packet.drops`, `network.tcp.rtt`, …), so a spike on a
//! dashboard leads to a trace it hurt.

use std::collections::{HashMap, VecDeque};

use flowtel_core::attributes::{find, text};
use opentelemetry_proto::tonic::{
    common::v1::{KeyValue, any_value::Value},
    logs::v1::LogRecord,
    metrics::v1::{Exemplar, Metric, exemplar, metric::Data},
};

/// Exemplars kept per point and export (the latest win).
const PER_POINT: usize = 4;

/// The value an exemplar shows.
pub enum Sample<'a> {
    /// A constant (one drop).
    Int(i64),
    /// The record's attribute of this name (a retransmit's segments, a
    /// connection's srtt).
    Attribute(&'a str),
}

/// Exemplars gathered between two exports of the metrics.
#[derive(Debug, Default)]
pub struct Exemplars {
    kept: HashMap<(String, String), VecDeque<Exemplar>>,
}

/// A point's identity within its metric: its attributes, in any order.
fn series(attributes: impl Iterator<Item = (String, String)>) -> String {
    let mut pairs: Vec<(String, String)> = attributes.collect();
    pairs.sort();
    pairs.into_iter().map(|(key, value)| format!("{key}={value}")).collect::<Vec<_>>().join(",")
}

fn point_series(attributes: &[KeyValue]) -> String {
    series(attributes.iter().map(|kv| {
        let value = kv.value.as_ref().and_then(|v| v.value.as_ref()).and_then(text).unwrap_or_default();
        (kv.key.clone(), value.into_owned())
    }))
}

impl Exemplars {
    /// Offers `record` as an exemplar of the point of `metric` whose
    /// attributes are the record's `series_keys`; kept when the record
    /// carries a trace context and the value is there.
    pub fn offer(&mut self, metric: &str, series_keys: &[&str], record: &LogRecord, sample: Sample<'_>) {
        if record.trace_id.is_empty() {
            return;
        }
        let value = match sample {
            Sample::Int(value) => exemplar::Value::AsInt(value),
            Sample::Attribute(key) => match find(&record.attributes, key) {
                Some(Value::IntValue(value)) => exemplar::Value::AsInt(*value),
                Some(Value::DoubleValue(value)) => exemplar::Value::AsDouble(*value),
                _ => return,
            },
        };
        let key = series(series_keys.iter().filter_map(|key| {
            let value = find(&record.attributes, key).and_then(text)?;
            Some(((*key).to_owned(), value.into_owned()))
        }));
        let kept = self.kept.entry((metric.to_owned(), key)).or_default();
        if kept.len() == PER_POINT {
            kept.pop_front();
        }
        kept.push_back(Exemplar {
            time_unix_nano: record.time_unix_nano,
            trace_id: record.trace_id.clone(),
            span_id: record.span_id.clone(),
            value: Some(value),
            ..Default::default()
        });
    }

    /// Moves what was gathered onto the points of `metrics` (sums and
    /// histograms); what no point takes is dropped with the interval.
    pub fn attach(&mut self, metrics: &mut [Metric]) {
        if self.kept.is_empty() {
            return;
        }
        for metric in metrics {
            let mut take = |attributes: &[KeyValue]| {
                self.kept.remove(&(metric.name.clone(), point_series(attributes))).map(Vec::from).unwrap_or_default()
            };
            match &mut metric.data {
                Some(Data::Sum(sum)) => {
                    for point in &mut sum.data_points {
                        point.exemplars = take(&point.attributes);
                    }
                }
                Some(Data::Histogram(histogram)) => {
                    for point in &mut histogram.data_points {
                        point.exemplars = take(&point.attributes);
                    }
                }
                _ => {}
            }
        }
        self.kept.clear();
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::{
        common::v1::AnyValue,
        metrics::v1::{NumberDataPoint, Sum},
    };

    use super::*;

    fn kv(key: &str, value: Value) -> KeyValue {
        KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
    }

    fn drop_record(reason: &str, traced: bool) -> LogRecord {
        LogRecord {
            time_unix_nano: 7,
            trace_id: if traced { vec![1; 16] } else { Vec::new() },
            span_id: if traced { vec![2; 8] } else { Vec::new() },
            attributes: vec![
                kv("network.drop.reason", Value::StringValue(reason.into())),
                kv("network.interface.name", Value::StringValue("eth0".into())),
                kv("source.port", Value::IntValue(80)),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn traced_records_become_exemplars_of_their_point_only() {
        let mut exemplars = Exemplars::default();
        let keys = ["network.drop.reason", "network.interface.name"];
        exemplars.offer("drops", &keys, &drop_record("NO_SOCKET", true), Sample::Int(1));
        exemplars.offer("drops", &keys, &drop_record("NO_SOCKET", false), Sample::Int(1));
        for _ in 0..10 {
            exemplars.offer("drops", &keys, &drop_record("NETFILTER_DROP", true), Sample::Int(1));
        }
        let point = |reason: &str| NumberDataPoint {
            // The point lists its attributes in another order than the keys.
            attributes: vec![
                kv("network.interface.name", Value::StringValue("eth0".into())),
                kv("network.drop.reason", Value::StringValue(reason.into())),
            ],
            ..Default::default()
        };
        let mut metrics = vec![Metric {
            name: "drops".into(),
            data: Some(Data::Sum(Sum {
                data_points: vec![point("NO_SOCKET"), point("NETFILTER_DROP"), point("OTHER")],
                ..Default::default()
            })),
            ..Default::default()
        }];
        exemplars.attach(&mut metrics);
        let Some(Data::Sum(sum)) = &metrics[0].data else { unreachable!() };
        let counts: Vec<usize> = sum.data_points.iter().map(|p| p.exemplars.len()).collect();
        assert_eq!(counts, [1, PER_POINT, 0]);
        let exemplar = &sum.data_points[0].exemplars[0];
        assert_eq!((exemplar.trace_id.as_slice(), exemplar.span_id.as_slice()), (&[1; 16][..], &[2; 8][..]));
        assert_eq!((exemplar.value, exemplar.time_unix_nano), (Some(exemplar::Value::AsInt(1)), 7));
        // One interval's exemplars only.
        exemplars.attach(&mut metrics);
        assert!(exemplars.kept.is_empty());
    }
}
