//! Renders `charts/flowtel` as `helm template` would, with the Go program in
//! `tests/chart-render` (Go's text/template, Debian's sprig and yaml.v3, and
//! Helm's built-in objects and functions), built once per test process.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use crate::root;

/// The renderer, built with Debian's Go in GOPATH mode.
fn renderer() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let gopath = root().join("target/chart-render");
        let source = gopath.join("src");
        std::fs::create_dir_all(&source).unwrap();
        let link = source.join("chart-render");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(root().join("tests/chart-render"), &link).unwrap();
        let binary = gopath.join("chart-render-bin");
        let output = Command::new("go")
            .args(["build", "-o"])
            .arg(&binary)
            .arg("chart-render")
            .current_dir(&gopath)
            .env("GO111MODULE", "off")
            .env("GOPATH", format!("{}:/usr/share/gocode", gopath.display()))
            .output()
            .expect("go (cargo xtask setup installs golang-go)");
        assert!(output.status.success(), "building chart-render: {}", String::from_utf8_lossy(&output.stderr));
        binary
    })
}

/// The chart rendered with the values in `values` (YAML) for release
/// `release` in `namespace`, on a cluster serving `api_versions`: the
/// `kind: List` it makes, or the renderer's error.
pub fn render(
    values: &str,
    release: &str,
    namespace: &str,
    api_versions: &[&str],
) -> Result<serde_json::Value, String> {
    let dir = tempfile::tempdir().unwrap();
    let values_file = dir.path().join("values.yaml");
    std::fs::write(&values_file, values).unwrap();
    let output = Command::new(renderer())
        .arg("--chart")
        .arg(root().join("charts/flowtel"))
        .arg("--values")
        .arg(&values_file)
        .args(["--release", release, "--namespace", namespace, "--api-versions", &api_versions.join(",")])
        .output()
        .unwrap();
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&output.stdout).unwrap())
}
