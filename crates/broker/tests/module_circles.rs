//! The workspace's rule that no module imports one that imports it back (ARCHITECTURE.md),
//! checked over every crate's `src`: each file's module references (`use` trees and paths
//! from `crate::`, `super::`, `self::` or a child module's name) are resolved to the files
//! of the modules they name, and every set of files that reach each other is a circle.
//! Test-only code (`#[cfg(test)]` items) is left out: a test module may use what it tests.
//! A module's references to its own submodules are no edge (it declares them): `cli` may
//! dispatch to `cli::topic`, which takes `cli`'s shared options.
//!
//! It reads the code as text, as a reviewer would: a reference it cannot resolve to a module
//! file of the same crate (another crate, a re-export from the crate root) is no edge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Crates whose known circle is being taken apart on another branch; drop a name once its
/// circle is gone (none now).
const TOLERATED: &[&str] = &[];

/// A crate's modules: each module path (`["handlers", "produce"]`) and its file.
struct ModuleTree {
    files: BTreeMap<Vec<String>, PathBuf>,
}

impl ModuleTree {
    fn load(src: &Path) -> ModuleTree {
        let mut tree = ModuleTree {
            files: BTreeMap::new(),
        };
        for root in ["lib.rs", "main.rs"] {
            let file = src.join(root);
            if file.is_file() {
                tree.add(Vec::new(), file, true);
            }
        }
        tree
    }

    /// Adds the module in `file` and, through its `mod NAME;` declarations, its children.
    /// A "mod-rs" file (the crate root, `mod.rs`, one named by `#[path]`) keeps its children
    /// beside it; `a.rs` keeps them in `a/`.
    fn add(&mut self, module: Vec<String>, file: PathBuf, mod_rs: bool) {
        let Ok(text) = std::fs::read_to_string(&file) else {
            return;
        };
        let code = without_test_items(&strip_comments_and_strings(&text));
        let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
        let children_dir = if mod_rs {
            dir.clone()
        } else {
            let stem = file
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default();
            dir.join(stem)
        };
        self.files.insert(module.clone(), file);
        for (name, path_attr) in module_declarations(&code, &text) {
            let mut child = module.clone();
            child.push(name.clone());
            if let Some(p) = path_attr {
                self.add(child, dir.join(p), true);
                continue;
            }
            let flat = children_dir.join(format!("{name}.rs"));
            let nested = children_dir.join(&name).join("mod.rs");
            if flat.is_file() {
                self.add(child, flat, false);
            } else if nested.is_file() {
                self.add(child, nested, true);
            }
        }
    }

    fn has(&self, module: &[String]) -> bool {
        self.files.contains_key(module)
    }

    /// The deepest module of `path` (from `base`), or `None` when its first step leaves
    /// the crate's modules.
    fn resolve(&self, base: &[String], path: &[String]) -> Option<Vec<String>> {
        let mut at = base.to_vec();
        let mut moved = false;
        for seg in path {
            let mut next = at.clone();
            next.push(seg.clone());
            if self.has(&next) {
                at = next;
                moved = true;
            } else {
                break;
            }
        }
        (moved || !base.is_empty()).then_some(at)
    }

    /// Each module file and the module files it refers to.
    fn edges(&self) -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
        let mut edges = BTreeMap::new();
        for (module, file) in &self.files {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            let code = without_test_items(&strip_comments_and_strings(&text));
            let mut to = BTreeSet::new();
            for path in paths(&code) {
                let target = self.target(module, &path);
                if let Some(target) = target {
                    // A module's use of its own submodules is part of what it is (it
                    // declares them, re-exports and dispatches to them); the submodules'
                    // use of it is the edge that counts.
                    if !target.starts_with(module) {
                        if let Some(f) = self.files.get(&target) {
                            to.insert(f.clone());
                        }
                    }
                }
            }
            edges.insert(file.clone(), to);
        }
        edges
    }

    fn target(&self, module: &[String], path: &[String]) -> Option<Vec<String>> {
        let first = path.first()?;
        match first.as_str() {
            "crate" => {
                let rest = &path[1..];
                // The crate root itself (its re-exports of other crates) ties nothing.
                let resolved = self.resolve(&[], rest)?;
                (!resolved.is_empty()).then_some(resolved)
            }
            "super" | "self" => {
                let mut base = module.to_vec();
                let mut rest = path;
                while let Some(seg) = rest.first() {
                    match seg.as_str() {
                        "super" => {
                            base.pop();
                        }
                        "self" => {}
                        _ => break,
                    }
                    rest = &rest[1..];
                }
                let resolved = self.resolve(&base, rest)?;
                (!resolved.is_empty()).then_some(resolved)
            }
            name => {
                let mut child = module.to_vec();
                child.push(name.to_string());
                if self.has(&child) {
                    self.resolve(module, path)
                } else {
                    None
                }
            }
        }
    }
}

/// The text with comments, string and char literals blanked (newlines kept), so that
/// neither a doc link nor a message reads as a reference.
fn strip_comments_and_strings(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if b[i] == '\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
            }
        } else if c == 'r'
            && matches!(next, Some('"') | Some('#'))
            && (i == 0 || !(b[i - 1].is_alphanumeric() || b[i - 1] == '_'))
        {
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                match b.get(j) {
                    None => break,
                    Some('"') if (0..hashes).all(|h| b.get(j + 1 + h) == Some(&'#')) => {
                        j += 1 + hashes;
                        break;
                    }
                    Some('\n') => out.push('\n'),
                    _ => {}
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    i += 1;
                } else if b[i] == '\n' {
                    out.push('\n');
                }
                i += 1;
            }
            out.push_str("\"\"");
            i += 1;
        } else if c == '\'' && (next == Some('\\') || b.get(i + 2) == Some(&'\'')) {
            // A char literal ('"', '\n'); a lifetime ('a) has no closing quote here.
            i += 1;
            while i < b.len() && b[i] != '\'' {
                if b[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            out.push_str("' '");
            i += 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The code without the items under `#[cfg(test)]` (a `;`-ended item, or a braced one).
fn without_test_items(code: &str) -> String {
    const MARK: &str = "#[cfg(test)]";
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at]);
        let after = &rest[at + MARK.len()..];
        let mut depth = 0usize;
        let mut end = after.len();
        for (i, ch) in after.char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// `mod NAME;` declarations (not inline modules), each with its `#[path = "..."]` if any;
/// the path is read from the original text, where the stripped code has blanked it.
fn module_declarations(code: &str, original: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let tokens = tokens(code);
    for (i, t) in tokens.iter().enumerate() {
        if t != "mod" {
            continue;
        }
        let (Some(name), Some(end)) = (tokens.get(i + 1), tokens.get(i + 2)) else {
            continue;
        };
        if end != ";" || !is_ident(name) {
            continue;
        }
        out.push((name.clone(), path_attribute(original, name)));
    }
    out
}

fn path_attribute(original: &str, name: &str) -> Option<String> {
    let lines: Vec<&str> = original.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let decl = line.trim_start();
        let declares = decl
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .any(|w| w[0] == "mod" && w[1] == format!("{name};"));
        if !declares {
            continue;
        }
        for prev in lines[..i].iter().rev() {
            let p = prev.trim();
            if let Some(value) = p.strip_prefix("#[path").and_then(|v| v.split('"').nth(1)) {
                return Some(value.to_string());
            }
            if !p.starts_with("#[") && !p.starts_with("///") {
                break;
            }
        }
    }
    None
}

fn is_ident(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
        && t.chars().all(|c| c.is_alphanumeric() || c == '_')
}

/// Identifiers, `::`, and single punctuation characters, in order.
fn tokens(code: &str) -> Vec<String> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            // `r#name` is the identifier `name`.
            out.push(chars[start..i].iter().collect());
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push("::".to_string());
            i += 2;
        } else if c.is_whitespace() {
            i += 1;
        } else {
            out.push(c.to_string());
            i += 1;
        }
    }
    out
}

/// Every module path the code names: `a::b::c`, and each leaf of a `use` tree
/// (`crate::{a, b::{c, d}}`). A path's first segment is preceded by no `::` (nor `$`, a
/// macro's `$crate`).
fn paths(code: &str) -> Vec<Vec<String>> {
    let tokens = tokens(code);
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let starts = is_ident(&tokens[i])
            && tokens.get(i + 1).is_some_and(|t| t == "::")
            && (i == 0 || (tokens[i - 1] != "::" && tokens[i - 1] != "$"));
        if starts {
            i = tree(&tokens, i, Vec::new(), &mut out);
        } else {
            i += 1;
        }
    }
    out
}

/// Reads one path (or `use` tree) from `tokens[i]` with `prefix` before it; returns the
/// index after it.
fn tree(
    tokens: &[String],
    mut i: usize,
    mut prefix: Vec<String>,
    out: &mut Vec<Vec<String>>,
) -> usize {
    loop {
        match tokens.get(i).map(String::as_str) {
            Some("{") => {
                i += 1;
                loop {
                    match tokens.get(i).map(String::as_str) {
                        None => return i,
                        Some("}") => return i + 1,
                        Some(",") => i += 1,
                        Some(_) => i = tree(tokens, i, prefix.clone(), out),
                    }
                }
            }
            Some(t) if is_ident(t) => {
                prefix.push(t.to_string());
                i += 1;
                if tokens.get(i).map(String::as_str) == Some("::") {
                    i += 1;
                    continue;
                }
                out.push(prefix);
                return i;
            }
            _ => {
                // `*`, or a path ending in `::<` (a turbofish): what is before it.
                out.push(prefix);
                return i;
            }
        }
    }
}

/// The circles among `edges`: every strongly connected set of more than one file.
fn circles(edges: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Vec<BTreeSet<PathBuf>> {
    let reach = |from: &PathBuf| -> BTreeSet<PathBuf> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(f) = stack.pop() {
            for t in edges.get(&f).into_iter().flatten() {
                if seen.insert(t.clone()) {
                    stack.push(t.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&PathBuf, BTreeSet<PathBuf>> =
        edges.keys().map(|f| (f, reach(f))).collect();
    let mut out: Vec<BTreeSet<PathBuf>> = Vec::new();
    for (f, r) in &reaches {
        if !r.contains(*f) || out.iter().any(|c| c.contains(*f)) {
            continue;
        }
        let circle: BTreeSet<PathBuf> = r
            .iter()
            .filter(|g| reaches.get(g).is_some_and(|rg| rg.contains(*f)))
            .cloned()
            .collect();
        out.push(circle);
    }
    out
}

fn describe(circle: &BTreeSet<PathBuf>, edges: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> String {
    let mut lines = Vec::new();
    for f in circle {
        for t in edges.get(f).into_iter().flatten() {
            if circle.contains(t) {
                lines.push(format!("  {} -> {}", f.display(), t.display()));
            }
        }
    }
    lines.join("\n")
}

fn circles_of_crate(src: &Path) -> (Vec<BTreeSet<PathBuf>>, BTreeMap<PathBuf, BTreeSet<PathBuf>>) {
    let edges = ModuleTree::load(src).edges();
    (circles(&edges), edges)
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut found = Vec::new();
    let mut checked = 0;
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&crates)
        .expect("the workspace's crates folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for dir in entries {
        let src = dir.join("src");
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if !src.is_dir() || TOLERATED.contains(&name) {
            continue;
        }
        checked += 1;
        let (circles, edges) = circles_of_crate(&src);
        for c in circles {
            found.push(describe(&c, &edges));
        }
    }
    assert!(
        checked >= 10,
        "only {checked} crates found under {}",
        crates.display()
    );
    assert!(
        found.is_empty(),
        "module circles:\n{}",
        found.join("\n  --\n")
    );
}

/// The broker's own tree resolves as the compiler does: a known reference is an edge.
#[test]
fn reads_the_references_the_broker_makes() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let (_, edges) = circles_of_crate(&src);
    let edge = |from: &str, to: &str| {
        edges
            .get(&src.join(from))
            .is_some_and(|t| t.contains(&src.join(to)))
    };
    assert!(edges.len() > 20, "{} module files", edges.len());
    // `use crate::partition::{append_error_code, ...}`, a `use` tree.
    assert!(edge("group_ports.rs", "partition.rs"));
    // `crate::group_ports::coordinator(...)`, a path in an expression.
    assert!(edge("wiring.rs", "group_ports.rs"));
    // `use crate::config::topic::TopicConfig`: a module below a module.
    assert!(edge("partition.rs", "config/topic.rs"));
    // A doc comment's link is no edge.
    assert!(!edge("acl.rs", "authz.rs"));
}

/// A crate laid out in a temporary folder: `(file, text)` pairs under `src`.
fn crate_of(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary folder");
    for (path, text) in files {
        let file = dir.path().join("src").join(path);
        std::fs::create_dir_all(file.parent().expect("a folder")).expect("its folder");
        std::fs::write(file, text).expect("the file");
    }
    dir
}

#[test]
fn finds_a_circle_through_use_trees_super_and_nested_modules() {
    let dir = crate_of(&[
        (
            "lib.rs",
            "pub mod a;\npub mod b;\n#[path = \"c/c_impl.rs\"]\npub mod c;\n",
        ),
        (
            "a.rs",
            "use crate::{b::Thing, c::leaf::Leaf};\npub struct Top;\n",
        ),
        ("b.rs", "pub mod inner;\npub struct Thing;\n"),
        (
            "b/inner.rs",
            "pub fn f() -> super::super::c::leaf::Leaf { todo!() }\n",
        ),
        ("c/c_impl.rs", "pub mod leaf;\n"),
        (
            "c/leaf.rs",
            "// crate::a is named only in a comment\npub struct Leaf;\n",
        ),
    ]);
    let (none, _) = circles_of_crate(&dir.path().join("src"));
    assert!(none.is_empty(), "{none:?}");

    std::fs::write(
        dir.path().join("src/c/leaf.rs"),
        "pub struct Leaf(pub crate::a::Top);\n",
    )
    .expect("the file");
    let (found, _) = circles_of_crate(&dir.path().join("src"));
    assert_eq!(found.len(), 1, "{found:?}");
    let names: BTreeSet<String> = found[0]
        .iter()
        .filter_map(|p| p.strip_prefix(dir.path().join("src")).ok())
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["a.rs".to_string(), "c/leaf.rs".to_string()])
    );
}

#[test]
fn a_module_and_its_submodules_are_no_circle() {
    let dir = crate_of(&[
        ("lib.rs", "pub mod cli;\n"),
        (
            "cli/mod.rs",
            "mod topic;\npub use topic::run;\npub struct Opts;\n",
        ),
        ("cli/topic.rs", "use super::Opts;\npub fn run(_: Opts) {}\n"),
    ]);
    let (found, edges) = circles_of_crate(&dir.path().join("src"));
    assert!(found.is_empty(), "{found:?}");
    assert!(
        edges[&dir.path().join("src/cli/topic.rs")].contains(&dir.path().join("src/cli/mod.rs"))
    );
}

#[test]
fn test_code_and_strings_tie_nothing() {
    let dir = crate_of(&[
        ("lib.rs", "pub mod a;\npub mod b;\n"),
        (
            "a.rs",
            "pub fn f() -> &'static str { \"crate::b::g\" }\n#[cfg(test)]\nmod tests {\n    use crate::b::g;\n}\n",
        ),
        ("b.rs", "pub fn g() { crate::a::f(); }\n"),
    ]);
    let (found, edges) = circles_of_crate(&dir.path().join("src"));
    assert!(found.is_empty(), "{found:?}");
    assert!(edges[&dir.path().join("src/b.rs")].contains(&dir.path().join("src/a.rs")));
}
