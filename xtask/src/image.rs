//! `cargo xtask image`: the container image of `Containerfile`, built with
//! podman from a root filesystem prepared here — the stripped `flowtel`
//! binary, the shared libraries `ldd` lists for it, and the default config.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::{root, run};

/// The shared libraries `binary` loads, as absolute paths.
fn shared_libraries(binary: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let output = Command::new("ldd").arg(binary).output().context("running ldd")?;
    if !output.status.success() {
        bail!("ldd {}: {}", binary.display(), String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)` or `/lib64/ld-linux-x86-64.so.2 (0x…)`.
            let path = line.split("=>").last()?.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

/// Builds the image `tag` from `binary` (default: the release build).
pub fn image(binary: Option<PathBuf>, tag: &str) -> anyhow::Result<()> {
    let binary = match binary {
        Some(binary) => binary,
        None => {
            crate::build()?;
            root().join("target/release/flowtel")
        }
    };
    let context = tempfile::tempdir().context("a build context")?;
    let rootfs = context.path().join("rootfs");
    let bin = rootfs.join("usr/bin");
    fs::create_dir_all(&bin)?;
    run(Command::new("strip").arg("-o").arg(bin.join("flowtel")).arg(&binary))?;
    for library in shared_libraries(&binary)? {
        let target = rootfs.join(library.strip_prefix("/")?);
        fs::create_dir_all(target.parent().context("a library's directory")?)?;
        // Follow the symlink: the image gets the library itself.
        fs::copy(&library, &target).with_context(|| format!("copying {}", library.display()))?;
    }
    let config = rootfs.join("etc/flowtel");
    fs::create_dir_all(&config)?;
    fs::copy(root().join("otel-config.yaml"), config.join("otel-config.yaml"))?;
    fs::create_dir_all(rootfs.join("tmp"))?;
    fs::copy(root().join("Containerfile"), context.path().join("Containerfile"))?;
    run(Command::new("podman")
        .args(["build", "--runtime=runc", "-f", "Containerfile", "-t", tag, "."])
        .current_dir(context.path()))?;
    println!("image: built {tag}");
    Ok(())
}
