//! The kernel-side benchmark: iperf3 TCP and small-packet UDP over a veth
//! pair between two namespaces, without flowtel and with it attached
//! (`ebpf` receiver on the sender's veth). Reports, for each load, the
//! throughput kept (a ratio against the baseline measured in the same run,
//! alternating runs to spread the machine's noise), the programs' kernel
//! time per packet from the kernel's BPF stats, flowtel's CPU seconds per
//! million packets, and every event flowtel's own metrics count as lost.
//! Then small HTTP/1.1 requests with a `traceparent`, with the receiver's
//! `trace_context` off and on: what reading the header costs a packet. Then
//! iperf3 TCP without a `filter`, with one matching it and with one that
//! does not, and with `response_latency` off and on: what the in-kernel
//! packet filter and the timing of responses cost a packet.
//!
//! `--quick` runs each load once for a second (used by `cargo xtask test`
//! so the benchmark cannot rot); `--out DIR` writes `report.md` and
//! `report.json` there. Needs root.

#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr, missing_docs)]

use std::{
    fmt::Write as _,
    path::PathBuf,
    process::Command,
    sync::{Arc, atomic::AtomicU64},
    time::Duration,
};

use flowtel_core::schema::event;
use flowtel_tests::{
    Flowtel, cpu_seconds, metric_value,
    netns::{Netns, VethPair, is_root},
    peak_rss_mib,
};
use serde_json::{Value, json};

struct Options {
    quick: bool,
    out: PathBuf,
}

fn options() -> Options {
    let mut options = Options { quick: false, out: flowtel_tests::root().join("target/bench") };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--out" => options.out = PathBuf::from(args.next().expect("--out DIR")),
            other => panic!("unknown argument {other}; use --quick and --out DIR"),
        }
    }
    options
}

#[derive(Clone, Copy)]
enum Load {
    Tcp,
    SmallUdp,
}

impl Load {
    fn name(self) -> &'static str {
        match self {
            Load::Tcp => "iperf3 TCP",
            Load::SmallUdp => "iperf3 UDP, 64-byte datagrams",
        }
    }
}

/// One iperf3 run: (bits per second received, packets sent).
fn iperf(pair: &VethPair, load: Load, seconds: u32) -> (f64, f64) {
    let server = Command::new("ip")
        .args(["netns", "exec", &pair.b.name, "iperf3", "-s", "-1", "-B", VethPair::B_V4])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let seconds = seconds.to_string();
    let mut args = vec!["iperf3", "-c", VethPair::B_V4, "-t", &seconds, "-J"];
    if let Load::SmallUdp = load {
        args.extend(["-u", "-b", "0", "-l", "64"]);
    }
    let output = pair.a.run(&args);
    let _ = server.wait_with_output();
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    match load {
        Load::Tcp => (
            report["end"]["sum_received"]["bits_per_second"].as_f64().unwrap(),
            report["end"]["sum_sent"]["bytes"].as_f64().unwrap() / 1448.0,
        ),
        Load::SmallUdp => (
            report["end"]["sum"]["bits_per_second"].as_f64().unwrap()
                * (1.0 - report["end"]["sum"]["lost_percent"].as_f64().unwrap_or(0.0) / 100.0),
            report["end"]["sum"]["packets"].as_f64().unwrap(),
        ),
    }
}

/// (run_time_ns, run_cnt) summed over flowtel's TC programs.
fn bpf_stats() -> (f64, f64) {
    let output = Command::new("bpftool").args(["prog", "show", "--json"]).output().unwrap();
    let programs: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    programs
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["name"].as_str().is_some_and(|n| n.starts_with("flowtel_tc_")))
        .fold((0.0, 0.0), |(time, count), p| {
            (time + p["run_time_ns"].as_f64().unwrap_or(0.0), count + p["run_cnt"].as_f64().unwrap_or(0.0))
        })
}

/// Everything flowtel's own metrics count as lost on the kernel side.
fn kernel_losses(metrics: &str) -> f64 {
    ["flowtel_ebpf_events_lost_total", "flowtel_ebpf_flows_evicted_total", "flowtel_ebpf_flow_insert_failures_total"]
        .iter()
        .map(|name| metric_value(metrics, name, &[]))
        .sum()
}

/// flowtel's own metrics, fetched from inside its namespace.
fn own_metrics(ns: &Netns, port: u16) -> String {
    ns.http_get(port, "/metrics")
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

struct LoadResult {
    load: Load,
    baseline_bps: f64,
    with_flowtel_bps: f64,
    kernel_ns_per_packet: f64,
    cpu_seconds_per_million_packets: f64,
    packets_seen: f64,
    events_lost: f64,
}

fn measure(load: Load, options: &Options) -> LoadResult {
    let (rounds, seconds) = if options.quick { (1, 1) } else { (3, 5) };
    let pair = VethPair::create("bench");
    let dir = tempfile::tempdir().unwrap();
    let config = flows_config("flush_interval: 1s", &["logs", "metrics"], &dir.path().join("flows.jsonl"));
    let (mut baseline, mut attached) = (Vec::new(), Vec::new());
    let (mut cpu, mut packets, mut lost, mut seen, mut kernel_ns) = (0.0, 0.0, 0.0, 0.0, Vec::new());
    for _ in 0..rounds {
        baseline.push(iperf(&pair, load, seconds).0);
        let mut flowtel = Flowtel::start_in_netns(&config, &pair.a.name);
        let pid = flowtel.child.pid();
        let (time_before, count_before) = bpf_stats();
        let cpu_before = cpu_seconds(pid);
        let (bps, sent) = iperf(&pair, load, seconds);
        std::thread::sleep(Duration::from_millis(1500));
        let (time_after, count_after) = bpf_stats();
        cpu += cpu_seconds(pid) - cpu_before;
        packets += sent;
        attached.push(bps);
        if count_after > count_before {
            kernel_ns.push((time_after - time_before) / (count_after - count_before));
        }
        let metrics = own_metrics(&pair.a, flowtel.metrics_port);
        lost += kernel_losses(&metrics) + metric_value(&metrics, "flowtel_receiver_refused_items_total", &[]);
        seen += metric_value(&metrics, "flowtel_ebpf_packets_total", &[]);
        flowtel.child.stop();
    }
    LoadResult {
        load,
        baseline_bps: median(baseline),
        with_flowtel_bps: median(attached),
        kernel_ns_per_packet: if kernel_ns.is_empty() { f64::NAN } else { median(kernel_ns) },
        cpu_seconds_per_million_packets: cpu / (packets / 1e6),
        packets_seen: seen,
        events_lost: lost,
    }
}

/// Kernel ns a packet of the TC programs under many small HTTP/1.1
/// requests carrying a `traceparent`, with `trace_context` off and on.
struct TraceContextCost {
    requests_per_second: [f64; 2],
    kernel_ns_per_packet: [f64; 2],
    contexts_read: f64,
}

/// One round of `traffic` (which reports its rate) with flowtel on a's veth
/// under `config`: the rate, the TC programs' kernel ns a packet, and
/// flowtel's own metrics at the end.
fn attached_round(pair: &VethPair, config: &str, traffic: impl FnOnce() -> f64) -> (f64, Option<f64>, String) {
    let mut flowtel = Flowtel::start_in_netns(config, &pair.a.name);
    let (time_before, count_before) = bpf_stats();
    let rate = traffic();
    let (time_after, count_after) = bpf_stats();
    let metrics = own_metrics(&pair.a, flowtel.metrics_port);
    flowtel.child.stop();
    let ns = (count_after > count_before).then(|| (time_after - time_before) / (count_after - count_before));
    (rate, ns, metrics)
}

/// The medians of each variant's rounds.
fn medians<const N: usize>(values: [Vec<f64>; N]) -> [f64; N] {
    values.map(|v| if v.is_empty() { f64::NAN } else { median(v) })
}

/// Small kept-alive HTTP/1.1 requests from a to b, alternating rounds with
/// flowtel's `trace_context` off and on.
fn trace_context_cost(options: &Options) -> TraceContextCost {
    const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let (rounds, seconds) = if options.quick { (1, 1) } else { (3, 5) };
    let pair = VethPair::create("bench");
    let mut server = pair.b.script("http_load.py", &["server", VethPair::B_V4, "8080"]);
    std::thread::sleep(Duration::from_millis(500));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flows.jsonl");
    let config = |enabled: bool| {
        flows_config(&format!("flush_interval: 1s, trace_context: {{enabled: {enabled}}}"), &["logs"], &file)
    };
    let (mut rates, mut kernel_ns) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    let mut contexts_read = 0.0;
    for _ in 0..rounds {
        for (index, enabled) in [false, true].into_iter().enumerate() {
            let (rate, ns, metrics) = attached_round(&pair, &config(enabled), || {
                let args = ["client", VethPair::B_V4, "8080", "4", &seconds.to_string(), TRACEPARENT];
                let output = pair.a.script("http_load.py", &args).wait_with_output().unwrap();
                String::from_utf8_lossy(&output.stdout).trim().parse::<f64>().unwrap() / f64::from(seconds)
            });
            rates[index].push(rate);
            kernel_ns[index].extend(ns);
            if enabled {
                contexts_read +=
                    metric_value(&metrics, "flowtel_ebpf_trace_context_requests_total", &[("result", "read")]);
            }
        }
    }
    let _ = server.kill();
    let _ = server.wait();
    TraceContextCost { requests_per_second: medians(rates), kernel_ns_per_packet: medians(kernel_ns), contexts_read }
}

/// iperf3 TCP with flowtel under each variant of its receiver settings,
/// in alternating rounds: throughput and kernel ns a packet (medians), and
/// what flowtel's metrics said at the end of each round.
struct VariantCost {
    labels: Vec<&'static str>,
    bits_per_second: Vec<f64>,
    kernel_ns_per_packet: Vec<f64>,
    metrics: Vec<String>,
}

fn variants_cost(options: &Options, variants: &[(&'static str, String)]) -> VariantCost {
    let (rounds, seconds) = if options.quick { (1, 1) } else { (3, 5) };
    let pair = VethPair::create("bench");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flows.jsonl");
    let (mut rates, mut kernel_ns) = (vec![Vec::new(); variants.len()], vec![Vec::new(); variants.len()]);
    let mut metrics = Vec::new();
    for _ in 0..rounds {
        for (index, (_, receiver)) in variants.iter().enumerate() {
            let config = flows_config(&format!("flush_interval: 1s, {receiver}"), &["logs"], &file);
            let (rate, ns, text) = attached_round(&pair, &config, || iperf(&pair, Load::Tcp, seconds).0);
            rates[index].push(rate);
            kernel_ns[index].extend(ns);
            metrics.push(text);
        }
    }
    let middle = |values: Vec<Vec<f64>>| -> Vec<f64> {
        values.into_iter().map(|v| if v.is_empty() { f64::NAN } else { median(v) }).collect()
    };
    VariantCost {
        labels: variants.iter().map(|(label, _)| *label).collect(),
        bits_per_second: middle(rates),
        kernel_ns_per_packet: middle(kernel_ns),
        metrics,
    }
}

impl VariantCost {
    /// A markdown table against the first variant, and its JSON.
    fn report(&self, title: &str) -> (String, Value) {
        let mut md = format!(
            "| iperf3 TCP, {title} | Gbit/s | vs {first} | kernel ns/packet | vs {first} |\n|---|---|---|---|---|\n",
            first = self.labels[0]
        );
        let mut json = Vec::new();
        for (index, label) in self.labels.iter().enumerate() {
            let _ = writeln!(
                md,
                "| {label} | {:.2} | {:.3}× | {:.0} | {:.2}× |",
                self.bits_per_second[index] / 1e9,
                self.bits_per_second[index] / self.bits_per_second[0],
                self.kernel_ns_per_packet[index],
                self.kernel_ns_per_packet[index] / self.kernel_ns_per_packet[0],
            );
            json.push(json!({
                "variant": label,
                "bits_per_second": self.bits_per_second[index],
                "kernel_ns_per_packet": self.kernel_ns_per_packet[index],
            }));
        }
        (md, Value::Array(json))
    }

    /// A metric of flowtel's, summed over every round.
    fn metric_sum(&self, name: &str) -> f64 {
        self.metrics.iter().map(|text| metric_value(text, name, &[])).sum()
    }
}

/// The flow program alone, by the kernel's own clock: `BPF_PROG_TEST_RUN`'s
/// mean over many runs on one frame (so no iperf3, no scheduler, little
/// noise), for a TCP data segment of a flow already in the table and a
/// 64-byte UDP datagram, with each setting, against a TC program that does
/// nothing, in the same run.
struct ProgramCost {
    noop: [f64; 2],
    variants: Vec<(&'static str, [f64; 2])>,
}

fn program_cost(options: &Options) -> ProgramCost {
    use flowtel_receiver::ebpf::{ProbeSettings, Probes, filter::CompiledFilter};
    use flowtel_tests::frames::ethernet_ipv4;
    let (repeat, rounds) = if options.quick { (10_000, 1) } else { (1_000_000, 5) };
    let mut tcp = vec![0x9c, 0x40, 0x14, 0x51, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0];
    tcp.extend(std::iter::repeat_n(0x61u8, 1448));
    let mut udp = vec![0x9c, 0x41, 0x00, 0x35, 0, 30, 0, 0];
    udp.extend(std::iter::repeat_n(0x62u8, 22));
    let (a, b) = ([10, 1, 0, 1], [10, 1, 0, 2]);
    let frames = [ethernet_ipv4(6, a, b, &tcp), ethernet_ipv4(17, a, b, &udp)];
    let all_on = || ProbeSettings {
        trace_context_connections: 16_384,
        response_latency_servers: 1024,
        ..ProbeSettings::default()
    };
    let filter = |expression: &str| Some(CompiledFilter::compile(expression).unwrap());
    let variants: Vec<(&'static str, ProbeSettings)> = vec![
        ("every part on (the defaults)", all_on()),
        ("response_latency off", ProbeSettings { response_latency_servers: 0, ..all_on() }),
        ("trace_context off", ProbeSettings { trace_context_connections: 0, ..all_on() }),
        ("response_latency and trace_context off", ProbeSettings::default()),
        ("filter \"tcp or udp\" (matches)", ProbeSettings { filter: filter("tcp or udp"), ..all_on() }),
        ("filter \"icmp\" (matches neither)", ProbeSettings { filter: filter("icmp"), ..all_on() }),
    ];
    let time = |probes: &mut Probes, frame: &[u8], noop: bool| -> f64 {
        let runs: Vec<f64> =
            (0..rounds).map(|_| probes.time_ingress(frame, repeat, noop).unwrap().as_nanos() as f64).collect();
        median(runs)
    };
    let mut noop_probes = Probes::load(&ProbeSettings::default()).unwrap();
    let noop = [time(&mut noop_probes, &frames[0], true), time(&mut noop_probes, &frames[1], true)];
    let variants = variants
        .into_iter()
        .map(|(label, settings)| {
            let mut probes = Probes::load(&settings).unwrap();
            if settings.trace_context_connections > 0 {
                probes.enable_trace_context().unwrap();
            }
            (label, [time(&mut probes, &frames[0], false), time(&mut probes, &frames[1], false)])
        })
        .collect();
    ProgramCost { noop, variants }
}

impl ProgramCost {
    fn report(&self) -> (String, Value) {
        let mut md = String::from(
            "Flow program alone (BPF_PROG_TEST_RUN, mean of many runs on one frame): ns a packet, and above the no-op TC program.\n\n| setting | TCP data segment | above no-op | 64-byte UDP | above no-op |\n|---|---|---|---|---|\n",
        );
        let _ = writeln!(md, "| no-op TC program | {:.0} | – | {:.0} | – |", self.noop[0], self.noop[1]);
        let mut json = vec![json!({"variant": "noop", "tcp_ns": self.noop[0], "udp_ns": self.noop[1]})];
        for (label, [tcp, udp]) in &self.variants {
            let _ = writeln!(
                md,
                "| {label} | {tcp:.0} | {:.0} | {udp:.0} | {:.0} |",
                tcp - self.noop[0],
                udp - self.noop[1]
            );
            json.push(json!({"variant": label, "tcp_ns": tcp, "udp_ns": udp}));
        }
        (md, Value::Array(json))
    }
}

/// flowtel on veth0 with the `ebpf` receiver settings `receiver`, what it
/// makes of each of `signals` written to `file`.
fn flows_config(receiver: &str, signals: &[&str], file: &std::path::Path) -> String {
    let pipelines: String =
        signals.iter().map(|signal| format!("    {signal}: {{receivers: [ebpf], exporters: [file]}}\n")).collect();
    format!(
        r#"
receivers:
  ebpf: {{interfaces: [veth0], {receiver}}}
exporters:
  file: {{path: "{}"}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:${{METRICS_PORT}}"}}}}
  pipelines:
{pipelines}"#,
        file.display()
    )
}

struct ManyFlows {
    flows: usize,
    peak_rss_mib: f64,
    cpu_seconds_per_million_new_flows: f64,
    records: u64,
    events_lost: f64,
}

/// 10,000 active flows (one UDP datagram from each of 10,000 source ports):
/// flowtel's peak memory, and its CPU per million new flows.
fn many_flows(options: &Options) -> ManyFlows {
    let flows = if options.quick { 1000 } else { 10_000 };
    let pair = VethPair::create("many");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flows.jsonl");
    let config = flows_config("flush_interval: 2s, drops: {enabled: false}, tcp: {enabled: false}", &["logs"], &file);
    let mut flowtel = Flowtel::start_in_netns(&config, &pair.a.name);
    let pid = flowtel.child.pid();
    let cpu_before = cpu_seconds(pid);
    let code = format!(
        "import socket\nfor p in range(20000, 20000 + {flows}):\n  s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n  \
         s.bind(('{}',p)); s.sendto(b'x',('{}',9)); s.close()",
        VethPair::A_V4,
        VethPair::B_V4
    );
    pair.a.run(&["python3", "-c", &code]);
    std::thread::sleep(Duration::from_secs(5));
    let cpu = cpu_seconds(pid) - cpu_before;
    let rss = peak_rss_mib(pid);
    let metrics = own_metrics(&pair.a, flowtel.metrics_port);
    let lost = kernel_losses(&metrics);
    flowtel.child.stop();
    let records = std::fs::read_to_string(&file).unwrap_or_default().matches(event::FLOW).count() as u64;
    ManyFlows {
        flows,
        peak_rss_mib: rss,
        cpu_seconds_per_million_new_flows: cpu / (flows as f64 / 1e6),
        records,
        events_lost: lost,
    }
}

/// Events per second through the flow event ring buffer, filled by a
/// tracepoint program (one event per `getpid(2)`, called in a tight loop on
/// another thread): (produced/s, drained/s, lost).
struct RingDrain {
    produced: f64,
    drained: f64,
    lost: f64,
}

/// Calls getpid(2) (the raw syscall, so every call reaches the kernel)
/// until `stop`; returns how many calls were made.
fn fill(stop: &std::sync::atomic::AtomicBool) -> u64 {
    let mut calls = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        for _ in 0..1000 {
            // SAFETY: getpid has no preconditions.
            unsafe { libc::syscall(libc::SYS_getpid) };
        }
        calls += 1000;
    }
    calls
}

/// Runs [`fill`] on its own thread for `seconds`; returns the calls made.
fn fill_for(seconds: f64) -> u64 {
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let filler = scope.spawn(|| fill(&stop));
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        filler.join().unwrap()
    })
}

fn ring_lost(probes: &flowtel_receiver::ebpf::Probes) -> f64 {
    probes.counters().map_or(0.0, |c| c[flowtel_ebpf_common::Counter::RingBufferFull as usize] as f64)
}

/// The ceiling: a minimal reader, woken by epoll like flowtel's, that only
/// counts what it takes off the ring (no decoding, no queue).
fn ring_drain_minimal(seconds: f64) -> RingDrain {
    use std::sync::atomic::{AtomicBool, Ordering};
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let mut probes = flowtel_receiver::ebpf::Probes::load(&flowtel_receiver::ebpf::ProbeSettings::default()).unwrap();
    let map = probes.ebpf_mut().take_map(flowtel_ebpf_common::FLOW_EVENTS_RING).unwrap();
    let ring = aya::maps::RingBuf::try_from(map).unwrap();
    let drained = Arc::new(AtomicU64::new(0));
    let stop_reader = Arc::new(AtomicBool::new(false));
    let reader = {
        let (drained, stop_reader) = (drained.clone(), stop_reader.clone());
        runtime.spawn(async move {
            // SAFETY: the ring buffer owns its fd for as long as the AsyncFd owns it.
            let mut fd =
                unsafe { tokio::io::unix::AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
                    .unwrap();
            while !stop_reader.load(Ordering::Relaxed) {
                let Ok(Ok(mut guard)) = tokio::time::timeout(Duration::from_millis(100), fd.readable_mut()).await
                else {
                    continue;
                };
                let ring = guard.get_inner_mut();
                let mut count = 0;
                while ring.next().is_some() {
                    count += 1;
                }
                drained.fetch_add(count, Ordering::Relaxed);
                guard.clear_ready();
            }
        })
    };
    probes.attach_ring_fill().unwrap();
    let calls = fill_for(seconds);
    std::thread::sleep(Duration::from_millis(200));
    stop_reader.store(true, Ordering::Relaxed);
    let _ = runtime.block_on(reader);
    RingDrain {
        produced: calls as f64 / seconds,
        drained: drained.load(Ordering::Relaxed) as f64 / seconds,
        lost: ring_lost(&probes),
    }
}

/// flowtel's own reader: epoll-driven, decoding the events and handing them
/// to the flow table's queue in batches, as the receiver does.
fn ring_drain_flowtel(seconds: f64) -> RingDrain {
    use std::sync::atomic::Ordering;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let mut probes = flowtel_receiver::ebpf::Probes::load(&flowtel_receiver::ebpf::ProbeSettings::default()).unwrap();
    let registry = flowtel_core::self_telemetry::MetricsRegistry::new();
    let loss = flowtel_receiver::ebpf::EventLoss {
        perf_buffer_full: registry.counter("perf", "", &[]),
        malformed: registry.counter("malformed", "", &[]),
    };
    let (sender, mut events) = tokio::sync::mpsc::channel(16_384 / flowtel_receiver::ebpf::kernel::events::EVENT_BATCH);
    let stop_readers = tokio_util::sync::CancellationToken::new();
    let _readers = {
        let _guard = runtime.enter();
        flowtel_receiver::ebpf::start_event_readers(
            probes.ebpf_mut(),
            flowtel_receiver::ebpf::FLOW_STREAM,
            flowtel_receiver::ebpf::Transport::RingBuffer,
            flowtel_receiver::ebpf::decode_event,
            sender,
            loss.clone(),
            stop_readers.clone(),
        )
        .unwrap()
    };
    let drained = Arc::new(AtomicU64::new(0));
    let counter = drained.clone();
    runtime.spawn(async move {
        while let Some(batch) = events.recv().await {
            counter.fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
    });
    probes.attach_ring_fill().unwrap();
    let calls = fill_for(seconds);
    std::thread::sleep(Duration::from_millis(200));
    stop_readers.cancel();
    let lost = ring_lost(&probes) + loss.malformed.get() as f64;
    RingDrain { produced: calls as f64 / seconds, drained: drained.load(Ordering::Relaxed) as f64 / seconds, lost }
}

fn main() {
    let options = options();
    assert!(is_root(), "the kernel benchmark needs root");
    // The kernel's per-program run time and count.
    let _ = Command::new("sysctl").args(["-qw", "kernel.bpf_stats_enabled=1"]).status();
    let results: Vec<LoadResult> =
        [Load::Tcp, Load::SmallUdp].into_iter().map(|load| measure(load, &options)).collect();
    let many = many_flows(&options);
    let traced = trace_context_cost(&options);
    let filtered = variants_cost(
        &options,
        &[
            ("no filter", String::new()),
            ("tcp port 5201 and net 10.0.0.0/8", "filter: \"tcp port 5201 and net 10.0.0.0/8\"".into()),
            ("udp port 53 or icmp (matches nothing)", "filter: \"udp port 53 or icmp\"".into()),
        ],
    );
    let timed = variants_cost(
        &options,
        &[
            ("response_latency off", "response_latency: {enabled: false}".into()),
            ("response_latency on", "response_latency: {enabled: true}".into()),
        ],
    );
    let program = program_cost(&options);
    let ring_seconds = if options.quick { 0.5 } else { 3.0 };
    let ring = [
        ("minimal reader (ceiling)", ring_drain_minimal(ring_seconds)),
        ("flowtel's reader", ring_drain_flowtel(ring_seconds)),
    ];

    let mut md = String::from("# flowtel kernel-side benchmark\n\n");
    let _ = writeln!(
        md,
        "Machine: {} cores, kernel {}. Each figure is the median of alternating runs without and with flowtel, in the same run{}.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        if options.quick { " (--quick: one short round, not a measurement)" } else { "" }
    );
    md.push_str("| load | baseline | with flowtel | kept | kernel ns/packet | flowtel CPU ms per 1M packets | events lost |\n|---|---|---|---|---|---|---|\n");
    let mut json_results = Vec::new();
    for r in &results {
        let kept = r.with_flowtel_bps / r.baseline_bps;
        let _ = writeln!(
            md,
            "| {} | {:.2} Gbit/s | {:.2} Gbit/s | {:.1}% | {:.0} | {:.1} | {} |",
            r.load.name(),
            r.baseline_bps / 1e9,
            r.with_flowtel_bps / 1e9,
            kept * 100.0,
            r.kernel_ns_per_packet,
            r.cpu_seconds_per_million_packets * 1000.0,
            r.events_lost
        );
        json_results.push(json!({
            "load": r.load.name(),
            "baseline_bits_per_second": r.baseline_bps,
            "with_flowtel_bits_per_second": r.with_flowtel_bps,
            "throughput_kept_ratio": kept,
            "kernel_ns_per_packet": r.kernel_ns_per_packet,
            "flowtel_cpu_seconds_per_million_packets": r.cpu_seconds_per_million_packets,
            "packets_seen_by_programs": r.packets_seen,
            "events_lost": r.events_lost,
        }));
    }
    let _ = writeln!(
        md,
        "\n{} active flows: flowtel peak RSS {:.1} MiB, {:.1} CPU seconds per million new flows, {} flow records written, {} events lost.\n",
        many.flows, many.peak_rss_mib, many.cpu_seconds_per_million_new_flows, many.records, many.events_lost
    );
    let _ = writeln!(
        md,
        "Small HTTP/1.1 requests with a traceparent over 4 kept-alive connections: kernel ns/packet {:.0} with trace_context off, {:.0} on ({:.2}×); {:.0} and {:.0} requests/s; {} contexts read.\n",
        traced.kernel_ns_per_packet[0],
        traced.kernel_ns_per_packet[1],
        traced.kernel_ns_per_packet[1] / traced.kernel_ns_per_packet[0],
        traced.requests_per_second[0],
        traced.requests_per_second[1],
        traced.contexts_read
    );
    let (program_md, program_json) = program.report();
    md.push_str(&program_md);
    md.push('\n');
    let (filter_md, filter_json) = filtered.report("receiver filter");
    let (timed_md, timed_json) = timed.report("request/response latency");
    md.push_str(&filter_md);
    md.push('\n');
    md.push_str(&timed_md);
    md.push('\n');
    md.push_str("| ring buffer reader | events produced/s | events drained/s | lost |\n|---|---|---|---|\n");
    for (name, r) in &ring {
        let _ = writeln!(md, "| {name} | {:.0} | {:.0} | {} |", r.produced, r.drained, r.lost);
    }
    md.push_str("\nTargets: ≥ 99% of TCP throughput kept, ≥ 95% of the small-packet rate kept, 0 events lost, ≤ 40 MB RSS at 10,000 active flows.\n");
    std::fs::create_dir_all(&options.out).unwrap();
    std::fs::write(options.out.join("kernel.md"), &md).unwrap();
    std::fs::write(
        options.out.join("kernel.json"),
        serde_json::to_string_pretty(&json!({
            "quick": options.quick,
            "results": json_results,
            "ring_buffer": ring.iter().map(|(name, r)| json!({"reader": name, "produced_per_second": r.produced, "drained_per_second": r.drained, "lost": r.lost})).collect::<Vec<_>>(),
            "trace_context": {
                "kernel_ns_per_packet_off": traced.kernel_ns_per_packet[0],
                "kernel_ns_per_packet_on": traced.kernel_ns_per_packet[1],
                "requests_per_second_off": traced.requests_per_second[0],
                "requests_per_second_on": traced.requests_per_second[1],
                "contexts_read": traced.contexts_read,
            },
            "program": program_json,
            "filter": filter_json,
            "response_latency": timed_json,
            "active_flows": {
                "flows": many.flows,
                "peak_rss_mib": many.peak_rss_mib,
                "cpu_seconds_per_million_new_flows": many.cpu_seconds_per_million_new_flows,
                "flow_records": many.records,
                "events_lost": many.events_lost,
            },
        }))
        .unwrap(),
    )
    .unwrap();
    print!("{md}");
    for r in &results {
        assert!(r.packets_seen > 0.0, "{}: the programs saw no packets", r.load.name());
    }
    assert!(many.records >= many.flows as u64, "{} flows gave only {} records", many.flows, many.records);
    assert!(traced.contexts_read > 0.0, "trace_context read no traceparent header");
    assert!(
        filtered.metric_sum("flowtel_ebpf_packets_filtered_out_total") > 0.0,
        "the filter that matches nothing filtered out no packet"
    );
}
