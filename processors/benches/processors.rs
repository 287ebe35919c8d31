//! Per-record cost of each processor.
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

use std::{collections::HashMap, sync::Arc, time::Duration};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flowtel_core::{Payload, component::Processor};
use flowtel_processors::{
    batch::{BatchConfig, BatchProcessor},
    filter::{FilterConfig, FilterProcessor, LogConditions},
    host_attributes::{HostAttributesProcessor, SocketIndex, SocketOwner, SocketRow, Transport},
    k8s_attributes::{ClusterView, K8sAttributesConfig, K8sAttributesProcessor, Owner, PodInfo},
    log_dedup::{LogDedupConfig, LogDedupProcessor},
    memory_limiter::{MemoryLimiter, MemoryLimiterConfig},
    probabilistic_sampler::{ProbabilisticSampler, ProbabilisticSamplerConfig},
    trace_correlation::{TraceCorrelation, TraceCorrelationConfig},
};
use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, KeyValue, any_value::Value},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    trace::v1::{ResourceSpans, ScopeSpans, Span, span::SpanKind},
};

#[global_allocator]
static ALLOCATOR: flowtel_core::memory::CountingAllocator = flowtel_core::memory::CountingAllocator;

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

/// A server span of connection `i` (client 10.x.y.z:40000 to port 8080),
/// as an HTTP server instrumentation sends it, long ended.
fn server_span(i: u32) -> Span {
    Span {
        trace_id: [i.to_be_bytes(), [1; 4], [2; 4], [3; 4]].concat(),
        span_id: [i.to_be_bytes(), [4; 4]].concat(),
        parent_span_id: [i.to_be_bytes(), [5; 4]].concat(),
        kind: SpanKind::Server as i32,
        start_time_unix_nano: 1_000_000_000,
        end_time_unix_nano: 2_000_000_000,
        attributes: vec![
            kv("net.peer.ip", Value::StringValue(format!("10.{}.{}.{}", i >> 16, (i >> 8) & 0xff, i & 0xff))),
            kv("net.peer.port", Value::IntValue(40_000)),
            kv("net.host.port", Value::IntValue(8080)),
        ],
        ..Default::default()
    }
}

fn spans(count: u32) -> Payload {
    Payload::Traces(vec![ResourceSpans {
        scope_spans: vec![ScopeSpans { spans: (0..count).map(server_span).collect(), ..Default::default() }],
        ..Default::default()
    }])
}

/// 512 retransmit records, one on each of the first 512 connections of
/// [`server_span`], during its span.
fn retransmits() -> Payload {
    let records = (0..512u32)
        .map(|i| LogRecord {
            event_name: "network.tcp.retransmit".into(),
            time_unix_nano: 1_500_000_000,
            attributes: vec![
                kv("network.transport", Value::StringValue("tcp".into())),
                kv("source.address", Value::StringValue("10.255.0.1".into())),
                kv("source.port", Value::IntValue(8080)),
                kv("destination.address", Value::StringValue(format!("10.0.{}.{}", i >> 8, i & 0xff))),
                kv("destination.port", Value::IntValue(40_000)),
                kv("network.tcp.retransmit.segments", Value::IntValue(1)),
            ],
            ..Default::default()
        })
        .collect();
    Payload::Logs(vec![ResourceLogs {
        scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }],
        ..Default::default()
    }])
}

/// 512 flow records with distinct 5-tuples.
fn flows() -> Payload {
    let records = (0..512)
        .map(|i| LogRecord {
            event_name: "network.flow".into(),
            attributes: vec![
                kv("network.transport", Value::StringValue("tcp".into())),
                kv("source.address", Value::StringValue(format!("10.0.{}.{}", i / 250, i % 250))),
                kv("source.port", Value::IntValue(40_000 + i)),
                kv("destination.address", Value::StringValue("192.0.2.1".into())),
                kv("destination.port", Value::IntValue(443)),
            ],
            ..Default::default()
        })
        .collect();
    Payload::Logs(vec![ResourceLogs {
        scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }],
        ..Default::default()
    }])
}

fn payload(records: usize) -> Payload {
    Payload::Logs(vec![ResourceLogs {
        scope_logs: vec![ScopeLogs { log_records: vec![LogRecord::default(); records], ..Default::default() }],
        ..Default::default()
    }])
}

/// Times `processor` on fresh payloads from `make` (made outside the
/// timing); with `flush`, what it holds is emitted each time too.
fn per_payload(b: &mut criterion::Bencher<'_>, processor: &mut dyn Processor, make: fn() -> Payload, flush: bool) {
    let mut out = Vec::new();
    b.iter_batched(
        make,
        |payload| {
            processor.process(payload, &mut out);
            if flush {
                processor.flush(&mut out);
            }
            out.clear();
        },
        criterion::BatchSize::SmallInput,
    );
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
        per_payload(b, &mut batch, || payload(512), false);
    });
    group.finish();

    let mut group = c.benchmark_group("filter");
    group.throughput(Throughput::Elements(512));
    group.bench_function("512 flow records, 3 conditions", |b| {
        let mut filter = FilterProcessor::new(&FilterConfig {
            logs: LogConditions {
                log_record: vec![
                    r#"network.transport == "udp" and destination.port == 53"#.into(),
                    "source.address in 10.0.1.0/24 and destination.port in 8000..8100".into(),
                    r#"k8s.src.namespace.name matches "^kube-""#.into(),
                ],
            },
            ..FilterConfig::default()
        });
        per_payload(b, &mut filter, flows, false);
    });
    group.finish();

    let mut group = c.benchmark_group("k8s_attributes");
    group.throughput(Throughput::Elements(512));
    group.bench_function("512 flow records, both ends, 5000 pods known", |b| {
        let view = Arc::new(ClusterView::default());
        view.update(|metadata| {
            for i in 0..5000 {
                metadata.apply_pod(PodInfo {
                    name: format!("web-{i}"),
                    namespace: "shop".into(),
                    uid: format!("uid-{i}"),
                    node: Some("node-1".into()),
                    ips: vec![format!("10.0.{}.{}", i / 250, i % 250).parse().unwrap()],
                    owner: Some(Owner { kind: "DaemonSet".into(), name: "web".into(), uid: "uid-web".into() }),
                    ..PodInfo::default()
                });
            }
            // The flows' destination is a host-network pod: its node.
            metadata.apply_pod(PodInfo {
                name: "agent".into(),
                namespace: "shop".into(),
                node: Some("node-1".into()),
                ips: vec!["192.0.2.1".parse().unwrap()],
                host_network: true,
                ..PodInfo::default()
            });
        });
        let mut processor = K8sAttributesProcessor::with_view(K8sAttributesConfig::default(), view);
        per_payload(b, &mut processor, flows, false);
    });
    group.finish();

    let mut group = c.benchmark_group("host_attributes");
    group.throughput(Throughput::Elements(512));
    group.bench_function("512 flow records, 10000 local sockets", |b| {
        let mut index = SocketIndex::default();
        let owner = Arc::new(SocketOwner { pid: 42, command: "server".into(), container_id: None, netns: 1 });
        let rows: Vec<SocketRow> = (0..10_000u64)
            .map(|i| SocketRow {
                local: format!("10.0.{}.{}:{}", i / 250 % 256, i % 250, 40_000 + i % 512).parse().unwrap(),
                remote: "192.0.2.1:443".parse().unwrap(),
                inode: i,
            })
            .collect();
        let owners: HashMap<u64, Arc<SocketOwner>> = (0..10_000u64).map(|i| (i, owner.clone())).collect();
        index.add(Transport::Tcp, 1, &rows, &owners);
        let mut processor = HostAttributesProcessor::with_index(index);
        per_payload(b, &mut processor, flows, false);
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("one read of this machine's /proc", |b| {
        b.iter(|| SocketIndex::scan(std::path::Path::new("/proc")).len());
    });
    group.finish();

    let mut group = c.benchmark_group("log_dedup");
    group.throughput(Throughput::Elements(512));
    group.bench_function("512 flow records, flow mode", |b| {
        let mut dedup = LogDedupProcessor::new(LogDedupConfig { flow_mode: true, ..LogDedupConfig::default() });
        per_payload(b, &mut dedup, flows, false);
    });
    group.bench_function("512 records aggregated", |b| {
        let mut dedup = LogDedupProcessor::new(LogDedupConfig::default());
        per_payload(b, &mut dedup, flows, true);
    });
    group.finish();

    let mut group = c.benchmark_group("memory_limiter");
    group.bench_function("admission check per receiver push", |b| {
        let limiter = MemoryLimiter::new(&MemoryLimiterConfig { limit_mib: 1 << 20, ..MemoryLimiterConfig::default() });
        let gate = limiter.admission().unwrap();
        b.iter(|| gate.refusing());
    });
    group.finish();

    let mut group = c.benchmark_group("probabilistic_sampler");
    group.throughput(Throughput::Elements(512));
    group.bench_function("512 flow records at 25%", |b| {
        let mut sampler = ProbabilisticSampler::new(ProbabilisticSamplerConfig {
            sampling_percentage: 25.0,
            ..ProbabilisticSamplerConfig::default()
        });
        per_payload(b, &mut sampler, flows, false);
    });
    group.finish();
}

fn trace_correlation(c: &mut Criterion) {
    let mut group = c.benchmark_group("trace_correlation");
    group.throughput(Throughput::Elements(512));
    let shared = TraceCorrelation::new(TraceCorrelationConfig::default());
    let (mut traces, mut logs) = (shared.processor(), shared.processor());
    group.bench_function("512 server spans indexed, with their events", |b| {
        per_payload(b, &mut traces, || spans(512), false);
    });
    group.bench_function("512 retransmit records stamped from their spans", |b| {
        per_payload(b, &mut logs, retransmits, false);
    });
    group.finish();

    // What the index holds at 10,000 connections (a span and an event each).
    flowtel_core::memory::counting_installed();
    let before = flowtel_core::memory::heap_in_use().unwrap_or(0);
    let shared = TraceCorrelation::new(TraceCorrelationConfig::default());
    let (mut traces, mut logs) = (shared.processor(), shared.processor());
    let mut out = Vec::new();
    traces.process(spans(10_000), &mut out);
    logs.process(retransmits(), &mut out);
    drop(out);
    let after = flowtel_core::memory::heap_in_use().unwrap_or(0);
    println!(
        "trace_correlation: index of 10,000 connections holds {:.1} MiB",
        after.saturating_sub(before) as f64 / (1024.0 * 1024.0)
    );
    drop((traces, logs, shared));
}

criterion_group!(benches, processors, trace_correlation);
criterion_main!(benches);
