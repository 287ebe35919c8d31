//! Per-record cost of each processor.
#![allow(missing_docs, clippy::unwrap_used)]

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flowtel_core::{Payload, component::Processor};
use flowtel_processors::batch::{BatchConfig, BatchProcessor};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};

fn payload(records: usize) -> Payload {
    Payload::Logs(vec![ResourceLogs {
        scope_logs: vec![ScopeLogs { log_records: vec![LogRecord::default(); records], ..Default::default() }],
        ..Default::default()
    }])
}

fn processors(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch");
    group.throughput(Throughput::Elements(512));
    group.bench_function("512 records in, batches of 8192 out", |b| {
        let mut batch = BatchProcessor::new(BatchConfig {
            send_batch_size: 8192,
            send_batch_max_size: 0,
            timeout: Duration::from_secs(1),
        });
        let mut out = Vec::new();
        b.iter_batched(
            || payload(512),
            |p| {
                batch.process(p, &mut out);
                out.clear();
            },
            criterion::BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group!(benches, processors);
criterion_main!(benches);
