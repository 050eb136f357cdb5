//! `faultline show <trace_id>`: one trajectory of a running server
//! (`GET /api/v1/trajectories/{id}`): the verdict, the root cause with its evidence
//! chain, the span tree (step, duration and status per span, the blamed span marked)
//! and the findings.

use std::collections::HashMap;

use clap::Args;
use serde_json::Value;

use super::client::{Client, ClientError, ServerArgs};
use super::format::{self, Align, Table};

#[derive(Debug, Clone, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// The trace id: 32 hex digits.
    #[arg(value_name = "TRACE_ID")]
    pub trace_id: String,
    /// Also print every span's attributes (and ask the server for them).
    #[arg(long)]
    pub attributes: bool,
}

pub async fn run(args: &ShowArgs) -> Result<(), ClientError> {
    let client = Client::from_args(&args.server)?;
    let id = args.trace_id.trim().to_ascii_lowercase();
    let query = if args.attributes {
        vec![("attributes", "true".to_owned())]
    } else {
        Vec::new()
    };
    let answer = client
        .get(&["api", "v1", "trajectories", &id], &query)
        .await?;
    if args.server.json {
        format::emit(&format!("{}\n", answer.text.trim_end()));
    } else {
        format::emit(&render_trajectory(&answer.json));
    }
    Ok(())
}

/// Marks the blamed span in the tree.
pub const BLAMED_MARK: &str = "◀ ROOT CAUSE";

/// The widest the name column of the tree gets.
const MAX_NAME: usize = 56;

/// The trajectory JSON (the `/api/v1/trajectories/{id}` shape) as text.
pub fn render_trajectory(t: &Value) -> String {
    let mut out = String::new();
    let steps: &[Value] = t["steps"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let start = t["start_unix_nano"].as_u64().unwrap_or(0);
    let end = t["end_unix_nano"].as_u64().unwrap_or(start);

    // Header: what run, and the verdict.
    out.push_str(&format!("trace {}\n", format::text_of(&t["trace_id"])));
    let mut facts = vec![
        format!("outcome {}", format::text_of(&t["outcome"])),
        format!("started {}", format::time_nanos(start)),
        format!("took {}", format::duration_nanos(end.saturating_sub(start))),
        format!("{} spans", steps.len()),
    ];
    if let Some(s) = t["service"].as_str() {
        facts.push(format!("service {s}"));
    }
    if let Some(s) = t["session_id"].as_str() {
        facts.push(format!("session {s}"));
    }
    out.push_str(&format!("  {}\n", facts.join(" · ")));
    let mut state = Vec::new();
    if t["complete"] == Value::Bool(false) {
        state.push(format!(
            "incomplete ({})",
            t["incomplete_reason"].as_str().unwrap_or("unknown")
        ));
    }
    if let Some(r) = t["revision"].as_u64().filter(|r| *r > 0) {
        state.push(format!("revision {r}"));
    }
    if let Some(l) = t["late_spans"].as_u64().filter(|l| *l > 0) {
        state.push(format!("{l} late spans merged"));
    }
    if let Some(a) = t["anomalies"].as_array().filter(|a| !a.is_empty()) {
        // Objects since anomalies became structured; strings in documents stored before.
        let names: Vec<String> = a
            .iter()
            .map(|x| match x["kind"].as_str() {
                Some(kind) => format!("{kind} (span {})", format::text_of(&x["span_id"])),
                None => format::text_of(x),
            })
            .collect();
        state.push(format!("anomalies: {}", names.join(", ")));
    }
    if !state.is_empty() {
        out.push_str(&format!("  {}\n", state.join(" · ")));
    }

    // The root cause and the chain of evidence that led to it.
    let blamed = t["root_cause"]["span_id"].as_str();
    let name_of = |span: &str| -> String {
        steps
            .iter()
            .find(|s| s["span_id"].as_str() == Some(span))
            .and_then(|s| s["name"].as_str())
            .map(|n| format::clip(n, 40))
            .unwrap_or_else(|| span.to_owned())
    };
    let rc = &t["root_cause"];
    if rc.is_object() {
        out.push_str(&format!(
            "\nROOT CAUSE  {} — {} (confidence {}, rule {})\n",
            format::text_of(&rc["step"]),
            format::text_of(&rc["kind"]),
            rc["confidence"]
                .as_f64()
                .map(|c| format!("{c:.2}"))
                .unwrap_or_else(|| "-".into()),
            format::text_of(&rc["rule"]),
        ));
        out.push_str(&format!(
            "  span {} ({}){}\n  {}\n",
            format::text_of(&rc["span_id"]),
            name_of(rc["span_id"].as_str().unwrap_or("")),
            rc["agent"]
                .as_str()
                .map(|a| format!(" in agent {a}"))
                .unwrap_or_default(),
            format::clip(rc["reason"].as_str().unwrap_or(""), 300),
        ));
        if let Some(ev) = rc["evidence"].as_array().filter(|e| !e.is_empty()) {
            out.push_str("EVIDENCE\n");
            for (i, e) in ev.iter().enumerate() {
                out.push_str(&format!(
                    "  {}. {} {} at {} ({}): {}\n",
                    i + 1,
                    format::text_of(&e["step"]),
                    format::text_of(&e["kind"]),
                    format::text_of(&e["span_id"]),
                    name_of(e["span_id"].as_str().unwrap_or("")),
                    format::clip(e["reason"].as_str().unwrap_or(""), 200),
                ));
            }
        }
    } else if t["outcome"].as_str() == Some("failed") {
        out.push_str("\nROOT CAUSE  not determined\n");
    }

    // The span tree.
    out.push_str("\nSPANS\n");
    out.push_str(&render_tree(steps, blamed, &t["findings"]));

    // Findings.
    if let Some(findings) = t["findings"].as_array().filter(|f| !f.is_empty()) {
        out.push_str("\nFINDINGS\n");
        let mut table = Table::new(&[
            ("STEP", Align::Left),
            ("KIND", Align::Left),
            ("SPAN", Align::Left),
            ("SCORE", Align::Right),
            ("SOURCE", Align::Left),
            ("REASON", Align::Left),
        ])
        .max_cell(160);
        for f in findings {
            let mut kind = format::text_of(&f["kind"]);
            if f["propagated"] == Value::Bool(true) {
                kind.push_str(" (propagated)");
            }
            table.row(vec![
                format::text_of(&f["step"]),
                kind,
                name_of(f["span_id"].as_str().unwrap_or("")),
                f["score"]
                    .as_f64()
                    .map(|s| format!("{s:.2}"))
                    .unwrap_or_else(|| "-".into()),
                format::text_of(&f["source"]),
                format::text_of(&f["reason"]),
            ]);
        }
        out.push_str(&table.render());
    }

    // Attributes, when asked for.
    if steps.iter().any(|s| s["attributes"].is_object()) {
        out.push_str("\nATTRIBUTES\n");
        for s in steps {
            let Some(attrs) = s["attributes"].as_object() else {
                continue;
            };
            out.push_str(&format!(
                "  {} ({})\n",
                format::clip(s["name"].as_str().unwrap_or(""), MAX_NAME),
                format::text_of(&s["span_id"])
            ));
            for (k, v) in attrs {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                out.push_str(&format!("    {k} = {}\n", format::clip(&text, 200)));
            }
        }
    }
    out
}

/// The spans as a tree by `parent_span_id`, one line each: name, step, duration,
/// status; the blamed span marked with [`BLAMED_MARK`] and spans with original findings
/// with `! kind`. Spans whose parent is absent are roots; spans on a parent cycle are
/// listed at the end as detached. Levels below `MAX_INDENT` are drawn flat behind `┄`.
pub fn render_tree(steps: &[Value], blamed: Option<&str>, findings: &Value) -> String {
    let n = steps.len();
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(n);
    for (i, s) in steps.iter().enumerate() {
        if let Some(id) = s["span_id"].as_str() {
            index.entry(id).or_insert(i);
        }
    }
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut roots = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        match s["parent_span_id"]
            .as_str()
            .and_then(|p| index.get(p).copied())
            .filter(|&p| p != i)
        {
            Some(p) => children[p].push(i),
            None => roots.push(i),
        }
    }
    // Original findings by span.
    let mut marks: HashMap<&str, Vec<&str>> = HashMap::new();
    if let Some(list) = findings.as_array() {
        for f in list {
            if f["propagated"] == Value::Bool(true) {
                continue;
            }
            if let (Some(span), Some(kind)) = (f["span_id"].as_str(), f["kind"].as_str()) {
                let v = marks.entry(span).or_default();
                if !v.contains(&kind) {
                    v.push(kind);
                }
            }
        }
    }

    // Depth-first, iteratively (deep traces must not overflow the stack).
    let mut lines: Vec<(String, usize)> = Vec::with_capacity(n);
    let mut visited = vec![false; n];
    for &r in &roots {
        walk(r, "", &children, &mut visited, &mut lines);
    }
    let detached_from = lines.len();
    for i in 0..n {
        if !visited[i] {
            walk(i, "~ ", &children, &mut visited, &mut lines);
        }
    }

    let mut table = Table::new(&[
        ("NAME", Align::Left),
        ("STEP", Align::Left),
        ("DURATION", Align::Right),
        ("STATUS", Align::Left),
        ("", Align::Left),
    ])
    .max_cell(MAX_NAME);
    for (row, (prefix, i)) in lines.iter().enumerate() {
        let s = &steps[*i];
        let name = format!("{prefix}{}", s["name"].as_str().unwrap_or(""));
        let start = s["start_unix_nano"].as_u64().unwrap_or(0);
        let end = s["end_unix_nano"].as_u64().unwrap_or(start);
        let mut status = format::text_of(&s["status"]);
        if let Some(m) = s["status_message"].as_str().filter(|m| !m.is_empty()) {
            status = format!("{status}: {}", format::clip(m, 40));
        }
        let span_id = s["span_id"].as_str().unwrap_or("");
        let mut note = Vec::new();
        if blamed.is_some_and(|b| b == span_id) {
            note.push(BLAMED_MARK.to_owned());
        }
        if let Some(kinds) = marks.get(span_id) {
            note.push(format!("! {}", kinds.join(", ")));
        }
        if row >= detached_from && prefix == "~ " {
            note.push("(detached: on a parent cycle)".to_owned());
        }
        table.row(vec![
            format::clip(&name, MAX_NAME),
            format::text_of(&s["step"]),
            format::duration_nanos(end.saturating_sub(start)),
            status,
            note.join("  "),
        ]);
    }
    if table.is_empty() {
        return "  (no spans)\n".to_owned();
    }
    table.render()
}

/// Tree levels drawn with their own indentation; deeper spans are drawn at this level
/// behind [`DEEPER_MARK`], so a line's prefix stays short however deep the trace is (and
/// the name still fits the clipped column).
const MAX_INDENT: usize = 12;
const DEEPER_MARK: &str = "┄ ";

/// Appends the subtree of `start` to `lines` as (line prefix, span), depth first,
/// iteratively (deep traces must not overflow the stack); marks what it visits.
fn walk(
    start: usize,
    lead: &str,
    children: &[Vec<usize>],
    visited: &mut [bool],
    lines: &mut Vec<(String, usize)>,
) {
    // (span, prefix of its line, prefix of its children's lines, depth below `start`)
    let mut stack = vec![(start, lead.to_owned(), lead.to_owned(), 0usize)];
    while let Some((i, prefix, child_prefix, depth)) = stack.pop() {
        if visited[i] {
            continue;
        }
        visited[i] = true;
        lines.push((prefix, i));
        let kids = &children[i];
        for (k, &c) in kids.iter().enumerate().rev() {
            if depth >= MAX_INDENT {
                stack.push((
                    c,
                    format!("{child_prefix}{DEEPER_MARK}"),
                    child_prefix.clone(),
                    depth + 1,
                ));
                continue;
            }
            let (branch, cont) = if k + 1 == kids.len() {
                ("└─ ", "   ")
            } else {
                ("├─ ", "│  ")
            };
            stack.push((
                c,
                format!("{child_prefix}{branch}"),
                format!("{child_prefix}{cont}"),
                depth + 1,
            ));
        }
    }
}
