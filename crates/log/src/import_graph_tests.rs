//! Guards the crate's module layering: no module of strom-log reaches, through the imports of
//! its non-test code, a module that imports it back (a circle of two files is tolerated; the
//! issue that broke the last larger one asks for no more). `lib.rs` is left out: it is the
//! facade that re-exports everything.

use std::collections::{BTreeMap, BTreeSet};

/// Drops every item under `#[cfg(test)]` (test modules may use the whole crate).
fn strip_test_items(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "#[cfg(test)]" {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let mut depth = 0i64;
        let mut opened = false;
        for item_line in lines.by_ref() {
            let code = without_strings(item_line);
            depth += code.matches('{').count() as i64 - code.matches('}').count() as i64;
            opened |= code.contains('{');
            if (opened && depth <= 0) || (!opened && code.trim_end().ends_with(';')) {
                break;
            }
        }
    }
    out
}

/// The line with string literals emptied, so braces inside them do not count (outside this
/// file the crate has no brace or quote char literals, nor raw strings, to trip over).
fn without_strings(line: &str) -> String {
    let mut out = String::new();
    let mut in_string = false;
    let mut escaped = false;
    for c in line.chars() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else {
            out.push(c);
        }
    }
    out
}

/// Module names `code` reaches as `crate::name` or inside `crate::{name::…, …}`.
fn imported_modules(code: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let group = if let Some(inner) = rest.strip_prefix('{') {
            &inner[..inner.find('}').unwrap_or(inner.len())]
        } else {
            rest
        };
        for part in group.split(',') {
            let name: String = part
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if modules.contains(&name) {
                found.insert(name);
            }
            if !rest.starts_with('{') {
                break;
            }
        }
    }
    found
}

fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut sources = BTreeMap::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if path.extension().is_some_and(|e| e == "rs") && stem != "lib" {
            sources.insert(stem.to_string(), std::fs::read_to_string(&path).unwrap());
        }
    }
    let modules: BTreeSet<String> = sources.keys().cloned().collect();
    sources
        .into_iter()
        .map(|(name, text)| {
            let code: String = strip_test_items(&text)
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            let mut deps = imported_modules(&code, &modules);
            deps.remove(&name);
            (name, deps)
        })
        .collect()
}

/// Modules reachable from `from` along import edges.
fn reachable(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.to_string()];
    while let Some(m) = stack.pop() {
        for dep in graph.get(&m).into_iter().flatten() {
            if seen.insert(dep.clone()) {
                stack.push(dep.clone());
            }
        }
    }
    seen
}

/// The strongly connected groups of more than `max_files` modules: each is an import circle.
fn circles_over(graph: &BTreeMap<String, BTreeSet<String>>, max_files: usize) -> Vec<Vec<String>> {
    let reach: BTreeMap<&String, BTreeSet<String>> =
        graph.keys().map(|m| (m, reachable(graph, m))).collect();
    let mut placed = BTreeSet::new();
    let mut circles = Vec::new();
    for m in graph.keys() {
        if placed.contains(m) {
            continue;
        }
        let group: Vec<String> = graph
            .keys()
            .filter(|o| *o == m || (reach[m].contains(*o) && reach[*o].contains(m)))
            .cloned()
            .collect();
        placed.extend(group.iter().cloned());
        if group.len() > max_files {
            circles.push(group);
        }
    }
    circles
}

#[test]
fn no_import_circle_of_more_than_two_modules() {
    let graph = import_graph();
    assert!(
        graph["segment"].contains("offset_index"),
        "the parser sees imports"
    );
    assert!(
        !graph["log"].contains("tests"),
        "test modules are not edges"
    );
    let circles = circles_over(&graph, 2);
    assert!(
        circles.is_empty(),
        "import circles in strom-log: {circles:?}"
    );
}

#[test]
fn circle_detection_finds_a_circle() {
    let edge = |a: &str, b: &[&str]| (a.to_string(), b.iter().map(|s| s.to_string()).collect());
    let graph: BTreeMap<String, BTreeSet<String>> = [
        edge("a", &["b"]),
        edge("b", &["c"]),
        edge("c", &["a", "d"]),
        edge("d", &[]),
    ]
    .into_iter()
    .collect();
    assert_eq!(circles_over(&graph, 2), vec![vec!["a", "b", "c"]]);
    let code = "use crate::{batch::X, error::{E, F}};\nfn f() { crate::scan::go() }";
    let modules = ["batch", "error", "scan", "log"]
        .map(String::from)
        .into_iter()
        .collect();
    assert_eq!(
        imported_modules(code, &modules),
        ["batch", "error", "scan"].map(String::from).into()
    );
    assert_eq!(
        strip_test_items("a\n#[cfg(test)]\nmod t {\n  \"}\"\n}\nb\n"),
        "a\nb\n"
    );
}
