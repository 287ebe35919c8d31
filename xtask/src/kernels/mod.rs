//! `cargo xtask test --kernels`: the privileged kernel tests on older
//! kernels, each booted under qemu.
//!
//! Debian's own kernel packages are fetched once per machine (into
//! `~/.cache/flowtel/kernels`, with an apt configuration of their own, so
//! the machine's sources are left alone). A guest boots one of them with a
//! small initramfs (busybox and the modules that mount 9p), sees the host's
//! root read-only over 9p where its own directories would be, and runs the
//! test binaries built on the host; `target/kernels/<series>/` is shared
//! writable for the script, the results and the console's log.

use std::{
    fs,
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{root, run, setup};

/// A kernel series the suite runs on, as Debian packages it.
struct Kernel {
    /// `5.10`, `6.1`, `6.12`.
    series: &'static str,
    /// Package names are `prefix`, a number (Debian's ABI or patch level),
    /// `suffix`; the highest number is taken.
    prefix: &'static str,
    suffix: &'static str,
    /// What runs differently there than on the newest kernels.
    fallbacks: &'static str,
    /// Tests not run there, and why.
    not_run: &'static [(&'static str, &'static str)],
}

/// Tests that need `bpf_loop` (5.17+); without it flowtel refuses their
/// settings at startup, which `kernel_reach` checks.
const NEEDS_BPF_LOOP: &[(&str, &str)] = &[
    ("packet_filter", "pcap filters need bpf_loop (5.17+); kernel_reach checks the startup error"),
    ("trace_context", "reading traceparent needs bpf_loop (5.17+); kernel_reach checks it is reported off"),
    ("journeys", "its journeys follow packets a filter chooses, and filters need bpf_loop (5.17+)"),
];

const KERNELS: [Kernel; 3] = [
    Kernel {
        series: "5.10",
        prefix: "linux-image-5.10.0-",
        suffix: "-amd64",
        fallbacks: "clsact (no TCX), kfree_skb without a reason, no bpf_loop",
        not_run: NEEDS_BPF_LOOP,
    },
    Kernel {
        series: "6.1",
        prefix: "linux-image-6.1.0-",
        suffix: "-amd64-unsigned",
        fallbacks: "clsact (no TCX)",
        not_run: &[],
    },
    Kernel {
        series: "6.12",
        prefix: "linux-image-6.12.",
        suffix: "+deb12-amd64-unsigned",
        fallbacks: "none beyond the host's (TCX, reasons, BTF tracepoints)",
        not_run: &[(
            "trace_context",
            "its verifier takes what 6.18's does; run on 6.1, the oldest with bpf_loop (3-4 minutes emulated)",
        )],
    },
];

/// The test binaries of `tests/` run in every guest, with their arguments.
const SUITE: &[(&str, &[&str])] = &[
    ("kernel_reach", &[]),
    ("parser", &[]),
    ("packet_filter", &["--exact", "the_kernel_decides_as_libpcap_on_every_frame"]),
    ("trace_context", &[]),
    ("hubble", &["--exact", "hubble_serves_real_kernel_flows_and_drops"]),
    ("netfilter_trace", &[]),
    ("conntrack_nat", &[]),
    ("journeys", &[]),
];

/// How much slower than the host the tests' waits are allowed to be:
/// qemu emulates the guest's CPU (KVM cannot run it here).
const TIME_SCALE: u32 = 10;

/// A guest that has not powered off by then is stopped and fails.
const GUEST_TIMEOUT: Duration = Duration::from_secs(12 * 60);

/// A test binary still running after this long in a guest is stopped and
/// fails (`timed out`), so the others still run and the run stays bounded.
const TEST_TIMEOUT_SECONDS: u32 = 480;

/// Debian's archives the kernels come from: bookworm's 6.1 and 6.12, and
/// bullseye's 5.10 (in its security archive).
const APT_SOURCES: &str = "\
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-updates main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bookworm-security main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bullseye-security main
";

/// The guest's first process.
const INIT: &str = include_str!("init.sh");

/// Modules the guest needs before it can mount the host's root.
const BOOT_MODULES: &[&str] = &["9p", "9pnet_virtio", "virtio_pci", "virtio_rng"];

/// What one guest's run came to.
struct Outcome {
    kernel: &'static Kernel,
    release: String,
    passed: Vec<String>,
    failed: Vec<String>,
}

/// Boots each kernel of `series` (all when empty) and runs the suite in it;
/// fails naming each kernel and test that failed.
pub fn test(series: &[String]) -> anyhow::Result<()> {
    let chosen: Vec<&Kernel> =
        KERNELS.iter().filter(|k| series.is_empty() || series.iter().any(|s| s == k.series)).collect();
    if chosen.is_empty() {
        let known: Vec<&str> = KERNELS.iter().map(|k| k.series).collect();
        bail!("no kernel {}; there are: {}", series.join(", "), known.join(", "));
    }
    let binaries = test_binaries()?;
    let mut outcomes = Vec::new();
    for kernel in chosen {
        let outcome = fetch(kernel).and_then(|fetched| boot(kernel, &fetched, &binaries));
        match outcome {
            Ok(outcome) => outcomes.push(outcome),
            Err(err) => outcomes.push(Outcome {
                kernel,
                release: String::new(),
                passed: Vec::new(),
                failed: vec![format!("the guest: {err:#}")],
            }),
        }
    }
    let report = report(&outcomes);
    println!("{report}");
    let dir = root().join("target/kernels");
    fs::create_dir_all(&dir)?;
    fs::write(dir.join("report.md"), &report)?;
    let failures: Vec<String> = outcomes
        .iter()
        .flat_map(|o| o.failed.iter().map(move |test| format!("{} ({}): {test}", o.kernel.series, o.release)))
        .collect();
    if !failures.is_empty() {
        bail!("kernel tests failed:\n  {}", failures.join("\n  "));
    }
    Ok(())
}

/// The report: per kernel, what passed, failed and was not run.
fn report(outcomes: &[Outcome]) -> String {
    let mut text =
        String::from("| Kernel | Fallbacks exercised | Passed | Failed | Not run |\n|---|---|---|---|---|\n");
    for outcome in outcomes {
        let none = |list: &[String]| if list.is_empty() { "—".to_owned() } else { list.join("; ") };
        let not_run: Vec<String> = outcome.kernel.not_run.iter().map(|(test, why)| format!("{test}: {why}")).collect();
        text.push_str(&format!(
            "| {} ({}) | {} | {} | {} | {} |\n",
            outcome.kernel.series,
            outcome.release,
            outcome.kernel.fallbacks,
            none(&outcome.passed),
            none(&outcome.failed),
            none(&not_run),
        ));
    }
    text
}

/// The test binaries of the `tests` package, built: name → path.
fn test_binaries() -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut command = crate::cargo();
    command.args(["test", "--package", "flowtel-tests", "--no-run"]).current_dir(root());
    for (name, _) in SUITE {
        command.args(["--test", name]);
    }
    let output = command.stderr(Stdio::piped()).output().context("cannot run cargo test --no-run")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("building the test binaries failed:\n{stderr}");
    }
    // `  Executable tests/parser.rs (target/debug/deps/parser-0123abcd)`
    let found: Vec<(String, PathBuf)> = stderr
        .lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("Executable tests/")?;
            let (file, path) = rest.split_once(" (")?;
            Some((file.strip_suffix(".rs")?.to_owned(), root().join(path.strip_suffix(')')?)))
        })
        .collect();
    for (name, _) in SUITE {
        if !found.iter().any(|(found, _)| found == name) {
            bail!("cargo built no test binary `{name}`:\n{stderr}");
        }
    }
    Ok(found)
}

/// A kernel ready to boot.
struct Fetched {
    /// `uname -r` of the kernel.
    release: String,
    vmlinuz: PathBuf,
    /// Holds `lib/modules/<release>`, the kernel's modules (depmod run).
    modules_root: PathBuf,
}

fn cache() -> PathBuf {
    setup::home().join(".cache/flowtel/kernels")
}

/// The kernel of `kernel`'s series, from the cache or fetched into it.
fn fetch(kernel: &Kernel) -> anyhow::Result<Fetched> {
    let dir = cache().join(kernel.series);
    let fetched = |release: String| Fetched { vmlinuz: dir.join("vmlinuz"), modules_root: dir.join("root"), release };
    if let Ok(release) = fs::read_to_string(dir.join("ready")) {
        return Ok(fetched(release.trim().to_owned()));
    }
    println!("kernels: fetching Debian's {} kernel (once per machine)", kernel.series);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    let package = newest_package(kernel)?;
    let download = dir.join("download");
    fs::create_dir_all(&download)?;
    run(apt("apt-get").args(["download", "-q", &package]).current_dir(&download))?;
    let deb = fs::read_dir(&download)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .with_context(|| format!("apt-get downloaded no {package}"))?;
    let unpacked = dir.join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))?;
    fs::remove_dir_all(&download)?;
    let release = fs::read_dir(unpacked.join("lib/modules"))?
        .filter_map(Result::ok)
        .find_map(|e| e.file_name().into_string().ok())
        .with_context(|| format!("{package} holds no modules"))?;
    fs::rename(unpacked.join(format!("boot/vmlinuz-{release}")), dir.join("vmlinuz"))?;
    run(Command::new("depmod").arg("-b").arg(&unpacked).arg(&release))?;
    fs::write(dir.join("ready"), &release)?;
    Ok(fetched(release))
}

/// `apt-get` or `apt-cache` with the kernels' own sources and lists.
fn apt(program: &str) -> Command {
    let apt = cache().join("apt");
    let mut command = Command::new(program);
    for (option, path) in [
        ("Dir::Etc::SourceList", apt.join("sources.list")),
        ("Dir::Etc::SourceParts", PathBuf::from("/dev/null")),
        ("Dir::State::Lists", apt.join("lists")),
        ("Dir::Cache", apt.join("cache")),
    ] {
        command.arg("-o").arg(format!("{option}={}", path.display()));
    }
    command
}

/// The newest package of `kernel`'s series in Debian's archives.
fn newest_package(kernel: &Kernel) -> anyhow::Result<String> {
    let apt_dir = cache().join("apt");
    fs::create_dir_all(apt_dir.join("lists/partial"))?;
    fs::create_dir_all(apt_dir.join("cache/archives/partial"))?;
    fs::write(apt_dir.join("sources.list"), APT_SOURCES)?;
    run(apt("apt-get").args(["update", "-q"]))?;
    let output = apt("apt-cache").args(["pkgnames", kernel.prefix]).output()?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|name| {
            let number = name.strip_prefix(kernel.prefix)?.strip_suffix(kernel.suffix)?;
            Some((number.parse::<u32>().ok()?, name.to_owned()))
        })
        .max()
        .map(|(_, name)| name)
        .with_context(|| format!("Debian's archives have no {}<n>{} package", kernel.prefix, kernel.suffix))
}

/// Writes the guest's initramfs: busybox, the modules that mount 9p (in
/// the order modprobe gives, decompressed for busybox's insmod), the
/// helper the kernel runs to load other modules, and `/init`.
fn initramfs(modules_root: &Path, release: &str, out: &Path) -> anyhow::Result<()> {
    let staging = tempfile::tempdir()?;
    let at = |path: &str| staging.path().join(path);
    // The mount points of the guest's own; init adds the host's directories.
    for dir in ["guest/modules", "proc", "sys", "dev", "host", "out", "run"] {
        fs::create_dir_all(at(dir))?;
    }
    // The host's layout (merged /usr), so its programs find their libraries.
    for link in ["bin", "lib", "lib64", "sbin"] {
        std::os::unix::fs::symlink(format!("usr/{link}"), at(link))?;
    }
    fs::copy("/bin/busybox", at("guest/busybox"))?;
    let output = Command::new("modprobe")
        .arg("-d")
        .arg(modules_root)
        .args(["-S", release, "--all", "--show-depends"])
        .args(BOOT_MODULES)
        .output()
        .context("cannot run modprobe (kmod)")?;
    let mut order = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Some(path) = line.strip_prefix("insmod ").and_then(|rest| rest.split_whitespace().next()) else {
            continue;
        };
        let file = Path::new(path).file_name().and_then(|f| f.to_str()).unwrap_or_default();
        let (name, decompress) = match file.rsplit_once('.') {
            Some((name, "xz")) => (name, Some("xz")),
            Some((name, "zst")) => (name, Some("zstd")),
            _ => (file, None),
        };
        if order.iter().any(|known| known == name) {
            continue;
        }
        let target = at(&format!("guest/modules/{name}"));
        match decompress {
            Some(tool) => {
                let bytes = Command::new(tool).arg("-dc").arg(path).output()?;
                if !bytes.status.success() {
                    bail!("{tool} cannot decompress {path}");
                }
                fs::write(&target, bytes.stdout)?;
            }
            None => {
                fs::copy(path, &target)?;
            }
        }
        order.push(name.to_owned());
    }
    fs::write(at("guest/modules/order"), order.join("\n") + "\n")?;
    let modprobe = format!("#!/guest/busybox sh\nexec /usr/sbin/modprobe -d {} \"$@\"\n", modules_root.display());
    for (path, text) in [("init", INIT), ("guest/modprobe", modprobe.as_str())] {
        fs::write(at(path), text)?;
        run(Command::new("chmod").arg("+x").arg(at(path)))?;
    }
    let archive = fs::File::create(out)?;
    let status = Command::new("sh")
        .args(["-c", "find . | cpio -o -H newc --quiet | gzip -1"])
        .current_dir(staging.path())
        .stdout(archive)
        .status()?;
    if !status.success() {
        bail!("cannot write the initramfs {}", out.display());
    }
    Ok(())
}

/// Boots `fetched` under qemu and runs the suite in it.
fn boot(kernel: &'static Kernel, fetched: &Fetched, binaries: &[(String, PathBuf)]) -> anyhow::Result<Outcome> {
    let out = root().join("target/kernels").join(kernel.series);
    let _ = fs::remove_dir_all(&out);
    fs::create_dir_all(&out)?;
    fs::write(out.join("command"), guest_script(kernel, binaries))?;
    // Made for each run (a second): the guest's init is part of the repository.
    let initramfs_path = out.join("initramfs.gz");
    initramfs(&fetched.modules_root, &fetched.release, &initramfs_path)?;
    println!("kernels: booting {} ({}) under qemu", kernel.series, fetched.release);
    let started = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-nographic", "-no-reboot", "-m", "4G", "-smp", "2", "-accel", "tcg,thread=multi", "-cpu", "max"])
        .arg("-kernel")
        .arg(&fetched.vmlinuz)
        .arg("-initrd")
        .arg(&initramfs_path)
        .arg("-append")
        .arg("console=ttyS0 panic=-1 quiet")
        .arg("-virtfs")
        .arg("local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap")
        .arg("-virtfs")
        .arg(format!("local,path={},mount_tag=out,security_model=none,multidevs=remap", out.display()))
        .args(["-device", "virtio-rng-pci", "-nic", "none"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start qemu-system-x86_64")?;
    let console = child.stdout.take().context("qemu's console")?;
    let series = kernel.series;
    let log_path = out.join("console.log");
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let mut log = fs::File::create(log_path)?;
        for line in BufReader::new(console).split(b'\n') {
            let line = String::from_utf8_lossy(&line?).trim_end().to_owned();
            writeln!(log, "{line}")?;
            println!("[{series}] {line}");
        }
        Ok(())
    });
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if started.elapsed() > GUEST_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let _ = echo.join();
    let mut outcome = Outcome { kernel, release: fetched.release.clone(), passed: Vec::new(), failed: Vec::new() };
    let results = fs::read_to_string(out.join("results")).unwrap_or_default();
    for line in results.lines() {
        match line.split_once(' ') {
            Some(("passed", test)) => outcome.passed.push(test.to_owned()),
            Some(("failed", test)) => outcome.failed.push(test.to_owned()),
            _ => {}
        }
    }
    let finished = fs::read_to_string(out.join("status")).is_ok();
    match status {
        None => outcome
            .failed
            .push(format!("timed out after {GUEST_TIMEOUT:?} (console: {})", out.join("console.log").display())),
        Some(_) if !finished => outcome
            .failed
            .push(format!("the guest stopped before the suite ended (console: {})", out.join("console.log").display())),
        Some(_) => {}
    }
    println!("kernels: {} done in {:.0} s", kernel.series, started.elapsed().as_secs_f64());
    Ok(outcome)
}

/// The script the guest runs: each test binary of the suite, its result
/// appended to `/out/results`.
fn guest_script(kernel: &Kernel, binaries: &[(String, PathBuf)]) -> String {
    let root = root();
    let mut script = format!(
        "cd {root}\n\
         export FLOWTEL_BIN={bin} FLOWTEL_PYTHON={python} FLOWTEL_TEST_TIME_SCALE={TIME_SCALE} RUST_BACKTRACE=1\n\
         step() {{\n  name=$1; shift\n  echo \"=== $name\"\n  timeout {TEST_TIMEOUT_SECONDS} \"$@\"\n  case $? in\n    0) echo \"passed $name\" >> /out/results ;;\n    124) echo \"failed $name (timed out after {TEST_TIMEOUT_SECONDS} s)\" >> /out/results ;;\n    *) echo \"failed $name\" >> /out/results ;;\n  esac\n}}\n",
        root = root.display(),
        bin = root.join("target/debug/flowtel").display(),
        python = setup::venv_python().display(),
    );
    for (name, args) in SUITE {
        if kernel.not_run.iter().any(|(test, _)| test == name) {
            continue;
        }
        let Some((_, path)) = binaries.iter().find(|(found, _)| found == name) else { continue };
        script.push_str(&format!("step {name} {} --test-threads=1 {}\n", path.display(), args.join(" ")));
    }
    script
}
