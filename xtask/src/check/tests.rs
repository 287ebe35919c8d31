//! Each house rule against a small workspace that breaks it, and flowtel's
//! own tree, which must keep them all.

use std::path::Path;

use super::{Violation, house_rules};

/// A workspace shaped like flowtel's that keeps every rule; `changes`
/// replace or add files (path, text).
fn workspace(changes: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    let base: &[(&str, &str)] = &[
        ("core/Cargo.toml", "[package]\nname = \"flowtel-core\"\n\n[dependencies]\nserde = \"1\"\n"),
        ("core/src/lib.rs", "pub mod schema;\npub mod topology;\n"),
        (
            "core/src/schema.rs",
            "pub mod attr {\n    pub const SOURCE_ADDRESS: &str = \"source.address\";\n}\n\
             pub mod event {\n    pub const FLOW: &str = \"network.flow\";\n}\n\
             pub struct MetricName { pub name: &'static str, pub unit: &'static str }\n\
             pub mod metric {\n    pub const FLOW_BYTES: super::MetricName = super::MetricName { name: \"network.flow.bytes\", unit: \"By\" };\n}\n",
        ),
        ("core/src/topology.rs", "use crate::schema::attr;\n"),
        (
            "receiver/Cargo.toml",
            "[package]\nname = \"flowtel-receiver\"\n\n[dependencies]\nflowtel-core.workspace = true\n",
        ),
        ("receiver/src/lib.rs", "pub mod ebpf;\npub mod otlp;\n"),
        ("receiver/src/ebpf/mod.rs", "use flowtel_core::schema::attr;\nmod convert;\nstruct Flow;\n"),
        ("receiver/src/ebpf/convert.rs", "use super::Flow;\nuse crate::ebpf::Flow as Same;\n"),
        ("receiver/src/otlp.rs", "pub fn serve() {}\n"),
        (
            "processors/Cargo.toml",
            "[package]\nname = \"flowtel-processors\"\n\n[dependencies]\nflowtel-core.workspace = true\n",
        ),
        ("processors/src/lib.rs", "pub mod filter;\npub mod log_dedup;\n"),
        ("processors/src/filter/mod.rs", "pub fn keep() -> bool { true }\n"),
        ("processors/src/log_dedup.rs", "use flowtel_core::schema::attr::SOURCE_ADDRESS;\n"),
        (
            "exporters/Cargo.toml",
            "[package]\nname = \"flowtel-exporters\"\n\n[dependencies]\nflowtel-core.workspace = true\n",
        ),
        ("exporters/src/lib.rs", "pub mod hubble;\n"),
        ("exporters/src/hubble.rs", "pub fn bridge() {}\n"),
        ("collector/Cargo.toml", "[package]\nname = \"flowtel\"\n"),
        (
            "collector/src/main.rs",
            "fn main() {\n    flowtel_processors::filter::keep();\n    flowtel_exporters::hubble::bridge();\n}\n",
        ),
        ("tests/Cargo.toml", "[package]\nname = \"flowtel-tests\"\n"),
        ("tests/src/lib.rs", "pub fn helper() {}\n"),
        ("ebpf/common/Cargo.toml", "[package]\nname = \"flowtel-ebpf-common\"\n\n[dependencies]\n"),
        ("ebpf/common/src/lib.rs", "#![no_std]\npub const DIRECTION_EGRESS: u8 = 1;\n"),
    ];
    for (path, text) in
        base.iter().filter(|(path, _)| !changes.iter().any(|(changed, _)| changed == path)).chain(changes)
    {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("create directories");
        std::fs::write(path, text).expect("write fixture");
    }
    dir
}

fn violations(changes: &[(&str, &str)]) -> Vec<Violation> {
    let dir = workspace(changes);
    house_rules(dir.path()).expect("the check runs")
}

/// The single violation found, checked for its file, line and what it says.
fn assert_one(found: &[Violation], file: &str, line: usize, says: &str) {
    assert_eq!(found.len(), 1, "expected one violation, got {found:#?}");
    assert_eq!((found[0].file.as_path(), found[0].line), (Path::new(file), line), "{}", found[0]);
    assert!(found[0].message.contains(says), "`{}` should say `{says}`", found[0]);
}

#[test]
fn a_workspace_keeping_the_rules_passes() {
    assert_eq!(violations(&[]), vec![]);
}

#[test]
fn flowtel_keeps_the_rules() {
    let found = house_rules(&crate::root()).expect("the check runs");
    assert!(found.is_empty(), "{}", found.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"));
}

#[test]
fn a_component_importing_a_sibling_through_crate_is_refused() {
    let found = violations(&[("receiver/src/ebpf/convert.rs", "use super::Flow;\n\nuse crate::otlp::serve;\n")]);
    assert_one(&found, "receiver/src/ebpf/convert.rs", 3, "component `ebpf` imports component `otlp`");
}

#[test]
fn a_component_climbing_out_with_super_is_refused() {
    let found = violations(&[("receiver/src/ebpf/convert.rs", "fn f() {\n    super::super::otlp::serve();\n}\n")]);
    assert_one(&found, "receiver/src/ebpf/convert.rs", 2, "imports component `otlp`");
}

#[test]
fn a_use_group_naming_a_sibling_is_refused() {
    let found = violations(&[(
        "receiver/src/ebpf/mod.rs",
        "mod convert;\nstruct Flow;\nuse crate::{ebpf::Flow as F, otlp::{serve}};\n",
    )]);
    assert_one(&found, "receiver/src/ebpf/mod.rs", 3, "`crate::otlp::serve`");
}

#[test]
fn a_sibling_named_inside_a_macro_is_refused() {
    let found =
        violations(&[("processors/src/log_dedup.rs", "fn f() {\n    println!(\"{}\", crate::filter::keep());\n}\n")]);
    assert_one(&found, "processors/src/log_dedup.rs", 2, "component `log_dedup` imports component `filter`");
}

#[test]
fn a_component_importing_another_crate_of_components_is_refused() {
    let found = violations(&[(
        "processors/src/filter/mod.rs",
        "pub fn keep() -> bool {\n    flowtel_exporters::hubble::bridge();\n    true\n}\n",
    )]);
    assert_one(&found, "processors/src/filter/mod.rs", 2, "imports `flowtel_exporters`");
    let found = violations(&[(
        "processors/Cargo.toml",
        "[package]\nname = \"flowtel-processors\"\n\n[dependencies]\nflowtel-core.workspace = true\nflowtel-exporters.workspace = true\n",
    )]);
    assert_one(&found, "processors/Cargo.toml", 6, "depends on `flowtel-exporters`");
}

#[test]
fn core_importing_a_component_is_refused() {
    let found = violations(&[("core/src/topology.rs", "use crate::schema::attr;\nuse flowtel_processors::filter;\n")]);
    assert_one(&found, "core/src/topology.rs", 2, "core imports `flowtel_processors::filter`");
    let found = violations(&[(
        "core/Cargo.toml",
        "[package]\nname = \"flowtel-core\"\n\n[dev-dependencies]\nflowtel-receiver = { path = \"../receiver\" }\n",
    )]);
    assert_one(&found, "core/Cargo.toml", 5, "core depends on `flowtel-receiver`");
}

#[test]
fn ebpf_common_importing_flowtel_is_refused() {
    let found = violations(&[("ebpf/common/src/lib.rs", "#![no_std]\nuse flowtel_core::schema;\n")]);
    assert_one(&found, "ebpf/common/src/lib.rs", 2, "ebpf/common imports `flowtel_core::schema`");
    let found = violations(&[(
        "ebpf/common/Cargo.toml",
        "[package]\nname = \"flowtel-ebpf-common\"\n\n[dependencies]\nflowtel-core = { path = \"../../core\" }\n",
    )]);
    assert_one(&found, "ebpf/common/Cargo.toml", 5, "depends on `flowtel-core`");
}

#[test]
fn a_schema_name_spelled_out_is_refused() {
    let found = violations(&[(
        "processors/src/filter/mod.rs",
        "pub fn keep() -> bool {\n    let key = \"source.address\";\n    key.is_empty()\n}\n",
    )]);
    assert_one(&found, "processors/src/filter/mod.rs", 2, "schema::attr::SOURCE_ADDRESS");
    let found =
        violations(&[("exporters/src/hubble.rs", "pub fn bridge() {}\n\nconst NAME: &str = \"network.flow\";\n")]);
    assert_one(&found, "exporters/src/hubble.rs", 3, "schema::event::FLOW");
    let found = violations(&[("tests/src/lib.rs", "pub fn helper() {\n    let _ = [\"network.flow.bytes\"];\n}\n")]);
    assert_one(&found, "tests/src/lib.rs", 2, "schema::metric::FLOW_BYTES.name");
}

#[test]
fn schema_names_in_tests_and_prose_are_allowed() {
    let found = violations(&[
        (
            "processors/src/filter/mod.rs",
            "/// Keeps records whose \"source.address\" matches.\npub fn keep() -> bool { true }\n\
             #[cfg(test)]\nmod tests;\n#[cfg(test)]\nmod inline {\n    const K: &str = \"source.address\";\n}\n\
             #[test]\nfn keeps() {\n    assert_eq!(\"network.flow\", \"network.flow\");\n}\n",
        ),
        ("processors/src/filter/tests.rs", "const K: &str = \"source.address\";\n"),
    ]);
    assert_eq!(found, vec![]);
}
