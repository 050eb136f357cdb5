//! Checks that read the sources (the rules of ARCHITECTURE.md the compiler does not
//! enforce):
//! - every self-metric is named in `src/metrics.rs`: no other place registers a metric
//!   (`register`, `register_with_unit`) or encodes a descriptor with a name of its own
//!   (a string literal); every `MetricDef` there is unique, starts with `faultline_`
//!   and is used;
//! - every file path a doc comment names exists (relative to the repository, or to the
//!   commenting file's directory or one of its parents).
//!
//! Each check is a function over `(path, text)` pairs, so the planted-violation tests
//! below show that it fails.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `(path relative to the repository, text)` of every `.rs` file under `dirs`.
fn sources(dirs: &[&str]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = dirs.iter().map(|d| root().join(d)).collect();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() {
                if name != "target" && name != "node_modules" {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
                let rel = path
                    .strip_prefix(root())
                    .expect("under the repository")
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((rel, text));
            }
        }
    }
    out.sort();
    assert!(!out.is_empty(), "no sources found under {dirs:?}");
    out
}

/// The library code of a source file: nothing of a module's test files (a file or a
/// directory named `tests`), nothing from the first inline test module (`#[cfg(test)]`
/// at the start of a line, then `mod name {`) on.
fn library_code<'a>(path: &str, text: &'a str) -> Option<&'a str> {
    let file = path.rsplit('/').next().unwrap_or(path);
    if file == "tests.rs" || path.split('/').rev().skip(1).any(|d| d == "tests") {
        return None;
    }
    let inline_tests = text.match_indices("\n#[cfg(test)]\n").find(|(at, m)| {
        let next = text[at + m.len()..].lines().next().unwrap_or("");
        next.starts_with("mod ") && next.trim_end().ends_with('{')
    });
    Some(match inline_tests {
        Some((at, _)) => &text[..at],
        None => text,
    })
}

const METRICS_RS: &str = "src/metrics.rs";

/// Violations of "every self-metric is named in `src/metrics.rs`".
fn metric_violations(files: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    // Registrations naming a metric themselves, anywhere (metrics.rs included: its own
    // registrations go through its definitions too).
    for (path, text) in files {
        let Some(code) = library_code(path, text) else {
            continue;
        };
        for call in ["register(", "register_with_unit(", "encode_descriptor("] {
            for (at, _) in code.match_indices(call) {
                let before = code[..at].chars().next_back();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                let args = &code[at + call.len()..];
                let first_two: Vec<&str> = args.splitn(3, ',').take(2).collect();
                if first_two.iter().any(|a| a.trim_start().starts_with('"')) {
                    let line = code[..at].matches('\n').count() + 1;
                    out.push(format!(
                        "{path}:{line}: `{call}` with a metric name of its own; define it in \
                         {METRICS_RS} (a `MetricDef`) and register it with `metrics::register`"
                    ));
                }
            }
        }
    }
    // The definitions: unique, prefixed and used.
    let Some((_, metrics)) = files.iter().find(|(p, _)| p == METRICS_RS) else {
        out.push(format!("{METRICS_RS} is missing"));
        return out;
    };
    let mut names: Vec<&str> = Vec::new();
    for def in metrics.split("pub const ").skip(1) {
        let Some((constant, rest)) = def.split_once(':') else {
            continue;
        };
        if !rest.trim_start().starts_with("MetricDef<") {
            continue;
        }
        let Some(name) = rest
            .split_once("MetricDef::new(")
            .and_then(|(_, r)| r.trim_start().strip_prefix('"'))
            .and_then(|r| r.split_once('"'))
            .map(|(n, _)| n)
        else {
            out.push(format!("{METRICS_RS}: {constant} has no literal name"));
            continue;
        };
        if !name.starts_with("faultline_") {
            out.push(format!(
                "{METRICS_RS}: {name} does not start with faultline_"
            ));
        }
        if names.contains(&name) {
            out.push(format!("{METRICS_RS}: {name} is defined twice"));
        }
        names.push(name);
        let used = files.iter().any(|(path, text)| {
            let Some(code) = library_code(path, text) else {
                return false;
            };
            code.match_indices(constant).any(|(at, _)| {
                let after = code[at + constant.len()..].chars().next();
                let before = code[..at].chars().next_back();
                let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
                !word(before) && !word(after) && !code[..at].ends_with("pub const ")
            })
        });
        if !used {
            out.push(format!("{METRICS_RS}: {constant} ({name}) is never used"));
        }
    }
    if names.is_empty() {
        out.push(format!("{METRICS_RS} defines no MetricDef"));
    }
    out
}

const EXTENSIONS: [&str; 14] = [
    "rs", "md", "toml", "json", "yaml", "yml", "py", "mjs", "js", "html", "css", "sh", "go", "sql",
];

/// The file paths a doc comment line names: a relative path with a directory and one
/// of `EXTENSIONS` anywhere (not in a URL or an absolute path), a backticked file name
/// with one of them, and a bare file name ending in .rs or .md.
fn named_paths(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let is_path_char = |c: char| c.is_ascii_alphanumeric() || "_.-/".contains(c);
    let mut rest = line;
    let mut offset = 0;
    while let Some(start) = rest.find(is_path_char) {
        let token_len = rest[start..]
            .find(|c: char| !is_path_char(c))
            .unwrap_or(rest.len() - start);
        let token = rest[start..start + token_len].trim_end_matches('.');
        let before = line[..offset + start].chars().next_back();
        let backticked =
            before == Some('`') && line[offset + start + token.len()..].starts_with('`');
        if let Some((stem, ext)) = token.rsplit_once('.') {
            let named = EXTENSIONS.contains(&ext)
                && !stem.is_empty()
                && !stem.ends_with('/')
                && !token.starts_with(['/', '.'])
                && before != Some(':')
                && (token.contains('/') || backticked || ext == "rs" || ext == "md");
            // `openapi.json` and the like are endpoints unless they name a directory.
            let endpoint = !token.contains('/') && ext == "json";
            if named && !endpoint {
                out.push(token.to_owned());
            }
        }
        offset += start + token_len;
        rest = &rest[start + token_len..];
    }
    out
}

/// Doc comment paths that exist nowhere the check looks; `exists` answers for a path
/// relative to the repository.
fn doc_path_violations(
    files: &[(String, String)],
    exists: &dyn Fn(&str) -> bool,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, text) in files {
        for (n, line) in text.lines().enumerate() {
            let t = line.trim_start();
            if !(t.starts_with("///") || t.starts_with("//!")) {
                continue;
            }
            for named in named_paths(&t[3..]) {
                let mut dir = Path::new(path).parent();
                let mut found = exists(&named);
                while let (false, Some(d)) = (found, dir) {
                    found = exists(&d.join(&named).to_string_lossy());
                    dir = d.parent();
                }
                if !found {
                    out.push((format!("{path}:{}", n + 1), named));
                }
            }
        }
    }
    out
}

/// Doc comment paths known to be wrong in files another change is moving (the core
/// crates): `(file, path)`. Each must still be found, so a fixed one must leave the list.
const PENDING_DOC_PATHS: [(&str, &str); 0] = [];

#[test]
fn every_self_metric_is_named_in_metrics_rs() {
    let files = sources(&["src", "crates"]);
    let violations = metric_violations(&files);
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn doc_comment_paths_exist() {
    let files = sources(&["src", "crates", "tests", "benches"]);
    let exists = |p: &str| root().join(p).exists();
    let mut violations = doc_path_violations(&files, &exists);
    for (file, named) in PENDING_DOC_PATHS {
        let before = violations.len();
        violations.retain(|(at, p)| !(at.starts_with(&format!("{file}:")) && p == named));
        let moved = !root().join(file).exists();
        assert!(
            violations.len() < before || moved,
            "{file} no longer names {named}: remove it from PENDING_DOC_PATHS"
        );
    }
    let lines: Vec<String> = violations
        .iter()
        .map(|(at, p)| format!("{at}: names `{p}`, which is not in the repository"))
        .collect();
    assert!(lines.is_empty(), "{}", lines.join("\n"));
}

/// A module that registers its metrics through the definitions of `src/metrics.rs`.
const CLEAN_MODULE: &str = r#"
fn register(registry: &mut Registry) {
    crate::metrics::register(registry, &crate::metrics::USED, c.clone());
    crate::metrics::register(registry, &OTHER, g.clone());
    crate::metrics::register(registry, &TWICE, g.clone());
}
#[cfg(test)]
mod tests {
    fn t() { registry.register("x_in_a_test", "fine in tests", c.clone()); }
}
"#;

/// Definitions of which all are used and well named.
const CLEAN_METRICS: &str = r#"
pub const USED: MetricDef<kind::Counter> = MetricDef::new("faultline_used", "Used");
pub const OTHER: MetricDef<kind::Gauge> = MetricDef::new("faultline_other", "Other");
pub const TWICE: MetricDef<kind::Gauge> = MetricDef::new("faultline_twice", "Twice");
"#;

#[test]
fn the_metric_check_fails_on_planted_violations() {
    let files = |metrics: &str, module: &str| {
        vec![
            (METRICS_RS.to_owned(), metrics.to_owned()),
            ("src/planted/mod.rs".to_owned(), module.to_owned()),
            (
                "src/planted/tests.rs".to_owned(),
                r#"fn t() { registry.register("faultline_test_only", "h", c); }"#.to_owned(),
            ),
        ]
    };
    let clean = metric_violations(&files(CLEAN_METRICS, CLEAN_MODULE));
    assert!(clean.is_empty(), "{clean:#?}");

    // Two registrations naming their metric, an unused definition, a name without the
    // prefix, a name defined twice.
    let module = CLEAN_MODULE.replacen(
        "}\n#[cfg(test)]",
        r#"    registry.register(
        "faultline_planted",
        "Named outside metrics.rs",
        c.clone(),
    );
    let family = encoder.encode_descriptor("faultline_collected", "help", None, t)?;
}
#[cfg(test)]"#,
        1,
    );
    let metrics = CLEAN_METRICS
        .replace("\"faultline_other\"", "\"other_prefix\"")
        .replace("\"faultline_twice\"", "\"faultline_used\"")
        + "pub const UNUSED: MetricDef<kind::Gauge> = MetricDef::new(\"faultline_unused\", \"U\");\n";
    let v = metric_violations(&files(&metrics, &module));
    let has = |needle: &str| v.iter().any(|x| x.contains(needle));
    assert!(has("src/planted/mod.rs:6: `register(`"), "{v:#?}");
    assert!(has("src/planted/mod.rs:11: `encode_descriptor(`"), "{v:#?}");
    assert!(has("UNUSED (faultline_unused) is never used"), "{v:#?}");
    assert!(has("other_prefix does not start with faultline_"), "{v:#?}");
    assert!(has("faultline_used is defined twice"), "{v:#?}");
    assert_eq!(
        v.len(),
        5,
        "nothing else (tests, definitions in use): {v:#?}"
    );
}

#[test]
fn the_doc_path_check_fails_on_planted_violations() {
    // Built line by line, so that these lines are not doc comments of this file.
    let text = concat!(
        "//! Reads `tests/data/cases.json` and `README.md` beside this file; rules in\n",
        "//! `rules/table.rs`, the spec in docs/missing.md, tested in `tests.rs` and in gone.rs.\n",
        "//! Not paths: https://example.com/a/b.json, `/api/v1/openapi.json`, `openapi.json`,\n",
        "//! `.otlp.json` files, version 1.2, `Vec<u8>`.\n",
        "/// A link to [`crate::model`], and to src/present/mod.rs.\n",
        "// A plain comment naming nowhere/at_all.rs is not a doc comment.\n",
        "fn f() {}\n",
    );
    let present = [
        "tests/data/cases.json",
        "src/present/README.md",
        "src/present/rules/table.rs",
        "src/present/mod.rs",
    ];
    let exists = |p: &str| present.contains(&p);
    let files = vec![("src/present/mod.rs".to_owned(), text.to_owned())];
    let v = doc_path_violations(&files, &exists);
    let missing: Vec<&str> = v.iter().map(|(_, p)| p.as_str()).collect();
    assert_eq!(
        missing,
        ["docs/missing.md", "tests.rs", "gone.rs"],
        "exactly the planted paths: {v:#?}"
    );
    assert!(
        v.iter().all(|(at, _)| at == "src/present/mod.rs:2"),
        "{v:#?}"
    );
}
