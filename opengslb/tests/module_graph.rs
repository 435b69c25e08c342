//! The top-level modules of `opengslb` import downwards only: this test reads every `crate::…` path
//! under `opengslb/src` (outside test code), builds the graph of which top-level module uses which,
//! and fails on any import circle, naming the modules and the files that close it.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// The module path of a source file (`src/xdp/sync.rs` → `[xdp, sync]`, `src/xdp/mod.rs` → `[xdp]`);
/// empty for the crate's roots.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let Ok(rel) = file.strip_prefix(src) else {
        return Vec::new();
    };
    let mut parts: Vec<String> = rel
        .components()
        .filter_map(|c| c.as_os_str().to_str())
        .map(|c| c.strip_suffix(".rs").unwrap_or(c).to_owned())
        .collect();
    if parts.last().is_some_and(|l| l == "mod") {
        parts.pop();
    }
    if parts.len() == 1 && matches!(parts[0].as_str(), "lib" | "main") {
        parts.clear();
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code without comments and without the contents of string and character literals (so that
/// neither a `//` in a URL nor a brace in a string misleads what follows).
fn strip(text: &str) -> String {
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
            i += 2;
            while i < b.len() && !(b[i] == '*' && b.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
        } else if c == 'r' && matches!(next, Some('"' | '#')) && !prev_is_ident(&b, i) {
            // A raw string: r"…", r#"…"#, …
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
                    Some('"') if (1..=hashes).all(|k| b.get(j + k) == Some(&'#')) => {
                        j += 1 + hashes;
                        break;
                    }
                    Some(_) => j += 1,
                }
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < b.len() && b[i] != '"' {
                i += if b[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && (next == Some('\\') || b.get(i + 2) == Some(&'\'')) {
            // A character literal ('x', '\n', '\''), not a lifetime.
            i += if next == Some('\\') { 2 } else { 1 };
            while i < b.len() && b[i] != '\'' {
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn prev_is_ident(b: &[char], i: usize) -> bool {
    i > 0 && (b[i - 1].is_alphanumeric() || b[i - 1] == '_')
}

/// Stripped code without its `#[cfg(test)]` items: what tests import does not shape the architecture.
fn production_code(text: &str) -> String {
    let code = strip(text);
    let mut out = String::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at + "#[cfg(test)]".len()..];
        // The item ends at its first `;` if that comes before its first `{`, else where that block closes.
        let semi = item.find(';');
        let open = item.find('{');
        let end = match (semi, open) {
            (Some(s), Some(o)) if s < o => s + 1,
            (Some(s), None) => s + 1,
            (_, Some(o)) => {
                let mut depth = 0;
                let mut end = item.len();
                for (k, ch) in item[o..].char_indices() {
                    match ch {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = o + k + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            (None, None) => item.len(),
        };
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

/// The identifier at the start of `s`.
fn ident(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// The first segment of every path in `group` (the inside of `{…}` after `::`), at its top level.
fn group_heads(group: &str, found: &mut BTreeSet<String>) {
    let mut depth = 0;
    let mut item_start = true;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => item_start = true,
            c if item_start && !c.is_whitespace() => {
                item_start = false;
                let name = ident(&group[i..]);
                if !name.is_empty() {
                    found.insert(name);
                }
            }
            _ => {}
        }
    }
}

/// Every top-level module a file at `module` names: after `crate::`, including inside
/// `crate::{a::x, b}`, and after as many `super::` as lead back to the crate's root.
fn crate_paths(code: &str, module: &[String]) -> BTreeSet<String> {
    // `crate ::\n    x` is `crate::x`.
    let mut code: String = code.split_whitespace().collect::<Vec<_>>().join(" ");
    code = code.replace(":: ", "::").replace(" ::", "::");
    let mut found = BTreeSet::new();
    let heads = |rest: &str, found: &mut BTreeSet<String>| {
        if let Some(group) = rest.strip_prefix('{') {
            group_heads(group, found);
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                found.insert(name);
            }
        }
    };
    for (at, _) in code.match_indices("crate::") {
        // `opengslb_crate::` or `$crate::` are not ours.
        if code[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$')
        {
            continue;
        }
        heads(&code[at + "crate::".len()..], &mut found);
    }
    let mut at = 0;
    while let Some(k) = code[at..].find("super::") {
        let start = at + k;
        at = start + "super::".len();
        if code[..start]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
        {
            continue;
        }
        let mut ups = 1;
        while code[at..].starts_with("super::") {
            ups += 1;
            at += "super::".len();
        }
        // Only a path that climbs to the crate's root names a top-level module.
        if ups == module.len() {
            heads(&code[at..], &mut found);
        }
    }
    found
}

/// Strongly connected components with more than one module (Tarjan), each sorted.
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn the_top_level_modules_form_no_import_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    // Only these are edges: a `crate::` path may also name an item of the crate's root.
    let modules: BTreeSet<String> = files
        .iter()
        .filter_map(|f| module_path(&src, f).first().cloned())
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    // Which files make each edge, for the failure message.
    let mut by: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let module = module_path(&src, file);
        let Some(from) = module.first().cloned() else {
            continue;
        };
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("read source");
        let edges = graph.entry(from.clone()).or_default();
        for to in crate_paths(&production_code(&text), &module) {
            if to != from && modules.contains(&to) {
                edges.insert(to.clone());
                let shown = file
                    .strip_prefix(&src)
                    .unwrap_or(file)
                    .display()
                    .to_string();
                by.entry((from.clone(), to)).or_default().insert(shown);
            }
        }
    }
    let found = circles(&graph);
    let mut report = String::new();
    for circle in &found {
        report += &format!("circle: {}\n", circle.join(", "));
        for a in circle {
            for b in circle {
                if let Some(files) = by.get(&(a.clone(), b.clone())) {
                    let files: Vec<&str> = files.iter().map(String::as_str).collect();
                    report += &format!("  {a} -> {b}: {}\n", files.join(", "));
                }
            }
        }
    }
    println!(
        "{} top-level modules, {} import edges",
        graph.len(),
        graph.values().map(BTreeSet::len).sum::<usize>()
    );
    for (from, to) in &graph {
        let to: Vec<&str> = to.iter().map(String::as_str).collect();
        println!("  {from} -> {}", to.join(", "));
    }
    assert!(
        found.is_empty(),
        "import circles among the top-level modules of opengslb:\n{report}"
    );
    // The two DNS paths take the rendered table from `table` and know nothing of each other.
    for (a, b) in [("dns", "xdp"), ("xdp", "dns")] {
        assert!(
            !graph.get(a).is_some_and(|to| to.contains(b)),
            "{a} imports {b}: {:?}",
            by.get(&(a.to_owned(), b.to_owned()))
        );
    }
    // The operator's commands are a client of the HTTP API: they know nothing of the server's state,
    // so they work against any overwatch they can reach.
    let ctl: Vec<&str> = graph
        .get("ctl")
        .map(|to| to.iter().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(
        ctl,
        ["http_client"],
        "ctl imports only the HTTP client: {:?}",
        by.iter()
            .filter(|((from, _), _)| from == "ctl")
            .collect::<Vec<_>>()
    );
}

#[test]
fn the_reader_finds_paths_and_skips_test_code() {
    let code = "use crate::{config::{A, B}, table::normalize};\n\
                fn f() { crate::xdp::x(); opengslb_crate::y(); }\n\
                #[cfg(test)]\nmod tests {\n    use crate::agent::T;\n    fn g() {}\n}\n\
                // crate::metrics in a comment\n\
                #[cfg(test)]\nuse crate::cli;\n\
                #[cfg(test)] mod more;\n\
                use crate::dns;\n\
                const U: &str = \"http://x { crate::health\"; const C: char = '{';\n\
                /* crate::overwatch */ use crate\n    ::routing;\n\
                use super::super::{net, gossip::Node}; use super::sibling;\n";
    let found = crate_paths(&production_code(code), &["a".into(), "b".into()]);
    let want: BTreeSet<String> = ["config", "table", "xdp", "dns", "routing", "net", "gossip"]
        .map(String::from)
        .into();
    assert_eq!(found, want);
    // From a top-level file, one `super::` reaches the root.
    let found = crate_paths("use super::metrics::M;", &["cli".into()]);
    assert_eq!(found, BTreeSet::from(["metrics".to_owned()]));

    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(circles(&graph), vec![vec!["a", "b", "c"]]);
}
