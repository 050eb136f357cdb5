//! The architecture's layering, checked by reading the sources (ARCHITECTURE.md,
//! "Crates"). Cargo enforces the crate boundaries; this test enforces the rest:
//!
//! - inside the service crate, every top-level module has a layer, and a module only
//!   names modules of its own layer or below (`crate::x` outside test code);
//! - there is no import circle between modules, within a layer either;
//! - the core crate depends on no async runtime, RPC, HTTP or protobuf crate, and its
//!   model types derive no serde traits.
//!
//! A new module must be placed in [`LAYERS`]; the test fails until it is.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The service's top-level modules, lowest layer first. The lower crates' modules
/// (re-exported as `crate::model`, `crate::simulate`, ...) sit below all of them.
const LAYERS: &[&[&str]] = &[
    // the lower crates, re-exported under their old paths
    &[
        "model",
        "conventions",
        "content",
        "assemble",
        "classify",
        "detect",
        "attribute",
        "analyze",
        "simulate",
        "golden",
        "test_support",
    ],
    // foundations: the byte budget, TLS and tokens, failure-reason clustering, the
    // allocator's settings, zstd for what goes to disk
    &["memory", "security", "reasons", "allocator", "compress"],
    // listeners' bounds and the self-metrics registry
    &["net", "metrics"],
    // shards, assembly and analysis; the `Sink` and `Handoff` ports
    &["pipeline"],
    // sinks (the reason index is the pipeline's discovery stage, below it)
    &["aggregate"],
    &["cohorts"],
    &["store"],
    &["wal"],
    // receivers, which append to the log and hand to the pipeline
    &["ingest"],
    // outputs: the metrics push, alerts, the page and the API
    &["push"],
    &["alerts"],
    &["ui"],
    &["api"],
    // wiring
    &["config"],
    &["server"],
    &["cli"],
    // tests only
    &["goldens"],
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// Test code is left out: a file or directory named tests, and what
/// follows a `#[cfg(test)]` line in a file.
fn production_text(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    if name == "tests.rs" || path.components().any(|c| c.as_os_str() == "tests") {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    let mut kept = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            break;
        }
        let code = line.split("//").next().unwrap_or("");
        kept.push_str(code);
        kept.push('\n');
    }
    Some(kept)
}

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for entry in entries {
            rust_files(&entry, out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_path_buf());
    }
}

/// The modules named by `crate::name` paths, including `crate::{a, b::c}` groups.
fn named_modules(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        // `faultline_core::` and the like are other crates, not `crate::`.
        let before = rest[..at].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            rest = after;
            continue;
        }
        if let Some(group) = after.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        } else {
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
        rest = after;
    }
    out
}

/// Module → the other top-level modules its production code names.
fn service_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph = BTreeMap::new();
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_str().unwrap().to_owned();
        if file == "lib.rs" || file == "main.rs" {
            continue;
        }
        let module = file.trim_end_matches(".rs").to_owned();
        let mut files = Vec::new();
        rust_files(&path, &mut files);
        let mut named = BTreeSet::new();
        for f in files {
            if let Some(text) = production_text(&f) {
                named.extend(named_modules(&text));
            }
        }
        named.remove(&module);
        graph.insert(module, named);
    }
    graph
}

/// Every breach of the layering, one line each: a module without a layer, an import
/// from a lower layer to a higher one, an import circle.
fn breaches(graph: &BTreeMap<String, BTreeSet<String>>, layers: &[&[&str]]) -> Vec<String> {
    let layer_of = |m: &str| layers.iter().position(|l| l.contains(&m));
    let mut out = Vec::new();
    for (module, named) in graph {
        let Some(own) = layer_of(module) else {
            out.push(format!("module `{module}` has no layer in LAYERS"));
            continue;
        };
        for target in named {
            // A target without a layer is a crate-level item (a macro, a re-export) or
            // a module reported above.
            if let Some(t) = layer_of(target).filter(|&t| t > own) {
                out.push(format!(
                    "`{module}` (layer {own}) imports `{target}` (layer {t}), a higher layer"
                ));
            }
        }
    }
    // Circles: depth-first search over the module graph.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
        out: &mut Vec<String>,
    ) {
        match state.get(m).copied() {
            Some(2) => return,
            Some(1) => {
                let start = path.iter().position(|p| p == m).unwrap_or(0);
                let mut circle = path[start..].to_vec();
                circle.push(m.to_owned());
                out.push(format!("import circle: {}", circle.join(" → ")));
                return;
            }
            _ => {}
        }
        state.insert(m.to_owned(), 1);
        path.push(m.to_owned());
        if let Some(next) = graph.get(m) {
            for n in next {
                if graph.contains_key(n) {
                    visit(n, graph, state, path, out);
                }
            }
        }
        path.pop();
        state.insert(m.to_owned(), 2);
    }
    let mut state = BTreeMap::new();
    for m in graph.keys() {
        visit(m, graph, &mut state, &mut Vec::new(), &mut out);
    }
    out
}

#[test]
fn service_modules_import_only_their_layer_or_below_and_never_in_a_circle() {
    let graph = service_graph(&root().join("src"));
    assert!(graph.len() >= 15, "read {} modules", graph.len());
    let found = breaches(&graph, LAYERS);
    assert!(found.is_empty(), "layering breached:\n{}", found.join("\n"));
}

#[test]
fn the_checker_finds_a_planted_upward_import_and_a_circle() {
    let mut graph = service_graph(&root().join("src"));
    graph.get_mut("memory").unwrap().insert("server".to_owned());
    graph.insert("newcomer".to_owned(), BTreeSet::new());
    let found = breaches(&graph, LAYERS);
    assert!(
        found
            .iter()
            .any(|b| b.starts_with("`memory` (layer 1) imports `server`")),
        "{found:?}"
    );
    assert!(
        found.iter().any(|b| b.starts_with("import circle:")),
        "{found:?}"
    );
    assert!(
        found.contains(&"module `newcomer` has no layer in LAYERS".to_owned()),
        "{found:?}"
    );
    // Groups are read too.
    assert_eq!(
        named_modules("use crate::{store, api::dto::X};\nlet x = faultline_core::model::Y;"),
        BTreeSet::from(["api".to_owned(), "store".to_owned()])
    );
}

#[test]
fn the_core_crate_knows_no_runtime_wire_format_or_serde_on_model_types() {
    let manifest = std::fs::read_to_string(root().join("crates/core/Cargo.toml")).unwrap();
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .expect("core has a [dependencies] table");
    let deps = deps.split("\n[").next().unwrap_or(deps);
    for forbidden in [
        "tokio",
        "tonic",
        "axum",
        "prost",
        "hyper",
        "opentelemetry",
        "rusqlite",
        "reqwest",
    ] {
        assert!(
            !deps.lines().any(|l| l.trim_start().starts_with(forbidden)),
            "faultline-core depends on {forbidden}"
        );
    }
    let mut files = Vec::new();
    rust_files(&root().join("crates/core/src/model"), &mut files);
    assert!(files.len() >= 5, "read {} model files", files.len());
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for derive in ["Serialize", "Deserialize"] {
            assert!(
                !text
                    .lines()
                    .any(|l| l.contains("derive(") && l.contains(derive)),
                "{} derives {derive}",
                f.display()
            );
        }
    }
}
