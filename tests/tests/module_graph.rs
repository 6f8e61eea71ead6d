//! No crate of the workspace has modules importing each other in a circle, and in each the
//! folders (the coordinator's subsystems, the shared crate's delta, rollout and trust) import
//! one another in one direction only. Read from the source: every `crate::…` and `super::…`
//! path outside comments and test modules is an arrow from the file it is written in to the
//! module it names. (Tests may import what they test from anywhere.)
//!
//! Run it alone with `cargo test -p ferry-tests --test module_graph -- --nocapture`; a failure
//! prints each circle and the arrows between folders.
//!
//! Today the coordinator's folders stand in these layers, each importing only from those to its
//! right (the top-level files `api`, `config` and `app` sit between them: `app` holds the parts
//! the folders own and imports no operation back):
//!
//! ```text
//! http, agents ─▶ rollout ─▶ registry, fleet ─▶ store ─▶ rules
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The crates whose sources are read, relative to this crate.
const CRATES: [&str; 3] = ["../shared/src", "../agent/src", "../coordinator/src"];

#[test]
fn no_module_is_in_an_import_circle_and_folders_import_one_way() {
    for krate in CRATES {
        let graph = Graph::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join(krate));
        assert!(
            graph.arrows.len() > 10,
            "{krate}: only {} modules read",
            graph.arrows.len()
        );
        let files = graph.circles();
        let folders = graph.folders().circles();
        // The arrows that hold each circle together, to see where to cut.
        let circled: BTreeSet<&String> = files.iter().flatten().collect();
        let inside: BTreeMap<&String, Vec<&String>> = graph
            .arrows
            .iter()
            .filter(|(from, _)| circled.contains(from))
            .map(|(from, tos)| (from, tos.iter().filter(|t| circled.contains(t)).collect()))
            .collect();
        let report = format!(
            "{krate}\nfile circles: {files:#?}\narrows inside them: {inside:#?}\nfolder circles: {folders:#?}\nfolder arrows: {:#?}",
            graph.folders().arrows
        );
        assert!(
            files.is_empty(),
            "modules import each other in a circle\n{report}"
        );
        assert!(
            folders.is_empty(),
            "folders import each other in a circle\n{report}"
        );
    }
}

#[test]
fn paths_are_read_as_the_compiler_reads_them() {
    let own = ["store", "codec"].map(String::from);
    let found = references(
        "use crate::agents::{quic, fetch::Batch};\n\
         // crate::rules::lineage in a comment\n\
         let x = super::tables::X; crate::http::router::serve(); use super::*;\n",
        &own,
    );
    assert_eq!(
        found,
        [
            vec!["agents", "quic"],
            vec!["agents", "fetch", "Batch"],
            vec!["store", "tables", "X"],
            vec!["http", "router", "serve"],
        ]
        .map(|p| p.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    );
}

/// Arrows between modules (by path, `::`-joined; the crate root is "").
struct Graph {
    arrows: BTreeMap<String, BTreeSet<String>>,
}

impl Graph {
    fn read(src: &Path) -> Self {
        let mut sources = Vec::new();
        walk(src, src, &mut sources);
        let modules: BTreeSet<Vec<String>> = sources.iter().map(|(m, _)| m.clone()).collect();
        let mut arrows: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (module, text) in &sources {
            let from = module.join("::");
            let entry = arrows.entry(from.clone()).or_default();
            for path in references(text, module) {
                // The longest prefix that is a module (a file) is what the path imports.
                let to = (1..=path.len())
                    .rev()
                    .map(|n| path[..n].to_vec())
                    .find(|p| modules.contains(p));
                if let Some(to) = to.map(|p| p.join("::"))
                    && to != from
                {
                    entry.insert(to);
                }
            }
        }
        Graph { arrows }
    }

    /// The graph between top-level folders (a folder's files taken together); the top-level
    /// files (`app`, `api`, `config`, …) are left out: they are the layer above the folders or
    /// plain vocabulary below them, not subsystems.
    fn folders(&self) -> Graph {
        let folder_of = |m: &str| m.split_once("::").map(|(top, _)| top.to_string());
        let folders: BTreeSet<String> = self.arrows.keys().filter_map(|m| folder_of(m)).collect();
        let mut arrows: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (from, tos) in &self.arrows {
            let Some(a) = folder_of(from) else { continue };
            let entry = arrows.entry(a.clone()).or_default();
            for to in tos {
                let b = folder_of(to).or_else(|| folders.get(to).cloned());
                if let Some(b) = b
                    && b != a
                {
                    entry.insert(b);
                }
            }
        }
        Graph { arrows }
    }

    /// Strongly connected sets of more than one module (Tarjan's algorithm).
    fn circles(&self) -> Vec<BTreeSet<String>> {
        struct Walk<'a> {
            graph: &'a Graph,
            index: BTreeMap<&'a str, (usize, usize)>,
            stack: Vec<&'a str>,
            on_stack: BTreeSet<&'a str>,
            found: Vec<BTreeSet<String>>,
        }
        impl<'a> Walk<'a> {
            fn visit(&mut self, v: &'a str) {
                let n = self.index.len();
                self.index.insert(v, (n, n));
                self.stack.push(v);
                self.on_stack.insert(v);
                for w in self.graph.arrows.get(v).into_iter().flatten() {
                    let w = w.as_str();
                    if !self.index.contains_key(w) {
                        self.visit(w);
                        let low = self.index[w].1.min(self.index[v].1);
                        self.index.entry(v).and_modify(|e| e.1 = low);
                    } else if self.on_stack.contains(w) {
                        let low = self.index[w].0.min(self.index[v].1);
                        self.index.entry(v).and_modify(|e| e.1 = low);
                    }
                }
                let (i, low) = self.index[v];
                if i == low {
                    let mut set = BTreeSet::new();
                    while let Some(w) = self.stack.pop() {
                        self.on_stack.remove(w);
                        set.insert(w.to_string());
                        if w == v {
                            break;
                        }
                    }
                    if set.len() > 1 {
                        self.found.push(set);
                    }
                }
            }
        }
        let mut walk = Walk {
            graph: self,
            index: BTreeMap::new(),
            stack: Vec::new(),
            on_stack: BTreeSet::new(),
            found: Vec::new(),
        };
        for v in self.arrows.keys() {
            if !walk.index.contains_key(v.as_str()) {
                walk.visit(v);
            }
        }
        walk.found
    }
}

/// Every `.rs` file under `dir` (binaries left out: they are not modules of the library),
/// with its module path.
fn walk(src: &Path, dir: &Path, out: &mut Vec<(Vec<String>, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("source folder readable")
        .map(|e| e.expect("source entry readable").path())
        .collect();
    entries.sort();
    for path in entries {
        let rel = path.strip_prefix(src).expect("under src");
        if path.is_dir() {
            if rel != Path::new("bin") {
                walk(src, &path, out);
            }
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let mut module: Vec<String> = rel
            .with_extension("")
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
            module.pop();
        }
        if module.last().map(String::as_str) == Some("tests") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("source readable");
        // An inline test module ends the file, by this workspace's convention.
        let text = match text.find("#[cfg(test)]\nmod tests {") {
            Some(at) => text[..at].to_owned(),
            None => text,
        };
        out.push((module, text));
    }
}

/// The module paths `text` (the source of module `own`) names through `crate::` or `super::`,
/// comments left out; `{a, b::c}` groups are expanded; glob imports name nothing.
fn references(text: &str, own: &[String]) -> Vec<Vec<String>> {
    let code: String = text
        .lines()
        .map(|line| line.split_once("//").map_or(line, |(code, _)| code))
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    let mut at = 0;
    while at < code.len() {
        let rest = &code[at..];
        let (base, skip) = if rest.starts_with("crate::") && !ident_before(bytes, at) {
            (Vec::new(), "crate::".len())
        } else if rest.starts_with("super::") && !ident_before(bytes, at) {
            (own[..own.len().saturating_sub(1)].to_vec(), "super::".len())
        } else {
            at += rest.chars().next().map_or(1, char::len_utf8);
            continue;
        };
        let (paths, used) = parse_tree(&code[at + skip..]);
        for path in paths {
            if !path.is_empty() {
                found.push([base.clone(), path].concat());
            }
        }
        at += skip + used.max(1);
    }
    found
}

fn ident_before(bytes: &[u8], at: usize) -> bool {
    at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_')
}

/// A use-tree at the start of `s`: its paths (a glob ends its path), and the bytes it took.
fn parse_tree(s: &str) -> (Vec<Vec<String>>, usize) {
    let mut path = Vec::new();
    let mut at = 0;
    loop {
        let ident: String = s[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !ident.is_empty() {
            at += ident.len();
            path.push(ident);
            if s[at..].starts_with("::") {
                at += 2;
                continue;
            }
            return (vec![path], at);
        }
        if s[at..].starts_with('{') {
            at += 1;
            let mut paths = Vec::new();
            loop {
                let skipped = s[at..].len() - s[at..].trim_start().len();
                at += skipped;
                if s[at..].starts_with('}') || at >= s.len() {
                    return (paths, at + 1);
                }
                let (inner, used) = parse_tree(&s[at..]);
                for p in inner {
                    // `self` in a group is the group's own path.
                    let p: Vec<String> = p.into_iter().filter(|x| x != "self").collect();
                    paths.push([path.clone(), p].concat());
                }
                at += used.max(1);
                // Past an `as` alias, to the next item.
                while at < s.len() && !s[at..].starts_with(',') && !s[at..].starts_with('}') {
                    at += s[at..].chars().next().map_or(1, char::len_utf8);
                }
                if s[at..].starts_with(',') {
                    at += 1;
                }
            }
        }
        // A glob or anything else ends the path.
        return (vec![path], at);
    }
}
