//! The ebpf receiver's drop and TCP paths in userspace: decoding an event,
//! and turning a drop or a closed connection into an OTLP log record.
#![allow(missing_docs, clippy::unwrap_used)]

use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use flowtel_ebpf_common::{
    DropEvent, EVENT_DROP, EVENT_TCP_CONNECTION, IP_V4, SIDE_CLIENT, SockOpen, TcpEvent, ipproto,
};
use flowtel_receiver::ebpf::{
    decode_kernel_event,
    drops::{DropContext, drop_record},
    kernel::{btf::KernelEnums, kallsyms::Kallsyms, tracefs},
    tcp::{TcpContext, TcpFormats, tcp_record},
};

fn as_bytes<T>(value: &T) -> &[u8] {
    // SAFETY: reading a plain-data struct's bytes.
    unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
}

fn kernel_events(c: &mut Criterion) {
    let enums = KernelEnums {
        drop_reasons: [(3, "NO_SOCKET".to_owned())].into_iter().collect(),
        tcp_states: [(1, "ESTABLISHED".to_owned()), (7, "CLOSE".to_owned())].into_iter().collect(),
        ..KernelEnums::default()
    };
    let kallsyms = Kallsyms::parse("ffffffff81a00000 t tcp_v4_rcv\nffffffff81b00000 T ip_rcv\n");
    let mut drop = DropEvent {
        kind: EVENT_DROP,
        ip_version: IP_V4,
        protocol: ipproto::TCP,
        has_ports: 1,
        reason: 3,
        location: 0xffffffff81a00042,
        src_port: 40_000,
        dst_port: 9,
        stack_id: -1,
        ..DropEvent::default()
    };
    drop.src_addr[..4].copy_from_slice(&[10, 0, 0, 1]);
    drop.dst_addr[..4].copy_from_slice(&[10, 0, 0, 2]);
    let bytes = as_bytes(&drop);
    c.bench_function("decode one kernel drop event", |b| b.iter(|| decode_kernel_event(std::hint::black_box(bytes))));
    let ctx = DropContext { enums: &enums, kallsyms: &kallsyms, monotonic_to_unix_ns: 1, now_unix_ns: 2 };
    c.bench_function("drop event to OTLP log record", |b| {
        b.iter(|| drop_record(std::hint::black_box(&drop), None, &ctx))
    });

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/tracefs-6.18");
    let formats = TcpFormats {
        set_state: tracefs::format(&root, "sock", "inet_sock_set_state").unwrap(),
        ..TcpFormats::default()
    };
    let mut connection = TcpEvent {
        kind: EVENT_TCP_CONNECTION,
        open: SockOpen { side: SIDE_CLIENT, pid: 1, ..SockOpen::default() },
        ..TcpEvent::default()
    };
    let field = |name: &str| formats.set_state.field(name).unwrap().offset;
    connection.record[field("family")..][..2].copy_from_slice(&2u16.to_ne_bytes());
    connection.record[field("saddr")..][..4].copy_from_slice(&[10, 0, 0, 1]);
    let ctx = TcpContext { formats: &formats, enums: &enums, monotonic_to_unix_ns: 1, now_unix_ns: 2 };
    c.bench_function("TCP connection event to OTLP log record", |b| {
        b.iter(|| tcp_record(std::hint::black_box(&connection), &ctx, None))
    });
}

criterion_group!(benches, kernel_events);
criterion_main!(benches);
