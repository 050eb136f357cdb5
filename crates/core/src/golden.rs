//! Golden files: a rendering checked against `<case>.expected`.
//!
//! An expectation starts with a header of `# ` lines that says, in a person's words, what
//! a reviewer should see in it (which span is blamed and why, what must not happen);
//! the rendering follows. A golden test *checks*: it fails on a difference and on a
//! missing header. With `UPDATE_EXPECT=1` (set by `scripts/regenerate-goldens`, never by
//! the test command) it *writes* the renderings under the kept headers instead, and then
//! fails on purpose: a run that wrote expectations has checked nothing, so it never
//! reports a passing test.

use std::fmt::Write as _;
use std::path::Path;

use crate::model::Analysis;

/// The variable that turns golden tests into writers.
pub const UPDATE_VAR: &str = "UPDATE_EXPECT";
/// The variable that also regenerates the simulated goldens' inputs; it writes too.
pub const REGENERATE_VAR: &str = "REGENERATE_SIMULATED";

/// Whether this run writes goldens rather than checking them.
pub fn writing() -> bool {
    std::env::var_os(UPDATE_VAR).is_some() || std::env::var_os(REGENERATE_VAR).is_some()
}

/// What a run wrote, and what it found different, over one golden test.
pub struct Goldens {
    write: bool,
    written: usize,
    failures: Vec<String>,
}

impl Default for Goldens {
    fn default() -> Self {
        Goldens::new()
    }
}

impl Goldens {
    pub fn new() -> Goldens {
        Goldens {
            write: writing(),
            written: 0,
            failures: Vec::new(),
        }
    }

    /// Checks (or writes) `path` against `rendered`. `header` is the header to hold when
    /// it is generated from data (e.g. from a simulated run's label); `None` keeps the
    /// hand-written header of the file.
    pub fn check(&mut self, path: &Path, rendered: &str, header: Option<&str>) {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let (kept, body) = split_header(&text);
        let header = header.map(str::to_string).unwrap_or(kept.clone());
        if self.write {
            let mut out = header;
            out.push_str(rendered);
            std::fs::write(path, out).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
            self.written += 1;
            return;
        }
        if header.is_empty() {
            self.failures.push(format!(
                "{}: no header; start it with `# ` lines saying what a reviewer should see",
                path.display()
            ));
        } else if header != kept {
            self.failures.push(format!(
                "{}: the header is stale:\n--- file\n{kept}--- from its data\n{header}",
                path.display()
            ));
        }
        if body != rendered {
            self.failures.push(format!(
                "{}:\n--- expected\n{body}--- got\n{rendered}",
                path.display()
            ));
        }
    }

    /// Records a failure found beside the renderings (e.g. an analysis that disagrees
    /// with its label).
    pub fn fail(&mut self, failure: String) {
        self.failures.push(failure);
    }

    /// Ends the test: fails on any difference, and always after writing.
    pub fn finish(self) {
        if self.write {
            panic!(
                "wrote {} expectation(s) and checked nothing ({UPDATE_VAR} or {REGENERATE_VAR} \
                 is set): review `git diff tests/data`, then run the tests without them{}",
                self.written,
                if self.failures.is_empty() {
                    String::new()
                } else {
                    format!("\nalso found:\n{}", self.failures.join("\n"))
                }
            );
        }
        assert!(
            self.failures.is_empty(),
            "{} golden failure(s); if the change is intended, run scripts/regenerate-goldens \
             and review the diff\n{}",
            self.failures.len(),
            self.failures.join("\n")
        );
    }
}

/// The leading `#` lines of an expectation (with their newlines), and the rest.
fn split_header(text: &str) -> (String, &str) {
    let mut end = 0;
    for line in text.split_inclusive('\n') {
        if line == "#\n" || line.starts_with("# ") {
            end += line.len();
        } else {
            break;
        }
    }
    (text[..end].to_string(), &text[end..])
}

/// One line per span, indented by depth, then the findings and the verdict.
pub fn render(a: &Analysis) -> String {
    let t = &a.trajectory;
    let mut out = String::new();
    let children = t.child_index();
    let mut roots: Vec<u32> = (0..t.spans.len() as u32)
        .filter(|&i| t.tree_parent(i).is_none())
        .collect();
    // Orphans hang under the root in tree walks; list them after it at depth 1.
    let orphans: Vec<u32> = (0..t.spans.len() as u32)
        .filter(|&i| t.parent[i as usize].is_none() && Some(i) != t.root)
        .collect();
    roots.retain(|i| !orphans.contains(i));
    let mut stack: Vec<(u32, usize)> = roots.iter().rev().map(|&i| (i, 0)).collect();
    let mut seen = vec![false; t.spans.len()];
    let mut order = Vec::new();
    while let Some((i, d)) = stack.pop() {
        if std::mem::replace(&mut seen[i as usize], true) {
            continue;
        }
        order.push((i, d));
        if Some(i) == t.root {
            for &o in orphans.iter().rev() {
                stack.push((o, d + 1));
            }
        }
        for &c in children[i as usize].iter().rev() {
            stack.push((c, d + 1));
        }
    }
    for (i, d) in order {
        let s = &t.spans[i as usize];
        let step = &a.steps[i as usize];
        let _ = writeln!(
            out,
            "{:indent$}{}  {}  {}{}{}",
            "",
            s.name,
            step.kind.as_str(),
            step.source.as_str(),
            if step.run_start { "  run" } else { "" },
            if s.status == crate::model::SpanStatus::Error {
                "  ERROR"
            } else {
                ""
            },
            indent = d * 2
        );
    }
    let _ = writeln!(out, "outcome: {}", a.outcome.as_str());
    for f in &a.findings {
        let _ = writeln!(
            out,
            "finding: {} {} on {}{}: {}",
            f.step.as_str(),
            f.kind.as_str(),
            t.spans[f.span as usize].name,
            if f.propagated { " (propagated)" } else { "" },
            f.reason
        );
    }
    match &a.root_cause {
        Some(rc) => {
            let _ = writeln!(
                out,
                "root cause: {} {} on {} [{} {:.2}]: {}",
                rc.step.as_str(),
                rc.kind.as_str(),
                t.spans[rc.span as usize].name,
                rc.rule,
                rc.confidence,
                rc.reason
            );
            for &e in &rc.evidence {
                if let Some(f) = a.findings.get(e) {
                    let _ = writeln!(out, "  evidence: {} {}", f.step.as_str(), f.kind.as_str());
                }
            }
        }
        None => {
            let _ = writeln!(out, "root cause: none");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{split_header, Goldens};

    fn checking() -> Goldens {
        Goldens {
            write: false,
            written: 0,
            failures: Vec::new(),
        }
    }

    #[test]
    fn a_golden_fails_without_a_header_with_a_stale_one_and_on_a_difference() {
        let dir = std::env::temp_dir().join(format!("faultline-golden-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("case.expected");
        std::fs::write(&path, "root  agent\n").unwrap();
        let mut g = checking();
        g.check(&path, "root  agent\n", None);
        assert_eq!(g.failures.len(), 1, "{:?}", g.failures);
        assert!(g.failures[0].contains("no header"));

        std::fs::write(&path, "# the root is the agent\nroot  agent\n").unwrap();
        let mut g = checking();
        g.check(&path, "root  agent\n", None);
        assert!(g.failures.is_empty(), "{:?}", g.failures);
        g.check(&path, "root  chain\n", None);
        g.check(&path, "root  agent\n", Some("# another header\n"));
        assert_eq!(g.failures.len(), 2, "{:?}", g.failures);
        assert!(g.failures[0].contains("--- got\nroot  chain"));
        assert!(g.failures[1].contains("stale"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    #[should_panic(expected = "checked nothing")]
    fn a_run_that_writes_never_passes() {
        let dir = std::env::temp_dir().join(format!("faultline-golden-w-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("case.expected");
        std::fs::write(&path, "# kept\nold\n").unwrap();
        let mut g = Goldens {
            write: true,
            ..checking()
        };
        g.check(&path, "new\n", None);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "# kept\nnew\n");
        let _ = std::fs::remove_dir_all(&dir);
        g.finish();
    }

    #[test]
    fn the_header_is_the_leading_comment_lines() {
        let (h, body) = split_header("# what to see\n#\n# more\nroot  agent\n# not header\n");
        assert_eq!(h, "# what to see\n#\n# more\n");
        assert_eq!(body, "root  agent\n# not header\n");
        assert_eq!(split_header("root\n"), (String::new(), "root\n"));
    }
}
