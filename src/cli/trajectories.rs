//! `faultline trajectories`: the list of analysed trajectories of a running server
//! (`GET /api/v1/trajectories`), newest first by end time unless `--sort` / `--order`
//! say otherwise, with the API's filters passed through. The columns, filters and sort
//! are the web page's list, in the same order; the sorted column is marked `↓` (or `↑`)
//! on both.

use clap::Args;
use serde_json::Value;

use super::client::{Client, ClientError, ServerArgs};
use super::format::{self, Align, Table};

#[derive(Debug, Clone, Args)]
pub struct TrajectoriesArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Only runs with this outcome: failed, recovered or success.
    #[arg(long, value_name = "OUTCOME")]
    pub outcome: Option<String>,
    /// Only runs with a step of this kind (planner, retriever, tool, ...).
    #[arg(long, value_name = "STEP")]
    pub step: Option<String>,
    /// Only failed runs blamed on this step.
    #[arg(long, value_name = "STEP")]
    pub root_cause_step: Option<String>,
    /// Only runs with a finding of this kind (empty_retrieval, tool_error, ...).
    #[arg(long, value_name = "KIND")]
    pub finding_kind: Option<String>,
    /// Only runs with a finding whose reason contains this text (case-insensitive).
    #[arg(long, value_name = "TEXT")]
    pub q: Option<String>,
    /// Only runs of this service (`service.name`).
    #[arg(long, value_name = "SERVICE")]
    pub service: Option<String>,
    /// Only runs of this session (`session.id`).
    #[arg(long, value_name = "SESSION_ID")]
    pub session_id: Option<String>,
    /// Sort by `end` time or `duration` [server default: end], as the page's sortable
    /// columns.
    #[arg(long, value_name = "end|duration")]
    pub sort: Option<String>,
    /// `desc` (largest first) or `asc` [server default: desc].
    #[arg(long, value_name = "desc|asc")]
    pub order: Option<String>,
    /// Page size (1..=1000) [server default: 50].
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[arg(long, value_name = "CURSOR")]
    pub cursor: Option<String>,
}

fn query(args: &TrajectoriesArgs) -> Vec<(&'static str, String)> {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    vec![
        ("outcome", opt(&args.outcome)),
        ("step", opt(&args.step)),
        ("root_cause_step", opt(&args.root_cause_step)),
        ("finding_kind", opt(&args.finding_kind)),
        ("q", opt(&args.q)),
        ("service", opt(&args.service)),
        ("session_id", opt(&args.session_id)),
        ("sort", opt(&args.sort)),
        ("order", opt(&args.order)),
        (
            "limit",
            args.limit.map(|l| l.to_string()).unwrap_or_default(),
        ),
        ("cursor", opt(&args.cursor)),
    ]
}

pub async fn run(args: &TrajectoriesArgs) -> Result<(), ClientError> {
    let client = Client::from_args(&args.server)?;
    let answer = client
        .get(&["api", "v1", "trajectories"], &query(args))
        .await?;
    if args.server.json {
        format::emit(&format!("{}\n", answer.text.trim_end()));
    } else {
        format::emit(&render_sorted(
            &answer.json,
            args.sort.as_deref().unwrap_or("end"),
            args.order.as_deref().unwrap_or("desc"),
        ));
    }
    Ok(())
}

/// The list JSON (`{"trajectories": [...], "next_cursor": ...}`) as a table.
pub fn render_list(v: &Value) -> String {
    render_sorted(v, "end", "desc")
}

/// The list as sorted by the API with `sort` (`end` or `duration`) and `order`
/// (`desc` or `asc`): the sorted column's header carries the page's arrow.
pub fn render_sorted(v: &Value, sort: &str, order: &str) -> String {
    let arrow = if order == "asc" { " ↑" } else { " ↓" };
    let mark = |name: &str, column: &str| {
        if column == sort {
            format!("{name}{arrow}")
        } else {
            name.to_owned()
        }
    };
    let (end, duration) = (mark("END (UTC)", "end"), mark("DURATION", "duration"));
    let mut table = Table::new(&[
        ("TRACE ID", Align::Left),
        (&end, Align::Left),
        (&duration, Align::Right),
        ("OUTCOME", Align::Left),
        ("ROOT CAUSE", Align::Left),
        ("REASON", Align::Left),
        ("MODEL", Align::Left),
        ("SPANS", Align::Right),
        ("FINDINGS", Align::Right),
        ("SERVICE", Align::Left),
    ]);
    let rows = v["trajectories"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    for t in rows {
        let start = t["start_unix_nano"].as_u64().unwrap_or(0);
        let end = t["end_unix_nano"].as_u64().unwrap_or(start);
        let root = match (t["root_cause_step"].as_str(), t["root_cause_kind"].as_str()) {
            (Some(step), Some(kind)) => format!("{step}/{kind}"),
            (Some(step), None) => step.to_owned(),
            _ => "-".to_owned(),
        };
        let mut outcome = format::text_of(&t["outcome"]);
        if t["complete"] == Value::Bool(false) {
            outcome.push_str(" (incomplete)");
        }
        if t["pending"] == Value::Bool(true) {
            outcome.push_str(" (pending)");
        }
        table.row(vec![
            format::text_of(&t["trace_id"]),
            format::time_nanos(end),
            format::duration_nanos(end.saturating_sub(start)),
            outcome,
            root,
            format::text_of(&t["root_cause_reason"]),
            format::text_of(&t["model"]),
            format::count_of(&t["span_count"]),
            format::count_of(&t["finding_count"]),
            format::text_of(&t["service"]),
        ]);
    }
    let mut out = if table.is_empty() {
        "no trajectories match\n".to_owned()
    } else {
        table.render()
    };
    if rows.iter().any(|t| t["pending"] == Value::Bool(true)) {
        out.push_str("(pending): inside the late-data grace, not counted by `top` until it ends\n");
    }
    if let Some(cursor) = v["next_cursor"].as_str() {
        out.push_str(&format!("more: --cursor {cursor}\n"));
    }
    out
}
