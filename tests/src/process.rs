//! The programs the tests start, each stopped (and reaped) when dropped.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    time::Duration,
};

use serde_json::Value;

use crate::{flowtel_bin, free_port, http_get, metric_value, python, script, wait_for};

/// `program`, started inside network namespace `netns` when one is given
/// (`ip netns exec` replaces itself with the program, so signals reach it).
fn command_in(netns: Option<&str>, program: impl AsRef<std::ffi::OsStr>) -> Command {
    match netns {
        Some(netns) => {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", netns]).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// Whether something listens on TCP `port` of 127.0.0.1 in `netns` (or here).
fn listening(netns: Option<&str>, port: u16) -> bool {
    match netns {
        None => std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        Some(_) => command_in(netns, "python3")
            .args(["-c", &format!("import socket; socket.create_connection(('127.0.0.1', {port}), 1)")])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success()),
    }
}

/// A child process, sent SIGTERM and reaped on drop.
pub struct Child {
    child: std::process::Child,
    name: String,
    log: PathBuf,
}

impl Child {
    /// Starts `command` with stdout and stderr in `log`.
    pub fn spawn(name: &str, command: &mut Command, log: &Path) -> Child {
        let out = fs::File::create(log).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {name}: {err}"));
        Child { child, name: name.to_owned(), log: log.to_owned() }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the process printed so far.
    pub fn output(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits (up to 30 s) for the exit.
    pub fn stop(&mut self) -> ExitStatus {
        if let Ok(Some(status)) = self.child.try_wait() {
            return status;
        }
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        wait_for(Duration::from_secs(30), &format!("{} to exit", self.name), || self.child.try_wait().ok().flatten())
    }

    /// Kills the process at once (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Panics with the log if the process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited ({status}):\n{}", self.name, self.output());
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- {} output ---\n{}", self.name, self.output());
        }
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// How flowtel is started.
enum Wrapper<'a> {
    None,
    /// Holding only these capabilities.
    Capabilities(&'a str),
    /// With this file as its `/etc/hosts`.
    Hosts(&'a Path),
}

/// A running `flowtel` with its config and the ports it serves.
pub struct Flowtel {
    /// The process.
    pub child: Child,
    /// Where `/metrics`, `/healthz` and `/readyz` are.
    pub metrics_port: u16,
    _dir: tempfile::TempDir,
}

impl Flowtel {
    /// Starts flowtel with `config`, in which `${METRICS_PORT}` is replaced by
    /// a free port for its own telemetry; waits until `/readyz` says ready.
    pub fn start(config: &str) -> Flowtel {
        Self::launch(config, None, &[], Wrapper::None)
    }

    /// [`Flowtel::start`] with extra environment variables.
    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> Flowtel {
        Self::launch(config, None, env, Wrapper::None)
    }

    /// [`Flowtel::start`] as root holding only `capabilities` (setpriv's
    /// names, `bpf,perfmon,net_admin`): every other one dropped from the
    /// effective, inheritable, ambient and bounding sets.
    pub fn start_with_capabilities(config: &str, capabilities: &str) -> Flowtel {
        Self::launch(config, None, &[], Wrapper::Capabilities(capabilities))
    }

    /// [`Flowtel::start`] in a mount namespace of its own where `hosts` is
    /// its `/etc/hosts` (rewrite the file in place to change what names
    /// resolve to). Needs root.
    pub fn start_with_hosts(config: &str, hosts: &Path) -> Flowtel {
        Self::launch(config, None, &[], Wrapper::Hosts(hosts))
    }

    /// Starts flowtel inside network namespace `netns` with `config`; waits
    /// until it says it is running (its telemetry endpoint is inside the
    /// namespace, out of the test's reach).
    pub fn start_in_netns(config: &str, netns: &str) -> Flowtel {
        Self::launch(config, Some(netns), &[], Wrapper::None)
    }

    fn launch(config: &str, netns: Option<&str>, env: &[(&str, &str)], wrapper: Wrapper<'_>) -> Flowtel {
        let dir = tempfile::tempdir().unwrap();
        let metrics_port = free_port();
        let config = config.replace("${METRICS_PORT}", &metrics_port.to_string());
        let path = dir.path().join("otel-config.yaml");
        fs::write(&path, config).unwrap();
        let mut command = match wrapper {
            Wrapper::None => command_in(netns, flowtel_bin()),
            Wrapper::Hosts(hosts) => {
                let mut command = Command::new("unshare");
                command
                    .args([
                        "--mount",
                        "--propagation",
                        "private",
                        "sh",
                        "-c",
                        r#"mount --bind "$0" /etc/hosts && exec "$@""#,
                    ])
                    .arg(hosts)
                    .arg(flowtel_bin());
                command
            }
            Wrapper::Capabilities(capabilities) => {
                let set: String = std::iter::once("-all".to_owned())
                    .chain(capabilities.split(',').map(|cap| format!("+{cap}")))
                    .collect::<Vec<_>>()
                    .join(",");
                let mut command = Command::new("setpriv");
                command
                    .arg(format!("--inh-caps={set}"))
                    .arg(format!("--ambient-caps={set}"))
                    .arg(format!("--bounding-set={set}"))
                    .arg(flowtel_bin());
                command
            }
        };
        command.arg("--config").arg(&path).args(["--shutdown-timeout", "5s"]).envs(env.iter().copied());
        let mut child = Child::spawn("flowtel", &mut command, &dir.path().join("flowtel.log"));
        wait_for(Duration::from_secs(20), "flowtel to be ready", || {
            child.assert_running();
            match netns {
                Some(_) => child.output().contains("flowtel is running").then_some(()),
                None => http_get(metrics_port, "/readyz").filter(|(status, _)| *status == 200).map(|_| ()),
            }
        });
        Flowtel { child, metrics_port, _dir: dir }
    }

    /// flowtel's own metrics, in Prometheus text.
    pub fn metrics(&self) -> String {
        http_get(self.metrics_port, "/metrics").map(|(_, body)| body).unwrap_or_default()
    }

    /// The sum of the series of `name` matching `labels`.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_value(&self.metrics(), name, labels)
    }
}

/// An OTLP/gRPC backend (tests/python/otlp_recorder.py) that writes every
/// request it receives to a file.
pub struct Recorder {
    /// The process.
    pub child: Child,
    /// Its gRPC port.
    pub port: u16,
    out: PathBuf,
}

impl Recorder {
    /// Starts a recorder writing into `dir`.
    pub fn start(dir: &Path) -> Recorder {
        Self::start_with(dir, &[])
    }

    /// Starts a recorder with extra arguments (e.g. its TLS files).
    pub fn start_with(dir: &Path, extra_args: &[&str]) -> Recorder {
        Self::start_on(dir, free_port(), extra_args)
    }

    /// Starts a recorder on `port`.
    pub fn start_on(dir: &Path, port: u16, extra_args: &[&str]) -> Recorder {
        Self::start_at(dir, port, extra_args, None)
    }

    /// Starts a recorder inside network namespace `netns`.
    pub fn start_in_netns(dir: &Path, netns: &str) -> Recorder {
        Self::start_at(dir, free_port(), &[], Some(netns))
    }

    fn start_at(dir: &Path, port: u16, extra_args: &[&str], netns: Option<&str>) -> Recorder {
        let out = dir.join(format!("recorded-{port}.jsonl"));
        let mut child = Child::spawn(
            "otlp recorder",
            command_in(netns, python())
                .arg(script("otlp_recorder.py"))
                .args(["--port", &port.to_string(), "--out"])
                .arg(&out)
                .args(extra_args),
            &dir.join(format!("recorder-{port}.log")),
        );
        wait_for(Duration::from_secs(20), "the recorder to listen", || {
            child.assert_running();
            child.output().contains("ready").then_some(())
        });
        Recorder { child, port, out }
    }

    /// Every recorded request: (signal, OTLP/JSON request). A line the
    /// recorder is still writing (no newline yet) is left for the next read.
    pub fn requests(&self) -> Vec<(String, Value)> {
        fs::read_to_string(&self.out)
            .unwrap_or_default()
            .split_inclusive('\n')
            .filter_map(|line| line.strip_suffix('\n'))
            .map(|line| {
                let value: Value = serde_json::from_str(line).unwrap();
                (value["signal"].as_str().unwrap_or_default().to_owned(), value["request"].clone())
            })
            .collect()
    }
}

/// rotel, the Rust OpenTelemetry collector from PyPI, as an OTLP backend
/// that forwards what it receives to a [`Recorder`].
pub struct Rotel {
    /// The process.
    pub child: Child,
    /// Its OTLP/gRPC port.
    pub grpc_port: u16,
    /// Its OTLP/HTTP port.
    pub http_port: u16,
}

/// The rotel binary shipped inside the `rotel` Python package.
fn rotel_bin() -> PathBuf {
    let out = Command::new(python())
        .args(["-c", "import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), 'rotel-agent'))"])
        .output()
        .unwrap();
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(path.exists(), "rotel is not installed: run `cargo xtask setup`");
    path
}

impl Rotel {
    /// Starts rotel on `grpc_port`, forwarding to the recorder at `forward_port`.
    pub fn start(dir: &Path, grpc_port: u16, forward_port: u16) -> Rotel {
        Self::start_at(dir, grpc_port, forward_port, None)
    }

    /// [`Rotel::start`] inside network namespace `netns`.
    pub fn start_in_netns(dir: &Path, grpc_port: u16, forward_port: u16, netns: &str) -> Rotel {
        Self::start_at(dir, grpc_port, forward_port, Some(netns))
    }

    fn start_at(dir: &Path, grpc_port: u16, forward_port: u16, netns: Option<&str>) -> Rotel {
        let http_port = free_port();
        let mut child = Child::spawn(
            "rotel",
            command_in(netns, rotel_bin()).args([
                "start",
                "--otlp-grpc-endpoint",
                &format!("127.0.0.1:{grpc_port}"),
                "--otlp-http-endpoint",
                &format!("127.0.0.1:{http_port}"),
                "--exporter",
                "otlp",
                "--otlp-exporter-endpoint",
                &format!("http://127.0.0.1:{forward_port}"),
                "--otlp-exporter-protocol",
                "grpc",
                "--batch-timeout",
                "100ms",
            ]),
            &dir.join(format!("rotel-{grpc_port}-{}.log", free_port())),
        );
        wait_for(Duration::from_secs(20), "rotel to listen", || {
            child.assert_running();
            listening(netns, grpc_port).then_some(())
        });
        Rotel { child, grpc_port, http_port }
    }
}
