//! Overload with the backend down, on the default settings: clients flood
//! the `otlp` receiver as fast as they can for 30 s while the one backend is
//! unreachable. flowtel's memory stays within its stated bound (README,
//! "Memory"), clients are told to retry (`UNAVAILABLE`) instead of being
//! acknowledged and dropped, and once the backend is up every acknowledged
//! record reaches it.

#![allow(clippy::unwrap_used, missing_docs)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use flowtel_tests::{Flowtel, free_port, peak_rss_mib, send::logs_request, sink::Sink, wait_for};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;

/// The README's bound on flowtel's memory under any overload with the default settings.
const BOUND_MIB: f64 = 300.0;
const FLOOD: Duration = Duration::from_secs(30);
const CLIENTS: u64 = 8;
const PER_REQUEST: u64 = 5_000;

/// What one flooding client saw.
#[derive(Default)]
struct Flooded {
    acknowledged: Vec<std::ops::Range<u64>>,
    unavailable: u64,
    other: Vec<tonic::Code>,
}

fn flood(port: u16, run: String, client: u64, stop: Arc<AtomicBool>) -> Flooded {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut grpc = LogsServiceClient::connect(format!("http://127.0.0.1:{port}")).await.unwrap();
        let mut seen = Flooded::default();
        let mut next = client << 40;
        while !stop.load(Ordering::Relaxed) {
            let seqs = next..next + PER_REQUEST;
            next += PER_REQUEST;
            match grpc.export(logs_request(&run, seqs.clone())).await {
                Ok(_) => seen.acknowledged.push(seqs),
                Err(status) if status.code() == tonic::Code::Unavailable => seen.unavailable += 1,
                Err(status) => seen.other.push(status.code()),
            }
        }
        seen
    })
}

#[test]
fn with_the_backend_down_a_flood_is_pushed_back_within_the_memory_bound_and_nothing_acknowledged_is_lost() {
    let (grpc, http, backend) = (free_port(), free_port(), free_port());
    // The defaults everywhere but the addresses.
    let flowtel = Flowtel::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{grpc}"}}
      http: {{endpoint: "127.0.0.1:{http}"}}
processors:
  batch:
exporters:
  otlp_grpc: {{endpoint: "127.0.0.1:{backend}", tls: {{insecure: true}}}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:${{METRICS_PORT}}"}}}}
  pipelines:
    logs: {{receivers: [otlp], processors: [batch], exporters: [otlp_grpc]}}
"#
    ));
    let run = format!("overload-{grpc}");
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (run, stop) = (run.clone(), stop.clone());
            std::thread::spawn(move || flood(grpc, run, client, stop))
        })
        .collect();
    let started = Instant::now();
    let mut queued = 0.0f64;
    while started.elapsed() < FLOOD {
        std::thread::sleep(Duration::from_secs(1));
        queued = queued.max(flowtel.metric("flowtel_exporter_queue_size", &[("unit", "bytes")]));
    }
    stop.store(true, Ordering::Relaxed);
    let flooded: Vec<Flooded> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let peak = peak_rss_mib(flowtel.child.pid());
    let acknowledged: u64 = flooded.iter().flat_map(|f| &f.acknowledged).map(|r| r.end - r.start).sum();
    let unavailable: u64 = flooded.iter().map(|f| f.unavailable).sum();
    let other: Vec<_> = flooded.iter().flat_map(|f| &f.other).collect();
    eprintln!("{acknowledged} records acknowledged, {unavailable} requests told to retry, peak RSS {peak:.0} MiB");

    assert!(peak < BOUND_MIB, "peak RSS {peak:.0} MiB is over the {BOUND_MIB} MiB bound");
    assert!(unavailable > 0, "clients were never told to retry");
    assert!(other.is_empty(), "only OK and UNAVAILABLE are answered: {other:?}");
    assert!(acknowledged > 0);
    assert!(queued > 0.0, "the sending queue's size showed what it held");
    assert_eq!(flowtel.metric("flowtel_exporter_dropped_items_total", &[]), 0.0, "nothing was dropped");

    // The backend comes up: every acknowledged record arrives.
    let sink = Sink::start(backend);
    let seqs = wait_for(Duration::from_secs(180), "every acknowledged record at the backend", || {
        let seqs = sink.seqs(&run);
        (seqs.len() as u64 >= acknowledged).then_some(seqs)
    });
    for range in flooded.iter().flat_map(|f| &f.acknowledged) {
        for seq in range.clone() {
            assert!(seqs.contains_key(&(seq as i64)), "acknowledged record {seq} never arrived");
        }
    }
    assert_eq!(seqs.len() as u64, acknowledged, "only acknowledged records arrive");
    assert_eq!(flowtel.metric("flowtel_exporter_dropped_items_total", &[]), 0.0);
}
