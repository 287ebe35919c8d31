//! The record schema is spelled once, in `core/src/schema.rs`: an event
//! name, attribute key or metric name written out as a string anywhere else
//! (tests aside) is a rename waiting to break silently.

use std::{collections::BTreeMap, path::Path};

use anyhow::Context as _;

use super::{Violation, source::SourceFile};

/// Where the schema is defined, from the workspace root.
pub const SCHEMA_FILE: &str = "core/src/schema.rs";

/// The schema's names (`&str` constants and `MetricName { name, .. }`),
/// each with the constant that holds it (`attr::SOURCE_ADDRESS`).
pub fn schema_names(root: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let path = root.join(SCHEMA_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let file = syn::parse_file(&text).with_context(|| format!("cannot parse {}", path.display()))?;
    let mut names = BTreeMap::new();
    constants(&file.items, &[], &mut names);
    Ok(names)
}

fn constants(items: &[syn::Item], module: &[String], names: &mut BTreeMap<String, String>) {
    for item in items {
        match item {
            syn::Item::Mod(inner) => {
                if let Some((_, items)) = &inner.content {
                    constants(items, &[module, &[inner.ident.to_string()]].concat(), names);
                }
            }
            syn::Item::Const(constant) => {
                let holder = [module, &[constant.ident.to_string()]].concat().join("::");
                match &*constant.expr {
                    syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(value), .. }) => {
                        names.entry(value.value()).or_insert(holder);
                    }
                    syn::Expr::Struct(value) => {
                        for field in &value.fields {
                            if let syn::Member::Named(member) = &field.member
                                && member == "name"
                                && let syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(name), .. }) = &field.expr
                            {
                                names.entry(name.value()).or_insert(format!("{holder}.name"));
                            }
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

/// Every string literal in `files` (their tests aside) equal to a schema name.
pub fn literals(files: &[SourceFile], names: &BTreeMap<String, String>) -> Vec<Violation> {
    files
        .iter()
        .filter(|file| file.path != Path::new(SCHEMA_FILE))
        .flat_map(|file| {
            file.strings.iter().filter(|(_, line)| !file.is_test_line(*line)).filter_map(|(value, line)| {
                let holder = names.get(value)?;
                Some(Violation::new(
                    &file.path,
                    *line,
                    format!("\"{value}\" is the record schema's; write flowtel_core::schema::{holder}"),
                ))
            })
        })
        .collect()
}
