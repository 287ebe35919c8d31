//! A crate's Rust sources as the house rules read them: each file with the
//! module it is, whether it is test-only, and its paths and string literals
//! with their lines.

use std::{
    path::{Path, PathBuf},
    str::FromStr as _,
};

use anyhow::Context as _;
use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};
use syn::spanned::Spanned as _;

/// One source file of a crate.
pub struct SourceFile {
    /// Relative to the tree the check runs on.
    pub path: PathBuf,
    /// The module it is, from the crate root (`["hubble", "filter"]`).
    pub module: Vec<String>,
    /// Compiled only for tests (`#[cfg(test)] mod …`, or inside one).
    pub test_only: bool,
    /// Lines (first, last) of the test-only items in it.
    pub test_lines: Vec<(usize, usize)>,
    /// Every path (`a::b::c`) in it, with the line of its first segment;
    /// a use-tree group (`a::{b, c::d}`) counts as one path per leaf.
    pub paths: Vec<(Vec<String>, usize)>,
    /// Every string literal's value, with its line (doc comments left out).
    pub strings: Vec<(String, usize)>,
}

impl SourceFile {
    /// Whether `line` is in a test-only file or item.
    pub fn is_test_line(&self, line: usize) -> bool {
        self.test_only || self.test_lines.iter().any(|&(first, last)| (first..=last).contains(&line))
    }

    /// The component (top-level module) the file belongs to; `None` for the crate root.
    pub fn component(&self) -> Option<&str> {
        self.module.first().map(String::as_str)
    }
}

/// The source files of the crate in `root/crate_dir`: its library and binary
/// roots (`src/lib.rs`, `src/main.rs`, `src/bin/*`) and every module they
/// declare, followed through `mod` items.
pub fn crate_files(root: &Path, crate_dir: &str) -> anyhow::Result<Vec<SourceFile>> {
    let src = root.join(crate_dir).join("src");
    let mut roots: Vec<PathBuf> =
        ["lib.rs", "main.rs"].iter().map(|name| src.join(name)).filter(|path| path.is_file()).collect();
    if let Ok(entries) = std::fs::read_dir(src.join("bin")) {
        let mut bins: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .map(|path| if path.is_dir() { path.join("main.rs") } else { path })
            .filter(|path| path.is_file() && path.extension().is_some_and(|ext| ext == "rs"))
            .collect();
        bins.sort();
        roots.extend(bins);
    }
    let mut files = Vec::new();
    for crate_root in roots {
        let children = crate_root.parent().map(Path::to_path_buf).unwrap_or_default();
        read_module(root, &crate_root, Vec::new(), &children, false, &mut files)?;
    }
    Ok(files)
}

/// Reads the module in `file` (`module`, whose child modules live in
/// `children`) and the modules it declares.
fn read_module(
    root: &Path,
    file: &Path,
    module: Vec<String>,
    children: &Path,
    test_only: bool,
    files: &mut Vec<SourceFile>,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let syntax = syn::parse_file(&text).with_context(|| format!("cannot parse {}", file.display()))?;
    let tokens =
        TokenStream::from_str(&text).map_err(|e| anyhow::anyhow!("cannot tokenize {}: {e}", file.display()))?;
    let mut scan = Scan::default();
    scan.stream(tokens);
    let mut test_lines = Vec::new();
    let mut declared = Vec::new();
    collect_items(&syntax.items, &module, children, test_only, &mut test_lines, &mut declared);
    files.push(SourceFile {
        path: file.strip_prefix(root).unwrap_or(file).to_path_buf(),
        module,
        test_only,
        test_lines,
        paths: scan.paths,
        strings: scan.strings,
    });
    for Declared { module, dir, test_only } in declared {
        let Some(name) = module.last() else { continue };
        let flat = dir.join(format!("{name}.rs"));
        let nested = dir.join(name).join("mod.rs");
        let (file, children) = if flat.is_file() {
            (flat, dir.join(name))
        } else if nested.is_file() {
            (nested, dir.join(name))
        } else {
            anyhow::bail!(
                "module {} declared but neither {} nor {} exists",
                module.join("::"),
                flat.display(),
                nested.display()
            );
        };
        read_module(root, &file, module, &children, test_only, files)?;
    }
    Ok(())
}

/// A `mod name;` whose body is in a file of its own.
struct Declared {
    module: Vec<String>,
    /// The directory its file is in.
    dir: PathBuf,
    test_only: bool,
}

/// Notes the test-only items' lines and the out-of-line modules declared in `items`.
fn collect_items(
    items: &[syn::Item],
    module: &[String],
    children: &Path,
    test_only: bool,
    test_lines: &mut Vec<(usize, usize)>,
    declared: &mut Vec<Declared>,
) {
    for item in items {
        let test_item = item_attrs(item).is_some_and(is_test);
        if test_item {
            let span = item.span();
            test_lines.push((span.start().line, span.end().line));
        }
        if let syn::Item::Mod(inner) = item {
            let path = [module, &[inner.ident.to_string()]].concat();
            match &inner.content {
                Some((_, items)) => {
                    let dir = children.join(inner.ident.to_string());
                    collect_items(items, &path, &dir, test_only || test_item, test_lines, declared);
                }
                None => declared.push(Declared {
                    module: path,
                    dir: children.to_path_buf(),
                    test_only: test_only || test_item,
                }),
            }
        }
    }
}

/// `#[cfg(test)]` (alone or in `all(…)`), or `#[test]`.
fn is_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| {
        attr.path().is_ident("test")
            || (attr.path().is_ident("cfg")
                && attr.meta.require_list().is_ok_and(|list| {
                    let tokens = list.tokens.to_string();
                    !tokens.contains("not")
                        && tokens.split(|c: char| !c.is_alphanumeric() && c != '_').any(|w| w == "test")
                }))
    })
}

fn item_attrs(item: &syn::Item) -> Option<&[syn::Attribute]> {
    use syn::Item;
    Some(match item {
        Item::Const(i) => &i.attrs,
        Item::Enum(i) => &i.attrs,
        Item::ExternCrate(i) => &i.attrs,
        Item::Fn(i) => &i.attrs,
        Item::ForeignMod(i) => &i.attrs,
        Item::Impl(i) => &i.attrs,
        Item::Macro(i) => &i.attrs,
        Item::Mod(i) => &i.attrs,
        Item::Static(i) => &i.attrs,
        Item::Struct(i) => &i.attrs,
        Item::Trait(i) => &i.attrs,
        Item::TraitAlias(i) => &i.attrs,
        Item::Type(i) => &i.attrs,
        Item::Union(i) => &i.attrs,
        Item::Use(i) => &i.attrs,
        _ => return None,
    })
}

/// Walks a file's tokens (macro bodies included) for paths and strings.
#[derive(Default)]
struct Scan {
    paths: Vec<(Vec<String>, usize)>,
    strings: Vec<(String, usize)>,
}

impl Scan {
    fn stream(&mut self, stream: TokenStream) {
        let tokens: Vec<TokenTree> = stream.into_iter().collect();
        let mut i = 0;
        while i < tokens.len() {
            match &tokens[i] {
                TokenTree::Group(group) => {
                    if !is_doc_attribute(&tokens, i) {
                        self.stream(group.stream());
                    }
                    i += 1;
                }
                TokenTree::Literal(literal) => {
                    if let Ok(string) = syn::parse_str::<syn::LitStr>(&literal.to_string()) {
                        self.strings.push((string.value(), literal.span().start().line));
                    }
                    i += 1;
                }
                TokenTree::Ident(ident) if !follows_path_separator(&tokens, i) => {
                    let line = ident.span().start().line;
                    let (leaves, next) = path_at(&tokens, i);
                    self.paths.extend(leaves.into_iter().map(|segments| (segments, line)));
                    i = next;
                }
                _ => i += 1,
            }
        }
    }
}

/// `#[doc = "…"]`, what a doc comment becomes: its text is prose, not code.
fn is_doc_attribute(tokens: &[TokenTree], i: usize) -> bool {
    let TokenTree::Group(group) = &tokens[i] else { return false };
    group.delimiter() == Delimiter::Bracket
        && i > 0
        && matches!(&tokens[i - 1], TokenTree::Punct(p) if p.as_char() == '#' || p.as_char() == '!')
        && matches!(group.stream().into_iter().next(), Some(TokenTree::Ident(ident)) if ident == "doc")
}

fn is_path_separator(tokens: &[TokenTree], i: usize) -> bool {
    matches!(tokens.get(i), Some(TokenTree::Punct(p)) if p.as_char() == ':' && p.spacing() == Spacing::Joint)
        && matches!(tokens.get(i + 1), Some(TokenTree::Punct(p)) if p.as_char() == ':')
}

fn follows_path_separator(tokens: &[TokenTree], i: usize) -> bool {
    i >= 2 && is_path_separator(tokens, i - 2)
}

/// The path starting at the identifier `tokens[start]`: its leaves (one
/// for a plain path, one per leaf of a `{…}` use-tree group) and the index
/// after it.
fn path_at(tokens: &[TokenTree], start: usize) -> (Vec<Vec<String>>, usize) {
    let mut segments = Vec::new();
    let mut i = start;
    while let Some(TokenTree::Ident(ident)) = tokens.get(i) {
        segments.push(ident.to_string());
        if !is_path_separator(tokens, i + 1) {
            return (vec![segments], i + 1);
        }
        i += 3;
        if let Some(TokenTree::Group(group)) = tokens.get(i)
            && group.delimiter() == Delimiter::Brace
        {
            let inner: Vec<TokenTree> = group.stream().into_iter().collect();
            let mut leaves = Vec::new();
            let mut j = 0;
            while j < inner.len() {
                if let TokenTree::Ident(_) = &inner[j] {
                    let (tails, next) = path_at(&inner, j);
                    leaves.extend(tails.into_iter().map(|tail| [segments.clone(), tail].concat()));
                    j = next;
                } else {
                    j += 1;
                }
            }
            return (leaves, i + 1);
        }
    }
    (vec![segments], i)
}
