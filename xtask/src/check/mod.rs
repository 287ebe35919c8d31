//! `cargo xtask check`: formatting, clippy with warnings as errors (the
//! eBPF programs too, on their toolchain), and the house rules of
//! CONTRIBUTING.md — who may import whom, and the record schema spelled once.

mod schema_literals;
mod source;
mod structure;
#[cfg(test)]
mod tests;

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::bail;

use crate::{cargo, root, run};

/// A broken house rule, where it is broken.
#[derive(Debug, PartialEq, Eq)]
pub struct Violation {
    /// Relative to the checked tree.
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl Violation {
    fn new(file: &Path, line: usize, message: String) -> Self {
        Self { file: file.to_path_buf(), line, message }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// The crates whose sources may not spell a schema name: every crate of
/// the workspace but xtask (whose tests spell them on purpose) and the eBPF
/// crates (which have no records).
const SCHEMA_READERS: [&str; 8] =
    ["core", "receiver", "processors", "exporters", "connectors", "extensions", "collector", "tests"];

/// Runs every check, failing after all of them ran if one failed.
pub fn check() -> anyhow::Result<()> {
    let mut failed = Vec::new();
    let mut step = |name: &str, result: anyhow::Result<()>| {
        if let Err(error) = result {
            eprintln!("check: {name} failed: {error:#}");
            failed.push(name.to_owned());
        }
    };
    step("rustfmt", run(cargo().args(["fmt", "--all", "--check"])));
    step("rustfmt (fuzz)", run(cargo().args(["fmt", "--check", "--manifest-path", "fuzz/Cargo.toml"])));
    step("clippy", run(cargo().args(["clippy", "--all-targets", "--", "-D", "warnings"])));
    // Both builds of the programs: with ring buffers, and with perf event arrays only.
    for (name, features) in [("clippy (eBPF)", ""), ("clippy (eBPF, perf-events)", "perf-events")] {
        step(
            name,
            run(Command::new("cargo")
                .args(["+nightly", "clippy", "--package", "flowtel-probes", "--features", features])
                .args([
                    "--target",
                    "bpfel-unknown-none",
                    "-Z",
                    "build-std=core",
                    "--release",
                    "--target-dir",
                    "target/ebpf-clippy",
                    "--",
                    "-D",
                    "warnings",
                ])),
        );
    }
    step(
        "house rules",
        house_rules(&root()).and_then(|violations| {
            for violation in &violations {
                eprintln!("{violation}");
            }
            match violations.len() {
                0 => Ok(()),
                n => bail!("{n} violations (CONTRIBUTING.md says why each rule holds)"),
            }
        }),
    );
    if !failed.is_empty() {
        bail!("cargo xtask check failed: {}", failed.join(", "));
    }
    println!("check: formatting, clippy and house rules hold");
    Ok(())
}

/// The house rules' violations in the workspace at `root`. Each crate's
/// sources are read once, for every rule that looks at them.
pub fn house_rules(root: &Path) -> anyhow::Result<Vec<Violation>> {
    let mut crates = BTreeMap::new();
    for crate_dir in SCHEMA_READERS.into_iter().chain(["ebpf/common"]) {
        crates.insert(crate_dir, source::crate_files(root, crate_dir)?);
    }
    let names = schema_literals::schema_names(root)?;
    let mut found = Vec::new();
    for crate_dir in SCHEMA_READERS {
        found.extend(schema_literals::literals(&crates[crate_dir], &names));
    }
    for (crate_dir, _) in structure::COMPONENT_CRATES {
        if root.join(crate_dir).join("Cargo.toml").is_file() {
            found.extend(structure::components(root, crate_dir, &crates[crate_dir])?);
        }
    }
    found.extend(structure::core(root, &crates["core"])?);
    found.extend(structure::ebpf_common(root, &crates["ebpf/common"])?);
    Ok(found)
}
