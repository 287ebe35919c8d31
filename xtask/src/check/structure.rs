//! Who may import whom: a component reaches another only through `core`;
//! `core` imports no component; `ebpf/common` (shared with the kernel
//! programs) imports nothing of flowtel's.

use std::path::Path;

use super::{Violation, source::SourceFile};

/// The crates whose top-level modules are components, with the names other
/// crates import them by (those not yet in the tree are skipped).
pub const COMPONENT_CRATES: [(&str, &str); 5] = [
    ("receiver", "flowtel_receiver"),
    ("processors", "flowtel_processors"),
    ("exporters", "flowtel_exporters"),
    ("connectors", "flowtel_connectors"),
    ("extensions", "flowtel_extensions"),
];

/// What `core` may not import: the component crates and the binary that wires them.
const ABOVE_CORE: [&str; 7] = [
    "flowtel_receiver",
    "flowtel_processors",
    "flowtel_exporters",
    "flowtel_connectors",
    "flowtel_extensions",
    "flowtel_collector",
    "flowtel",
];

/// A component importing another component, in the same crate (`crate::b`,
/// `super::super::b`) or another (`flowtel_exporters::…`, or the dependency
/// in its Cargo.toml).
pub fn components(root: &Path, crate_dir: &str, files: &[SourceFile]) -> anyhow::Result<Vec<Violation>> {
    let components: Vec<&str> =
        files.iter().filter(|f| f.module.len() == 1 && !f.test_only).filter_map(SourceFile::component).collect();
    let own = COMPONENT_CRATES.iter().find(|(dir, _)| *dir == crate_dir).map(|(_, name)| *name);
    let mut found = Vec::new();
    for file in files {
        let Some(component) = file.component() else { continue };
        for (path, line) in &file.paths {
            if let Some(other) =
                COMPONENT_CRATES.iter().map(|(_, name)| *name).find(|name| Some(*name) != own && path[0] == *name)
            {
                found.push(Violation::new(
                    &file.path,
                    *line,
                    format!("component `{component}` imports `{other}`, another crate of components; share it through flowtel_core"),
                ));
                continue;
            }
            if let Some(target) = resolve(&file.module, path).and_then(|absolute| absolute.first().cloned())
                && target != component
                && components.contains(&target.as_str())
            {
                found.push(Violation::new(
                    &file.path,
                    *line,
                    format!(
                        "component `{component}` imports component `{target}` (`{}`); move what both need into flowtel_core",
                        path.join("::")
                    ),
                ));
            }
        }
    }
    let forbidden: Vec<String> = COMPONENT_CRATES
        .iter()
        .filter(|(_, name)| Some(*name) != own)
        .map(|(_, name)| name.replace('_', "-"))
        .collect();
    found.extend(manifest_violations(
        root,
        crate_dir,
        |dependency| forbidden.iter().any(|f| f == dependency),
        |dependency| {
            format!("`{crate_dir}` depends on `{dependency}`: components reach each other only through flowtel-core")
        },
    )?);
    Ok(found)
}

/// `core` importing a component crate or the collector.
pub fn core(root: &Path, files: &[SourceFile]) -> anyhow::Result<Vec<Violation>> {
    let mut found = imports_of(
        files,
        |first| ABOVE_CORE.contains(&first),
        |path| format!("core imports `{path}`: core defines what components share and imports none of them"),
    );
    let forbidden: Vec<String> = ABOVE_CORE.iter().map(|name| name.replace('_', "-")).collect();
    found.extend(manifest_violations(
        root,
        "core",
        |dependency| forbidden.iter().any(|f| f == dependency),
        |dependency| format!("core depends on `{dependency}`: core imports no component"),
    )?);
    Ok(found)
}

/// `ebpf/common` importing any crate of flowtel's.
pub fn ebpf_common(root: &Path, files: &[SourceFile]) -> anyhow::Result<Vec<Violation>> {
    let mut found = imports_of(
        files,
        |first| first.starts_with("flowtel"),
        |path| {
            format!(
                "ebpf/common imports `{path}`: it is shared with the kernel programs and imports nothing of flowtel's"
            )
        },
    );
    found.extend(manifest_violations(
        root,
        "ebpf/common",
        |dependency| dependency.starts_with("flowtel"),
        |dependency| format!("ebpf/common depends on `{dependency}`: it imports nothing of flowtel's"),
    )?);
    Ok(found)
}

/// Every path in `files` whose first segment `forbidden` refuses.
fn imports_of(
    files: &[SourceFile],
    forbidden: impl Fn(&str) -> bool,
    message: impl Fn(&str) -> String,
) -> Vec<Violation> {
    files
        .iter()
        .flat_map(|file| {
            file.paths
                .iter()
                .filter(|(path, _)| forbidden(&path[0]))
                .map(|(path, line)| Violation::new(&file.path, *line, message(&path.join("::"))))
        })
        .collect()
}

/// The crate-relative module a path in `module` names (`crate::`, `self::`,
/// `super::` paths); `None` for paths to other crates or local names.
fn resolve(module: &[String], path: &[String]) -> Option<Vec<String>> {
    match path.first()?.as_str() {
        "crate" => Some(path[1..].to_vec()),
        "self" => Some([module, &path[1..]].concat()),
        "super" => {
            let climbs = path.iter().take_while(|segment| *segment == "super").count();
            let base = module.get(..module.len().checked_sub(climbs)?)?;
            Some([base, &path[climbs..]].concat())
        }
        _ => None,
    }
}

/// Every dependency (of any kind) in `crate_dir/Cargo.toml` that
/// `forbidden` refuses, as a violation at its line saying `message`.
fn manifest_violations(
    root: &Path,
    crate_dir: &str,
    forbidden: impl Fn(&str) -> bool,
    message: impl Fn(&str) -> String,
) -> anyhow::Result<Vec<Violation>> {
    let manifest = root.join(crate_dir).join("Cargo.toml");
    let text =
        std::fs::read_to_string(&manifest).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", manifest.display()))?;
    let mut in_dependencies = false;
    let mut found = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.starts_with('[') {
            in_dependencies = line.trim_matches(['[', ']']).ends_with("dependencies");
            continue;
        }
        let Some((name, _)) = line.split_once('=') else { continue };
        let name = name.trim().split('.').next().unwrap_or_default().trim();
        if in_dependencies && forbidden(name) {
            found.push(Violation::new(&Path::new(crate_dir).join("Cargo.toml"), index + 1, message(name)));
        }
    }
    Ok(found)
}
