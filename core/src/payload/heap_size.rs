//! How much heap a payload holds: what bounds the queues that hold
//! payloads in bytes, so a sender cannot make a queue of a fixed number of
//! batches take unbounded memory (an OTLP request of a million empty
//! attributes is 2 MiB on the wire and about 64 MiB in memory).
//!
//! The count is the capacity of every vector and string in the tree, and
//! the inline size of what vectors hold; allocator overhead is not counted.

use std::mem::size_of;

use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList, any_value},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    metrics::v1::{
        Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint, Metric,
        NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
        exponential_histogram_data_point::Buckets, metric::Data, summary_data_point::ValueAtQuantile,
    },
    resource::v1::Resource,
    trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span},
};

/// Heap bytes a value owns beyond its own inline size.
pub trait HeapSize {
    /// The heap bytes below this value.
    fn heap_size(&self) -> usize;
}

impl HeapSize for String {
    fn heap_size(&self) -> usize {
        self.capacity()
    }
}

impl<T: HeapSize> HeapSize for Vec<T> {
    fn heap_size(&self) -> usize {
        self.capacity() * size_of::<T>() + self.iter().map(HeapSize::heap_size).sum::<usize>()
    }
}

impl<T: HeapSize> HeapSize for Option<T> {
    fn heap_size(&self) -> usize {
        self.as_ref().map_or(0, HeapSize::heap_size)
    }
}

impl<T: HeapSize> HeapSize for Box<T> {
    fn heap_size(&self) -> usize {
        size_of::<T>() + self.as_ref().heap_size()
    }
}

/// Values that own no heap.
macro_rules! no_heap {
    ($($t:ty),*) => {$(
        impl HeapSize for $t {
            fn heap_size(&self) -> usize {
                0
            }
        }
    )*};
}
no_heap!(u8, u32, u64, i32, i64, f64, bool);

/// A message's heap: the sum of its fields' that own any.
macro_rules! fields {
    ($($t:ty { $($field:ident),* })*) => {$(
        impl HeapSize for $t {
            fn heap_size(&self) -> usize {
                0 $(+ self.$field.heap_size())*
            }
        }
    )*};
}

fields! {
    KeyValue { key, value }
    AnyValue { value }
    ArrayValue { values }
    KeyValueList { values }
    InstrumentationScope { name, version, attributes }
    EntityRef { schema_url, r#type, id_keys, description_keys }
    Resource { attributes, entity_refs }
    ResourceLogs { resource, scope_logs, schema_url }
    ScopeLogs { scope, log_records, schema_url }
    LogRecord { severity_text, body, attributes, trace_id, span_id, event_name }
    ResourceSpans { resource, scope_spans, schema_url }
    ScopeSpans { scope, spans, schema_url }
    Span { trace_id, span_id, trace_state, parent_span_id, name, attributes, events, links, status }
    span::Event { name, attributes }
    span::Link { trace_id, span_id, trace_state, attributes }
    Status { message }
    ResourceMetrics { resource, scope_metrics, schema_url }
    ScopeMetrics { scope, metrics, schema_url }
    Metric { name, description, unit, metadata, data }
    Gauge { data_points }
    Sum { data_points }
    Histogram { data_points }
    ExponentialHistogram { data_points }
    Summary { data_points }
    NumberDataPoint { attributes, exemplars }
    HistogramDataPoint { attributes, bucket_counts, explicit_bounds, exemplars }
    ExponentialHistogramDataPoint { attributes, positive, negative, exemplars }
    Buckets { bucket_counts }
    SummaryDataPoint { attributes, quantile_values }
    ValueAtQuantile {}
    Exemplar { filtered_attributes, span_id, trace_id }
}

impl HeapSize for any_value::Value {
    fn heap_size(&self) -> usize {
        match self {
            any_value::Value::StringValue(s) => s.heap_size(),
            any_value::Value::BytesValue(b) => b.heap_size(),
            any_value::Value::ArrayValue(a) => a.heap_size(),
            any_value::Value::KvlistValue(kv) => kv.heap_size(),
            any_value::Value::BoolValue(_)
            | any_value::Value::IntValue(_)
            | any_value::Value::DoubleValue(_)
            | any_value::Value::StringValueStrindex(_) => 0,
        }
    }
}

impl HeapSize for Data {
    fn heap_size(&self) -> usize {
        match self {
            Data::Gauge(d) => d.heap_size(),
            Data::Sum(d) => d.heap_size(),
            Data::Histogram(d) => d.heap_size(),
            Data::ExponentialHistogram(d) => d.heap_size(),
            Data::Summary(d) => d.heap_size(),
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use prost::Message as _;

    use super::*;

    #[test]
    fn a_million_empty_attributes_weigh_what_they_take_in_memory() {
        let record = LogRecord { attributes: vec![KeyValue::default(); 1_000_000], ..LogRecord::default() };
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs { log_records: vec![record], ..ScopeLogs::default() }],
                ..ResourceLogs::default()
            }],
        };
        let wire = request.encoded_len();
        let decoded = ExportLogsServiceRequest::decode(request.encode_to_vec().as_slice()).unwrap();
        let heap = decoded.resource_logs.heap_size();
        assert!(wire < 3 << 20, "{wire}");
        assert!(heap >= 1_000_000 * size_of::<KeyValue>(), "{heap}");
    }

    #[test]
    fn strings_and_nested_values_count() {
        let value = AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue {
                values: vec![AnyValue { value: Some(any_value::Value::StringValue("x".repeat(1000))) }],
            })),
        };
        assert!(value.heap_size() >= 1000 + size_of::<AnyValue>());
    }
}
