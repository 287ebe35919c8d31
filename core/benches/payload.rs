//! Costs on the hot path of every pipeline: splitting a 512-record batch and
//! encoding it as an OTLP request.
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use flowtel_core::{Payload, export::encode_protobuf};
use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, KeyValue, any_value},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
};

/// 512 records with 10 attributes each (~300 bytes encoded per record).
fn batch() -> Payload {
    let attribute = |i: usize| KeyValue {
        key: format!("network.attribute.{i}"),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(format!("value-{i}"))) }),
        ..Default::default()
    };
    let record = LogRecord {
        time_unix_nano: 1_700_000_000_000_000_000,
        event_name: "network.flow".into(),
        attributes: (0..10).map(attribute).collect(),
        ..Default::default()
    };
    Payload::Logs(vec![ResourceLogs {
        scope_logs: vec![ScopeLogs { log_records: vec![record; 512], ..Default::default() }],
        ..Default::default()
    }])
}

fn payload(c: &mut Criterion) {
    let payload = batch();
    c.bench_function("encode 512-record logs request (protobuf)", |b| {
        b.iter(|| encode_protobuf(std::hint::black_box(&payload)));
    });
    c.bench_function("split 512-record batch into 4", |b| {
        b.iter_batched(
            || payload.clone(),
            |mut p| {
                for _ in 0..3 {
                    std::hint::black_box(p.split_front(128));
                }
                p
            },
            criterion::BatchSize::SmallInput,
        );
    });
}

criterion_group!(benches, payload);
criterion_main!(benches);
