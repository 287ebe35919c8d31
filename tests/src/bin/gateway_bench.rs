//! The gateway benchmark: OTLP/gRPC logs in → `batch` → OTLP/gRPC out to a
//! null sink, for flowtel and for rotel (the Rust OTel collector from PyPI)
//! doing the same job on the same machine, in the same run.
//!
//! The load generator and the null sink live in this process, pinned to the
//! last core; the collector under test is pinned to the first. The
//! generator's own ceiling (straight into the sink) is measured first, so it
//! is shown not to be the bottleneck. Reports records per second, records
//! per second per core of the collector (its CPU time over the wall time),
//! and the collector's peak RSS, for 512-record batches whose records carry
//! 4 or 10 attributes. Both collectors export with gzip (rotel always
//! compresses), and flowtel's sending queue blocks when full (16 batches),
//! as rotel pushes back, so neither buffers without bound under overload.
//! flowtel also runs without `batch`, its sending queue in memory and on
//! disk (`file_storage`), and with a `load_balancing` exporter spreading
//! records (by trace id) over three sinks.
//!
//! `--quick` runs each case for a second (used by `cargo xtask test`);
//! `--out DIR` writes `gateway.md` and `gateway.json` there.

#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr, missing_docs)]

use std::{
    fmt::Write as _,
    marker::PhantomData,
    path::PathBuf,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::{Buf as _, BufMut as _, Bytes};
use flowtel_core::schema::{attr, event};
use flowtel_tests::{Child, cpu_seconds, free_port, peak_rss_mib, python, wait_for};
use opentelemetry_proto::tonic::{
    collector::logs::v1::{
        ExportLogsServiceRequest, ExportLogsServiceResponse,
        logs_service_server::{LogsService, LogsServiceServer},
    },
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    resource::v1::Resource,
};
use prost::Message as _;
use serde_json::json;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

const RECORDS_PER_BATCH: usize = 512;
const GENERATOR_STREAMS: usize = 8;
/// 10,000 records per second: one 512-record batch every 51.2 ms.
const LIGHT: Rate = Rate::Paced(Duration::from_micros(51_200));

struct Row {
    attributes: usize,
    record_bytes: usize,
    ceiling: Measurement,
    flowtel: Measurement,
    rotel: Measurement,
    flowtel_light: Measurement,
    rotel_light: Measurement,
    persistent: Measurement,
    unbatched: Measurement,
    balanced: Measurement,
}

fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t with one bit set, for this process.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// A 512-record request whose records have `attributes` attributes (~300
/// bytes each), and each its own trace id when `traced`.
fn request(attributes: usize, traced: bool) -> Bytes {
    let value = |s: String| Some(AnyValue { value: Some(Value::StringValue(s)) });
    let record = |i: usize| LogRecord {
        time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
        severity_number: 9,
        severity_text: "INFO".into(),
        event_name: event::FLOW.into(),
        body: value(format!("connection {i} established to the upstream service")),
        trace_id: if traced { (i as u128 + 1).to_be_bytes().to_vec() } else { Vec::new() },
        span_id: if traced { (i as u64 + 1).to_be_bytes().to_vec() } else { Vec::new() },
        attributes: (0..attributes)
            .map(|a| KeyValue {
                key: format!("attribute.key.{a}"),
                value: value(format!("value-{}-{}", a, "x".repeat(if attributes > 4 { 8 } else { 30 }))),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: attr::SERVICE_NAME.into(),
                    value: value("bench".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope { name: "bench".into(), ..Default::default() }),
                log_records: (0..RECORDS_PER_BATCH).map(record).collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    };
    Bytes::from(request.encode_to_vec())
}

/// Sends pre-encoded requests as they are; ignores the response body.
#[derive(Default)]
struct RawCodec(PhantomData<()>);

struct RawEncoder;
struct IgnoreDecoder;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = ();
    type Encoder = RawEncoder;
    type Decoder = IgnoreDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> IgnoreDecoder {
        IgnoreDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for IgnoreDecoder {
    type Item = ();
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<()>, tonic::Status> {
        src.advance(src.remaining());
        Ok(Some(()))
    }
}

/// The null sink: counts the log records it is sent.
#[derive(Clone, Default)]
struct Sink {
    records: Arc<AtomicU64>,
}

#[async_trait::async_trait]
impl LogsService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let records: usize =
            request.get_ref().resource_logs.iter().flat_map(|r| &r.scope_logs).map(|s| s.log_records.len()).sum();
        self.records.fetch_add(records as u64, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

/// How hard the generator pushes.
#[derive(Clone, Copy)]
enum Rate {
    /// As fast as `GENERATOR_STREAMS` connections can send.
    Flat,
    /// One request every interval, on one connection.
    Paced(Duration),
}

/// Sends `body` at `rate` until `stop`.
async fn generate(port: u16, body: Bytes, rate: Rate, stop: Arc<std::sync::atomic::AtomicBool>) {
    let (streams, pace) = match rate {
        Rate::Flat => (GENERATOR_STREAMS, None),
        Rate::Paced(interval) => (1, Some(interval)),
    };
    let mut tasks = Vec::new();
    for _ in 0..streams {
        let (body, stop) = (body.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let channel = loop {
                match tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
                    .unwrap()
                    .connect()
                    .await
                {
                    Ok(channel) => break channel,
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            };
            let mut grpc = tonic::client::Grpc::new(channel);
            let path =
                http::uri::PathAndQuery::from_static("/opentelemetry.proto.collector.logs.v1.LogsService/Export");
            let mut ticks = pace.map(tokio::time::interval);
            while !stop.load(Ordering::Relaxed) {
                if let Some(ticks) = ticks.as_mut() {
                    ticks.tick().await;
                }
                if grpc.ready().await.is_err() {
                    break;
                }
                let _ = grpc.unary(tonic::Request::new(body.clone()), path.clone(), RawCodec::default()).await;
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

struct Measurement {
    records_per_second: f64,
    cores: f64,
    peak_rss_mib: f64,
}

/// Runs the generator into `target_port` for `seconds` after a warm-up and
/// measures what reaches the sink, and `pid`'s CPU and memory when given.
fn measure(
    runtime: &tokio::runtime::Runtime,
    sink: &Sink,
    target_port: u16,
    body: &Bytes,
    rate: Rate,
    pid: Option<u32>,
    seconds: f64,
) -> Measurement {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let generator = runtime.spawn(generate(target_port, body.clone(), rate, stop.clone()));
    std::thread::sleep(Duration::from_secs(1));
    let (start, start_records) = (Instant::now(), sink.records.load(Ordering::Relaxed));
    let start_cpu = pid.map_or(0.0, cpu_seconds);
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let wall = start.elapsed().as_secs_f64();
    let records = sink.records.load(Ordering::Relaxed) - start_records;
    let cpu = pid.map_or(0.0, cpu_seconds) - start_cpu;
    stop.store(true, Ordering::Relaxed);
    let _ = runtime.block_on(generator);
    Measurement {
        records_per_second: records as f64 / wall,
        cores: cpu / wall,
        peak_rss_mib: pid.map_or(0.0, peak_rss_mib),
    }
}

/// flowtel as the collector under test: `otlp` → `processors` → `exporter`
/// (`sections`: the YAML of `extensions:` and `exporters:`), measured at
/// full load and, when `light`, at 10,000 records/s.
struct FlowtelCase<'a> {
    runtime: &'a tokio::runtime::Runtime,
    sink: &'a Sink,
    dir: &'a std::path::Path,
    collector_cpu: usize,
    seconds: f64,
}

impl FlowtelCase<'_> {
    fn run(
        &self,
        name: &str,
        sections: &str,
        processors: &str,
        exporter: &str,
        body: &Bytes,
        light: bool,
    ) -> (Measurement, Option<Measurement>) {
        let port = free_port();
        let service_extensions = if sections.contains("extensions:") { "  extensions: [file_storage]\n" } else { "" };
        let config = format!(
            "{sections}receivers: {{otlp: {{protocols: {{grpc: {{endpoint: \"127.0.0.1:{port}\", max_recv_msg_size_mib: 64}}}}}}}}\n\
             processors: {{batch: {{send_batch_size: 8192, timeout: 200ms}}}}\n\
             service:\n{service_extensions}  telemetry: {{metrics: {{level: none}}}}\n  pipelines: {{logs: {{receivers: [otlp], processors: [{processors}], exporters: [{exporter}]}}}}\n"
        );
        let config_path = self.dir.join(format!("{name}.yaml"));
        std::fs::write(&config_path, config).unwrap();
        let mut flowtel = Child::spawn(
            "flowtel",
            Command::new("taskset")
                .arg("-c")
                .arg(self.collector_cpu.to_string())
                .arg(flowtel_tests::flowtel_bin())
                .arg("--config")
                .arg(&config_path),
            &self.dir.join(format!("{name}.log")),
        );
        wait_for(Duration::from_secs(20), "flowtel to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        let full = measure(self.runtime, self.sink, port, body, Rate::Flat, Some(flowtel.pid()), self.seconds);
        let light =
            light.then(|| measure(self.runtime, self.sink, port, body, LIGHT, Some(flowtel.pid()), self.seconds));
        flowtel.stop();
        if full.records_per_second == 0.0 {
            eprintln!("{name}: flowtel delivered nothing; its log:\n{}", flowtel.output());
        }
        (full, light)
    }
}

fn rotel_bin() -> PathBuf {
    let out = Command::new(python())
        .args(["-c", "import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), 'rotel-agent'))"])
        .output()
        .unwrap();
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let out = args
        .iter()
        .position(|a| a == "--out")
        .map_or_else(|| flowtel_tests::root().join("target/bench"), |i| PathBuf::from(&args[i + 1]));
    let seconds = if quick { 1.0 } else { 5.0 };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (collector_cpu, load_cpu) = (0, cores - 1);
    pin_to_cpu(load_cpu);

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let sink = Sink::default();
    // The first sink is every case's; the load_balancing case uses all three.
    let sink_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    for port in &sink_ports {
        let server = LogsServiceServer::new(sink.clone())
            .max_decoding_message_size(64 << 20)
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
        runtime.spawn(
            tonic::transport::Server::builder().add_service(server).serve(format!("127.0.0.1:{port}").parse().unwrap()),
        );
    }
    let sink_port = sink_ports[0];
    let dir = tempfile::tempdir().unwrap();
    let case = FlowtelCase { runtime: &runtime, sink: &sink, dir: dir.path(), collector_cpu, seconds };
    let otlp_exporter = format!(
        "otlp_grpc: {{endpoint: \"http://127.0.0.1:{sink_port}\", compression: gzip, sending_queue: {{queue_size: 16, block_on_overflow: true{{storage}}}}}}"
    );
    let hostnames: Vec<String> = sink_ports.iter().map(|port| format!("\"127.0.0.1:{port}\"")).collect();
    let balancing = format!(
        "load_balancing: {{routing_key: traceID, protocol: {{otlp: {{tls: {{insecure: true}}, compression: gzip, sending_queue: {{queue_size: 16}}}}}}, resolver: {{static: {{hostnames: [{}]}}}}}}",
        hostnames.join(", ")
    );

    let mut rows = Vec::new();
    for attributes in [4usize, 10] {
        let body = request(attributes, false);
        let record_bytes = body.len() / RECORDS_PER_BATCH;
        let ceiling = measure(&runtime, &sink, sink_port, &body, Rate::Flat, None, seconds);

        let memory = format!("exporters: {{{}}}\n", otlp_exporter.replace("{storage}", ""));
        let (with_flowtel, flowtel_light) =
            case.run(&format!("flowtel-{attributes}"), &memory, "batch", "otlp_grpc", &body, true);
        let storage = dir.path().join(format!("queue-{attributes}"));
        std::fs::create_dir_all(&storage).unwrap();
        let stored = format!(
            "extensions: {{file_storage: {{directory: \"{}\", max_size: 1GiB}}}}\nexporters: {{{}}}\n",
            storage.display(),
            otlp_exporter.replace("{storage}", ", storage: file_storage")
        );
        // No `batch` in front: the receiver answers once a request is
        // stored, and a batch processor would hold every answer until it
        // sends (the collector's advice too: batch at the queue).
        let (persistent, _) = case.run(&format!("persistent-{attributes}"), &stored, "", "otlp_grpc", &body, false);
        let (unbatched, _) = case.run(&format!("unbatched-{attributes}"), &memory, "", "otlp_grpc", &body, false);
        let traced = request(attributes, true);
        let (balanced, _) = case.run(
            &format!("balanced-{attributes}"),
            &format!("exporters: {{{balancing}}}\n"),
            "batch",
            "load_balancing",
            &traced,
            false,
        );
        let flowtel_light =
            flowtel_light.unwrap_or(Measurement { records_per_second: 0.0, cores: 0.0, peak_rss_mib: 0.0 });

        let (rotel_port, rotel_http) = (free_port(), free_port());
        let mut rotel = Child::spawn(
            "rotel",
            Command::new("taskset").arg("-c").arg(collector_cpu.to_string()).arg(rotel_bin()).args([
                "start",
                "--otlp-grpc-endpoint",
                &format!("127.0.0.1:{rotel_port}"),
                "--otlp-http-endpoint",
                &format!("127.0.0.1:{rotel_http}"),
                "--otlp-grpc-max-recv-msg-size-mib",
                "64",
                "--exporter",
                "otlp",
                "--otlp-exporter-endpoint",
                &format!("http://127.0.0.1:{sink_port}"),
                "--otlp-exporter-protocol",
                "grpc",
                "--otlp-exporter-compression",
                "gzip",
            ]),
            &dir.path().join(format!("rotel-{attributes}.log")),
        );
        wait_for(Duration::from_secs(20), "rotel to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", rotel_port)).ok()
        });
        let with_rotel = measure(&runtime, &sink, rotel_port, &body, Rate::Flat, Some(rotel.pid()), seconds);
        let rotel_light = measure(&runtime, &sink, rotel_port, &body, LIGHT, Some(rotel.pid()), seconds);
        rotel.stop();
        if with_rotel.records_per_second == 0.0 {
            eprintln!("rotel delivered nothing; its log:\n{}", rotel.output());
        }
        rows.push(Row {
            attributes,
            record_bytes,
            ceiling,
            flowtel: with_flowtel,
            rotel: with_rotel,
            flowtel_light,
            rotel_light,
            persistent,
            unbatched,
            balanced,
        });
    }

    let per_core = |m: &Measurement| if m.cores > 0.0 { m.records_per_second / m.cores } else { f64::NAN };
    let mut md = String::from("# flowtel gateway benchmark\n\n");
    let _ = writeln!(
        md,
        "OTLP/gRPC logs → batch → OTLP/gRPC to a null sink; collector pinned to CPU {collector_cpu}, load generator and sink to CPU {load_cpu} of {cores}; {seconds} s per case after a 1 s warm-up{}.\n",
        if quick { " (--quick: not a measurement)" } else { "" }
    );
    md.push_str("| attributes | record size | generator ceiling | flowtel records/s | flowtel per core | flowtel peak RSS | rotel records/s | rotel per core | rotel peak RSS | flowtel / rotel per core | CPU at 10,000 records/s: flowtel / rotel |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
    let mut json_rows = Vec::new();
    let mut variants = String::from(
        "\nWithout `batch`, a request at a time: the persistent queue against the memory queue; and `load_balancing` (after `batch`) over three sinks against one `otlp_grpc` exporter.\n\n| attributes | persistent queue records/s per core | memory queue | persistent / memory | load_balancing to 3 sinks records/s per core | load_balancing / otlp_grpc |\n|---|---|---|---|---|---|\n",
    );
    for Row {
        attributes,
        record_bytes,
        ceiling,
        flowtel,
        rotel,
        flowtel_light,
        rotel_light,
        persistent,
        unbatched,
        balanced,
    } in &rows
    {
        let _ = writeln!(
            variants,
            "| {attributes} | {:.0} | {:.0} | {:.2}× | {:.0} | {:.2}× |",
            per_core(persistent),
            per_core(unbatched),
            per_core(persistent) / per_core(unbatched),
            per_core(balanced),
            per_core(balanced) / per_core(flowtel)
        );
        let ratio = per_core(flowtel) / per_core(rotel);
        let _ = writeln!(
            md,
            "| {attributes} | {record_bytes} B | {:.0} | {:.0} | {:.0} | {:.1} MiB | {:.0} | {:.0} | {:.1} MiB | {:.2}× | {:.1}% / {:.1}% of a core |",
            ceiling.records_per_second,
            flowtel.records_per_second,
            per_core(flowtel),
            flowtel.peak_rss_mib,
            rotel.records_per_second,
            per_core(rotel),
            rotel.peak_rss_mib,
            ratio,
            flowtel_light.cores * 100.0,
            rotel_light.cores * 100.0
        );
        json_rows.push(json!({
            "attributes": attributes,
            "record_bytes": record_bytes,
            "generator_ceiling_records_per_second": ceiling.records_per_second,
            "flowtel": {"records_per_second": flowtel.records_per_second, "cores": flowtel.cores, "records_per_second_per_core": per_core(flowtel), "peak_rss_mib": flowtel.peak_rss_mib},
            "rotel": {"records_per_second": rotel.records_per_second, "cores": rotel.cores, "records_per_second_per_core": per_core(rotel), "peak_rss_mib": rotel.peak_rss_mib},
            "flowtel_over_rotel_per_core": ratio,
            "cpu_share_at_10000_records_per_second": {"flowtel": flowtel_light.cores, "rotel": rotel_light.cores},
            "persistent_queue": {"records_per_second": persistent.records_per_second, "records_per_second_per_core": per_core(persistent), "memory_queue_records_per_second_per_core": per_core(unbatched), "over_memory_queue": per_core(persistent) / per_core(unbatched)},
            "load_balancing_3_sinks": {"records_per_second": balanced.records_per_second, "records_per_second_per_core": per_core(balanced), "over_one_exporter": per_core(balanced) / per_core(flowtel)},
        }));
    }
    md.push_str(&variants);
    md.push_str("\nTargets: ≥ 1,000,000 records/s per core, ≥ 1.5× rotel's records/s per core, ≤ 2% of a core at 10,000 records/s.\n");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("gateway.md"), &md).unwrap();
    std::fs::write(
        out.join("gateway.json"),
        serde_json::to_string_pretty(&json!({"quick": quick, "results": json_rows})).unwrap(),
    )
    .unwrap();
    print!("{md}");
    for Row { attributes, flowtel, rotel, persistent, balanced, .. } in &rows {
        assert!(flowtel.records_per_second > 0.0, "{attributes} attributes: nothing reached the sink through flowtel");
        assert!(persistent.records_per_second > 0.0, "{attributes} attributes: nothing through the persistent queue");
        assert!(balanced.records_per_second > 0.0, "{attributes} attributes: nothing through load_balancing");
        assert!(rotel.records_per_second > 0.0, "{attributes} attributes: nothing reached the sink through rotel");
    }
}
