//! Builds flowtel's eBPF programs (ebpf/probes) for `bpfel-unknown-none` with
//! the nightly toolchain and bpf-linker, twice: sending events through ring
//! buffers (`flowtel-probes-ring`) and through perf event arrays
//! (`flowtel-probes-perf`, for kernels without ring buffers); `src/ebpf`
//! embeds both. `cargo xtask setup` installs what this needs.

use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let probes_dir = format!("{}/ebpf/probes", workspace_root()?);
    // aya-build watches the probes' own directory; they build the shared types too.
    println!("cargo:rerun-if-changed={}/ebpf/common", workspace_root()?);
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR").context("OUT_DIR not set")?);
    for (variant, features) in [("ring", &[][..]), ("perf", &["perf-events"][..])] {
        let package = Package { name: "flowtel-probes", root_dir: &probes_dir, features, ..Default::default() };
        aya_build::build_ebpf([package], Toolchain::Nightly).context(
            "building the eBPF programs failed; run `cargo xtask setup` to install the nightly rust-src and bpf-linker",
        )?;
        // aya-build writes each build to the same name.
        std::fs::rename(out_dir.join("flowtel-probes"), out_dir.join(format!("flowtel-probes-{variant}")))?;
    }
    Ok(())
}

/// The workspace root: the parent of this crate's directory.
fn workspace_root() -> anyhow::Result<String> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR not set")?;
    let path = std::path::Path::new(&manifest_dir);
    path.parent().map(|p| p.display().to_string()).ok_or_else(|| anyhow!("{manifest_dir} has no parent directory"))
}
