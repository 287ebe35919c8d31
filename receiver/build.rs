//! Builds flowtel's eBPF programs (ebpf/probes) for `bpfel-unknown-none` with
//! the nightly toolchain and bpf-linker; `src/ebpf` embeds the object.
//! `cargo xtask setup` installs what this needs.

use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let probes_dir = format!("{}/ebpf/probes", workspace_root()?);
    let package = Package { name: "flowtel-probes", root_dir: &probes_dir, ..Default::default() };
    aya_build::build_ebpf([package], Toolchain::Nightly).context(
        "building the eBPF programs failed; run `cargo xtask setup` to install the nightly rust-src and bpf-linker",
    )
}

/// The workspace root: the parent of this crate's directory.
fn workspace_root() -> anyhow::Result<String> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR not set")?;
    let path = std::path::Path::new(&manifest_dir);
    path.parent().map(|p| p.display().to_string()).ok_or_else(|| anyhow!("{manifest_dir} has no parent directory"))
}
