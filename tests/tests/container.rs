//! Privileged, real kernel, real container: the image `cargo xtask image`
//! builds (from `Containerfile`) runs flowtel under podman with only the
//! capabilities the README names; it attaches, records a flow, a drop and
//! a TCP reset, and exits cleanly when the container is stopped. Needs
//! root, podman and runc (`cargo xtask setup`).

#![allow(clippy::unwrap_used, missing_docs)]

use std::{process::Command, time::Duration};

use flowtel_tests::{flowtel_bin, free_port, http_get, netns::is_root, root, wait_for};

fn podman(args: &[&str]) -> String {
    let output = Command::new("podman").arg("--runtime=runc").args(args).output().unwrap();
    assert!(output.status.success(), "podman {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Removes the test's container and image, however the test ends.
struct Cleanup {
    container: String,
    image: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("podman").args(["rm", "-f", &self.container]).output();
        let _ = Command::new("podman").args(["rmi", "-f", &self.image]).output();
    }
}

#[test]
fn the_image_runs_flowtel_with_only_its_capabilities() {
    if !is_root() {
        eprintln!("skipped: needs root to run a container that loads eBPF programs");
        return;
    }
    let id = std::process::id();
    let cleanup = Cleanup { container: format!("flowtel-test-{id}"), image: format!("localhost/flowtel:test-{id}") };
    let xtask = root().join("target/debug/xtask");
    assert!(xtask.exists(), "{} is built by `cargo xtask test`", xtask.display());
    let built = Command::new(&xtask)
        .args(["image", "--binary"])
        .arg(flowtel_bin())
        .args(["--tag", &cleanup.image])
        .output()
        .unwrap();
    assert!(built.status.success(), "cargo xtask image: {}", String::from_utf8_lossy(&built.stderr));

    let dir = tempfile::tempdir().unwrap();
    let telemetry = free_port();
    let config = format!(
        "receivers:\n  ebpf: {{interfaces: [lo], flush_interval: 500ms}}\nexporters:\n  debug: {{verbosity: normal}}\nservice:\n  telemetry: {{metrics: {{address: \"127.0.0.1:{telemetry}\"}}}}\n  pipelines:\n    logs: {{receivers: [ebpf], exporters: [debug]}}\n"
    );
    std::fs::write(dir.path().join("otel-config.yaml"), config).unwrap();
    let mount = format!("{}:/etc/flowtel/otel-config.yaml:ro", dir.path().join("otel-config.yaml").display());
    podman(&[
        "run",
        "-d",
        "--name",
        &cleanup.container,
        "--network=host",
        "--pid=host",
        "--cap-drop=all",
        "--cap-add=bpf,perfmon,net_admin",
        "--security-opt",
        "seccomp=unconfined",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        "-v",
        "/sys/fs/bpf:/sys/fs/bpf",
        "-v",
        "/sys/kernel/tracing:/sys/kernel/tracing",
        "-v",
        "/sys/kernel/btf:/sys/kernel/btf:ro",
        "-v",
        &mount,
        &cleanup.image,
    ]);
    wait_for(Duration::from_secs(30), "flowtel in the container to be ready", || {
        http_get(telemetry, "/readyz").filter(|(status, _)| *status == 200)
    });

    // A refused connection on loopback: a flow, a NO_SOCKET drop, a reset.
    let closed = free_port();
    assert!(std::net::TcpStream::connect(("127.0.0.1", closed)).is_err());
    let port = format!(".port={closed} ");
    let mut last = String::new();
    let started = std::time::Instant::now();
    let logs = loop {
        let logs = podman(&["logs", &cleanup.container]);
        let seen = |event: &str| logs.lines().any(|line| line.contains(event) && line.contains(&port));
        if seen("network.flow") && seen("network.packet.drop") && seen("network.tcp.reset") {
            break logs;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no flow, drop and reset on port {closed} in:\n{last}");
        last = logs;
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(logs.contains("NO_SOCKET"), "{logs}");

    podman(&["stop", "-t", "10", &cleanup.container]);
    let exit = podman(&["inspect", &cleanup.container, "--format", "{{.State.ExitCode}}"]);
    assert_eq!(exit, "0", "a clean exit on SIGTERM: {}", podman(&["logs", &cleanup.container]));
}
