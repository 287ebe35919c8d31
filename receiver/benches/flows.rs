//! The ebpf receiver's userspace hot path: decoding a kernel event, and
//! turning a flow report into an OTLP log record.
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use flowtel_ebpf_common::{FlowEvent, FlowKey, FlowStats, ipproto};
use flowtel_receiver::ebpf::{
    decode_event,
    flows::{
        convert::{RecordContext, flow_record},
        table::{FlowReport, FlowTable},
    },
};

fn key(port: u16) -> FlowKey {
    let mut key = FlowKey {
        protocol: ipproto::TCP,
        ip_version: 4,
        src_port: port,
        dst_port: 443,
        ifindex: 2,
        ..FlowKey::default()
    };
    key.src_addr[..4].copy_from_slice(&[10, 0, 0, 1]);
    key.dst_addr[..4].copy_from_slice(&[10, 0, 0, 2]);
    key
}

fn flows(c: &mut Criterion) {
    let event = FlowEvent { key: key(1), kind: flowtel_ebpf_common::EVENT_FLOW_END, ..FlowEvent::default() };
    // SAFETY: reading a plain-data struct's bytes.
    let bytes: &[u8] =
        unsafe { std::slice::from_raw_parts((&raw const event).cast::<u8>(), std::mem::size_of::<FlowEvent>()) };
    c.bench_function("decode one kernel flow event", |b| b.iter(|| decode_event(std::hint::black_box(bytes))));

    let report = FlowReport {
        key: key(40000),
        first_seen_ns: 1,
        last_seen_ns: 2,
        bytes: 1500,
        packets: 3,
        tcp_flags: 0x12,
        is_reply: Some(true),
        end: None,
        responses: 0,
        response_ns: 0,
    };
    let name = |_: u32| "eth0".to_owned();
    let ctx = RecordContext {
        interface_name: &name,
        sampling: 1,
        monotonic_to_unix_ns: 1_700_000_000_000_000_000,
        now_unix_ns: 0,
    };
    c.bench_function("flow report to OTLP log record", |b| b.iter(|| flow_record(std::hint::black_box(&report), &ctx)));

    let kernel: Vec<(FlowKey, FlowStats)> = (0..10_000u16)
        .map(|port| {
            (key(port), FlowStats { first_seen_ns: 1, last_seen_ns: 2, bytes: 100, packets: 1, ..FlowStats::default() })
        })
        .collect();
    c.bench_function("flush of 10,000 active flows", |b| {
        b.iter_batched(
            || FlowTable::new(u64::MAX),
            |mut table| table.flush(&kernel, 3),
            criterion::BatchSize::LargeInput,
        );
    });
}

criterion_group!(benches, flows);
criterion_main!(benches);
