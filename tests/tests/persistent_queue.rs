//! The persistent sending queue (`file_storage` + `sending_queue::storage`)
//! end to end: what the `otlp` receiver acknowledged reaches the backend
//! after `kill -9`, damaged queue files lose only their damaged part, a
//! full disk is counted and survived, and a minute-long outage under
//! steady load loses nothing the queue's bound holds.

#![allow(clippy::unwrap_used, missing_docs)]

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use flowtel_tests::{
    Flowtel, free_port,
    netns::is_root,
    send::{gateway_config, logs_request, send_logs},
    sink::Sink,
    wait_for,
};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;

const WAIT: Duration = Duration::from_secs(60);
/// Records per request in the minute-long outage.
const PER_TICK: u64 = 20;

/// Records acknowledged (gRPC OK) by `codes`, sent `per_request` to a request from `first`.
fn acknowledged(codes: &[tonic::Code], first: u64, per_request: u64) -> Vec<i64> {
    codes
        .iter()
        .enumerate()
        .filter(|(_, code)| **code == tonic::Code::Ok)
        .flat_map(|(i, _)| {
            let start = first + i as u64 * per_request;
            (start..start + per_request).map(|seq| seq as i64)
        })
        .collect()
}

/// Waits until every record in `expected` reached the sink; what arrived.
fn wait_delivered(sink: &Sink, run: &str, expected: &[i64]) -> BTreeMap<i64, u32> {
    wait_for(WAIT, &format!("{} acknowledged records at the backend", expected.len()), || {
        let seen = sink.seqs(run);
        expected.iter().all(|seq| seen.contains_key(seq)).then_some(seen)
    })
}

/// Where each stored batch starts in a queue file (its documented frame
/// format: a 20-byte header whose bytes 4..8 hold the payload's length).
fn frame_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut at = 0;
    while at + 20 <= bytes.len() {
        offsets.push(at);
        at += 20 + u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
    }
    offsets
}

fn queue_files(storage: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(storage.join("exporter_otlp_grpc"))
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
        .collect();
    files.sort();
    files
}

#[test]
fn acknowledged_records_survive_kill_9_and_are_sent_first_after_the_restart() {
    let storage = tempfile::tempdir().unwrap();
    let backend = free_port();
    let grpc = free_port();
    let config = gateway_config(grpc, backend, "{storage: file_storage}", Some((storage.path(), "fsync: false")));
    let run = format!("kill9-{grpc}");

    // The backend is down: everything acknowledged waits in the queue.
    let mut flowtel = Flowtel::start(&config);
    let codes = send_logs(grpc, &run, 0, 50, 20);
    assert!(codes.iter().all(|c| *c == tonic::Code::Ok), "{codes:?}");
    assert!(flowtel.metric("flowtel_exporter_queue_size", &[("unit", "bytes")]) > 0.0);
    flowtel.child.kill();

    let sink = Sink::start(backend);
    let flowtel = Flowtel::start(&config);
    let expected = acknowledged(&codes, 0, 20);
    let seen = wait_delivered(&sink, &run, &expected);
    assert_eq!(seen.len(), 1000);
    assert!(seen.values().all(|n| *n == 1), "nothing was sent before the kill, so nothing twice");
    wait_for(WAIT, "the restored queue to be counted as sent", || {
        (flowtel.metric("flowtel_exporter_sent_items_total", &[]) == 1000.0).then_some(())
    });
    assert_eq!(flowtel.metric("flowtel_exporter_dropped_items_total", &[]), 0.0);
    assert_eq!(flowtel.metric("flowtel_file_storage_lost_items_total", &[]), 0.0);
}

#[test]
fn a_crash_while_sending_loses_nothing_acknowledged_and_duplicates_are_counted() {
    let storage = tempfile::tempdir().unwrap();
    let backend = free_port();
    let grpc = free_port();
    let config = gateway_config(grpc, backend, "{storage: file_storage}", Some((storage.path(), "fsync: false")));
    let run = format!("crash-{grpc}");
    let sink = Sink::start(backend);
    let mut flowtel = Flowtel::start(&config);

    // Killed while requests are being sent and exported.
    let sending = run.clone();
    let sender = std::thread::spawn(move || send_logs(grpc, &sending, 0, 400, 25));
    wait_for(WAIT, "exports under way", || {
        (flowtel.metric("flowtel_exporter_sent_items_total", &[]) > 500.0).then_some(())
    });
    flowtel.child.kill();
    let codes = sender.join().unwrap();
    let expected = acknowledged(&codes, 0, 25);
    assert!(
        expected.len() >= 500 && expected.len() < 10_000,
        "the kill came mid-stream: {} acknowledged",
        expected.len()
    );

    let _flowtel = Flowtel::start(&config);
    let seen = wait_delivered(&sink, &run, &expected);
    let duplicates: u32 = seen.values().map(|n| n - 1).sum();
    let missing = expected.iter().filter(|seq| !seen.contains_key(seq)).count();
    eprintln!("{} acknowledged, {missing} missing, {duplicates} duplicates after the crash", expected.len());
    assert_eq!(missing, 0);
}

#[test]
fn damaged_queue_files_lose_only_their_damaged_part() {
    let storage = tempfile::tempdir().unwrap();
    let backend = free_port();
    let grpc = free_port();
    let config = gateway_config(grpc, backend, "{storage: file_storage}", Some((storage.path(), "fsync: true")));
    let run = format!("damaged-{grpc}");

    let mut flowtel = Flowtel::start(&config);
    assert!(send_logs(grpc, &run, 0, 20, 10).iter().all(|c| *c == tonic::Code::Ok));
    // A clean stop keeps what was not sent.
    assert!(flowtel.child.stop().success());
    assert!(flowtel.child.output().contains("Items stay in the persistent sending queue"));

    let files = queue_files(storage.path());
    let file = files.last().unwrap();
    let mut bytes = std::fs::read(file).unwrap();
    let frames = frame_offsets(&bytes);
    assert_eq!(frames.len(), 20, "{} holds the 20 batches", file.display());
    // Batch 5's payload damaged, batch 19 cut off.
    bytes[frames[5] + 20 + 30] ^= 0x55;
    bytes.truncate(bytes.len() - 5);
    std::fs::write(file, &bytes).unwrap();

    let sink = Sink::start(backend);
    let mut flowtel = Flowtel::start(&config);
    assert_eq!(flowtel.metric("flowtel_file_storage_lost_items_total", &[("reason", "corrupt")]), 10.0);
    assert_eq!(flowtel.metric("flowtel_file_storage_lost_items_total", &[("reason", "truncated")]), 10.0);
    let delivered = wait_for(WAIT, "the other 18 batches at the backend", || {
        let seen = sink.seqs(&run);
        (seen.len() == 180).then_some(seen)
    });
    assert!(delivered.values().all(|n| *n == 1));
    let lost: Vec<i64> = (0..200).filter(|seq| !delivered.contains_key(seq)).collect();
    assert_eq!(lost, (50..60).chain(190..200).collect::<Vec<i64>>());
    flowtel.child.assert_running();
    let log = flowtel.child.output();
    assert!(log.contains("fails its checksum") && log.contains("cut off at the end of its file"), "{log}");
}

/// A tmpfs of `size` mounted on a fresh folder, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "flowtel-test"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "mount a tmpfs on {}", dir.path().display());
        SmallDisk { dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn a_full_disk_is_a_counted_refusal_not_a_crash() {
    if !is_root() {
        panic!("needs root to mount a small tmpfs; run the privileged tests as root (CI does)");
    }
    let disk = SmallDisk::mount("96k");
    let backend = free_port();
    let grpc = free_port();
    // max_size is far above what the disk holds: the disk fills first.
    let config = gateway_config(
        grpc,
        backend,
        "{storage: file_storage, queue_size: 64MiB}",
        Some((disk.dir.path(), "max_size: 16MiB")),
    );
    let run = format!("full-{grpc}");
    let mut flowtel = Flowtel::start(&config);
    let codes = send_logs(grpc, &run, 0, 60, 100);
    let refused = codes.iter().filter(|c| **c != tonic::Code::Ok).count();
    assert!(refused > 0 && refused < 60, "the disk fills part way: {codes:?}");
    assert!(codes.iter().all(|c| matches!(c, tonic::Code::Ok | tonic::Code::Unavailable)), "{codes:?}");
    flowtel.child.assert_running();
    let dropped = flowtel.metric("flowtel_exporter_dropped_items_total", &[("reason", "storage_error")]);
    assert_eq!(dropped as usize, refused * 100, "each refused record is counted");
    assert!(flowtel.child.output().contains("No space left on device"));

    let sink = Sink::start(backend);
    let expected = acknowledged(&codes, 0, 100);
    let seen = wait_delivered(&sink, &run, &expected);
    assert_eq!(seen.len(), expected.len(), "what was refused was not delivered either");
    // With the queue drained, the disk takes data again.
    wait_for(WAIT, "the queue to drain", || (flowtel.metric("flowtel_exporter_queue_size", &[]) == 0.0).then_some(()));
    assert!(send_logs(grpc, &run, 10_000, 5, 100).iter().all(|c| *c == tonic::Code::Ok));
}

#[test]
fn a_minute_long_outage_under_steady_load_loses_nothing_the_bound_holds() {
    let storage = tempfile::tempdir().unwrap();
    let (durable_backend, memory_backend) = (free_port(), free_port());
    let (durable_grpc, memory_grpc) = (free_port(), free_port());
    let queue = "{queue_size: 4000, sizer: items, block_on_overflow: false";
    let durable = Flowtel::start(&gateway_config(
        durable_grpc,
        durable_backend,
        &format!("{queue}, storage: file_storage}}"),
        Some((storage.path(), "fsync: false")),
    ));
    let memory = Flowtel::start(&gateway_config(memory_grpc, memory_backend, &format!("{queue}}}"), None));
    let run = "outage-minute";

    // 20 records every 50 ms for a minute, to both, backends down, each on
    // one connection.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let connect = |port: u16| runtime.block_on(LogsServiceClient::connect(format!("http://127.0.0.1:{port}"))).unwrap();
    let (mut durable_client, mut memory_client) = (connect(durable_grpc), connect(memory_grpc));
    let started = Instant::now();
    let (mut durable_codes, mut memory_codes) = (Vec::new(), Vec::new());
    let mut tick = 0u64;
    while started.elapsed() < Duration::from_secs(60) {
        let seqs = tick * PER_TICK..(tick + 1) * PER_TICK;
        for (client, codes) in [(&mut durable_client, &mut durable_codes), (&mut memory_client, &mut memory_codes)] {
            let answer = runtime.block_on(client.export(logs_request(run, seqs.clone())));
            codes.push(answer.map_or_else(|status| status.code(), |_| tonic::Code::Ok));
        }
        tick += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    let sent = tick * PER_TICK;
    assert!(sent > 4000 + 1000, "the load outgrows the bound: {sent} records");
    let (durable_sink, memory_sink) = (Sink::start(durable_backend), Sink::start(memory_backend));

    // Persistent: what was acknowledged is delivered; the rest was refused and counted.
    let acked = acknowledged(&durable_codes, 0, PER_TICK);
    let seen = wait_delivered(&durable_sink, run, &acked);
    assert_eq!(seen.len(), acked.len());
    assert!(seen.values().all(|n| *n == 1));
    let refused = sent as usize - acked.len();
    assert!(acked.len() >= 4000 && refused > 0, "{} acknowledged, {refused} refused", acked.len());
    assert_eq!(durable.metric("flowtel_exporter_dropped_items_total", &[("reason", "queue_full")]) as usize, refused);
    assert_eq!(durable.metric("flowtel_receiver_refused_items_total", &[]) as usize, refused);

    // In memory: everything was acknowledged; what arrived and what was
    // counted as dropped add up to what was sent.
    assert!(memory_codes.iter().all(|c| *c == tonic::Code::Ok));
    let dropped = memory.metric("flowtel_exporter_dropped_items_total", &[("reason", "queue_full")]) as usize;
    let seen = wait_for(WAIT, "the memory queue drained", || {
        let seen = memory_sink.seqs(run);
        (seen.len() + dropped == sent as usize).then_some(seen)
    });
    assert!(seen.len() >= 4000 && dropped > 0, "{} delivered, {dropped} dropped", seen.len());
    assert!(seen.values().all(|n| *n == 1));
}
