//! `cargo xtask setup | build | run | check | test | image | bench | fuzz`.
//!
//! `setup` brings a fresh machine to what building and testing flowtel need,
//! and does nothing for what is already there; `test`, `bench` and `fuzz`
//! call it first. `run`, `build` and `check` install only what building
//! and running need (the Rust components, the eBPF linker, the kernel's
//! mounts). `test` runs `check` first.

// xtask talks to the developer.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod check;
mod image;
mod kernels;
mod setup;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Installs what building and testing need (idempotent).
    Setup,
    /// Builds the eBPF programs and the release `flowtel` binary.
    Build,
    /// Builds and runs flowtel with `otel-config.yaml` (extra args go to flowtel).
    Run {
        /// Arguments passed to flowtel.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Checks formatting, clippy (warnings are errors) and the house rules.
    Check,
    /// Runs `check`, then every test: pure, privileged (root) and end-to-end,
    /// and the kernel tests on older kernels under qemu.
    Test {
        /// Only the kernel tests under qemu, on these series (`5.10,6.1`; all when none is named).
        #[arg(long, num_args = 0.., value_delimiter = ',')]
        kernels: Option<Vec<String>>,
        /// Arguments passed to `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Runs the fuzz targets (fuzz/fuzz_targets) for a while each.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 300)]
        seconds: u64,
        /// Targets to run (default: all of them).
        targets: Vec<String>,
    },
    /// Builds the container image (`Containerfile`) with podman.
    Image {
        /// The flowtel binary to put in it (default: a release build).
        #[arg(long)]
        binary: Option<PathBuf>,
        /// The image's name.
        #[arg(long, default_value = "localhost/flowtel:latest")]
        tag: String,
    },
    /// Runs the benchmarks.
    Bench {
        /// Arguments passed to `cargo bench`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

/// Runs a command (in the workspace root unless it names a directory), failing on a non-zero exit.
pub fn run(command: &mut Command) -> anyhow::Result<()> {
    if command.get_current_dir().is_none() {
        command.current_dir(root());
    }
    let status = command.status().with_context(|| format!("cannot start {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed: {status}");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Task::Setup => setup::setup(),
        Task::Build => {
            setup::setup_run()?;
            build()
        }
        Task::Run { args } => {
            setup::setup_run()?;
            build()?;
            let mut command = Command::new(root().join("target/release/flowtel"));
            if !args.iter().any(|a| a == "--config" || a == "-c") {
                command.args(["--config", "otel-config.yaml"]);
            }
            run(command.args(args))
        }
        Task::Check => {
            setup::setup_run()?;
            check::check()
        }
        Task::Test { kernels: Some(series), .. } => {
            setup::setup()?;
            run(cargo().args(["build", "--package", "flowtel"]))?;
            kernels::test(&series)
        }
        Task::Test { args, kernels: None } => {
            setup::setup()?;
            check::check()?;
            // Everything at once, the `flowtel` binary the end-to-end tests
            // start and the bench programs included: one build shares its
            // dependencies with `cargo test` (builds of single packages
            // unify features differently and build them all again).
            run(cargo().args(["build", "--all-targets"]))?;
            let filtered = !args.is_empty();
            run(cargo()
                .args(["test", "--all-targets"])
                .args(args)
                .env("FLOWTEL_BIN", root().join("target/debug/flowtel"))
                .env("FLOWTEL_PYTHON", setup::venv_python()))?;
            if !filtered {
                // Every benchmark once at a tiny size, so none can rot
                // (the Criterion ones ran above, as tests).
                bench_binary("kernel_bench", &["--quick", "--out", "target/bench-quick"], "debug")?;
                bench_binary("gateway_bench", &["--quick", "--out", "target/bench-quick"], "debug")?;
                // Every fuzz target for a moment, from the committed seeds
                // (unoptimized: it builds in half the time).
                fuzz(FUZZ_SMOKE_SECONDS, &[], FuzzBuild::Dev)?;
                // The kernel tests on every older kernel (setup installs qemu).
                kernels::test(&[])?;
            }
            Ok(())
        }
        Task::Image { binary, tag } => {
            setup::setup_run()?;
            image::image(binary, &tag)
        }
        Task::Fuzz { seconds, targets } => {
            setup::setup()?;
            fuzz(seconds, &targets, FuzzBuild::Release)
        }
        Task::Bench { args } => {
            setup::setup()?;
            run(cargo().args(["build", "--release", "--bins"]))?;
            run(cargo().args(["bench"]).args(args))?;
            bench_binary("gateway_bench", &["--out", "target/bench"], "release")?;
            bench_binary("kernel_bench", &["--out", "target/bench"], "release")?;
            write_report()
        }
    }
}

/// Seconds each fuzz target runs in `cargo xtask test`.
const FUZZ_SMOKE_SECONDS: u64 = 15;

/// How the fuzz targets are built.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FuzzBuild {
    /// Unoptimized: quick to build, for short runs.
    Dev,
    /// Optimized: many more inputs a second, for long runs.
    Release,
}

/// The fuzz targets, by their file names in fuzz/fuzz_targets.
fn fuzz_targets() -> anyhow::Result<Vec<String>> {
    let mut targets: Vec<String> = std::fs::read_dir(root().join("fuzz/fuzz_targets"))?
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.strip_suffix(".rs").map(str::to_owned))
        .collect();
    targets.sort();
    Ok(targets)
}

/// Runs each fuzz target (all when `targets` is empty) for `seconds`,
/// starting from its committed seeds (fuzz/corpus/TARGET, never written to)
/// and what earlier runs here found (target/fuzz-corpus/TARGET). An input
/// that crashes a target, or takes more than 10 s, fails the run and is
/// kept in fuzz/artifacts/TARGET.
fn fuzz(seconds: u64, targets: &[String], build: FuzzBuild) -> anyhow::Result<()> {
    let all = fuzz_targets()?;
    let chosen = if targets.is_empty() { all.clone() } else { targets.to_vec() };
    if let Some(unknown) = chosen.iter().find(|t| !all.contains(t)) {
        bail!("no fuzz target `{unknown}`; there are: {}", all.join(", "));
    }
    for target in &chosen {
        let found = root().join("target/fuzz-corpus").join(target);
        std::fs::create_dir_all(&found)?;
        println!("fuzz: {target} for {seconds} s");
        run(Command::new("cargo")
            .args(["+nightly", "fuzz", "run", "--sanitizer", "none"])
            .args(if build == FuzzBuild::Dev { &["--dev"][..] } else { &[][..] })
            .arg(target)
            .arg(&found)
            .arg(root().join("fuzz/corpus").join(target))
            .arg("--")
            .args([format!("-max_total_time={seconds}"), "-timeout=10".into(), "-rss_limit_mb=2048".into()])
            .args(["-print_final_stats=1"]))
        .with_context(|| {
            format!("fuzz target {target} failed: the input is in fuzz/artifacts/{target}; `cargo +nightly fuzz run --sanitizer none {target} <input>` replays it")
        })?;
    }
    Ok(())
}

/// A benchmark program of tests/src/bin, built in `profile` (`debug` or
/// `release`) and run against the flowtel built in it.
fn bench_binary(name: &str, args: &[&str], profile: &str) -> anyhow::Result<()> {
    let built = root().join("target").join(profile);
    run(Command::new(built.join(name)).args(args).env("FLOWTEL_BIN", built.join("flowtel")))
}

/// `target/bench/report.md` and `report.json`: the gateway and kernel
/// reports together, with the machine they came from.
fn write_report() -> anyhow::Result<()> {
    let dir = root().join("target/bench");
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).with_context(|| format!("missing {name}"));
    let markdown = format!(
        "{}\n{}\nCriterion benches of the hot paths: `target/criterion/report/index.html`.\nProduced by `cargo xtask bench`.\n",
        read("gateway.md")?,
        read("kernel.md")?
    );
    std::fs::write(dir.join("report.md"), &markdown)?;
    let json = format!("{{\"gateway\": {}, \"kernel\": {}}}\n", read("gateway.json")?, read("kernel.json")?);
    std::fs::write(dir.join("report.json"), json)?;
    println!("{markdown}\nReport: target/bench/report.md and report.json");
    Ok(())
}

pub(crate) fn build() -> anyhow::Result<()> {
    run(cargo().args(["build", "--release", "--package", "flowtel"]))
}
