//! `faultline reasons` (`GET /api/v1/reasons`: recurring failure reasons, ranked) and
//! `faultline cohorts` (`GET /api/v1/cohorts`: failure cohorts, best first).
//!
//! The cohorts table reads the answer generically, field by field, so that it prints
//! whatever subset of the documented fields a server sends: `predicate` (clauses
//! `{key, op, value}`), `step`, `support`, `failures`, `failure_rate`, `baseline_rate`,
//! `risk_ratio`, `excess_failures`, `q_value`, `example_trace_ids`.

use clap::Args;
use serde_json::Value;

use super::client::{Client, ClientError, ServerArgs};
use super::format::{self, Align, Table};

#[derive(Debug, Clone, Args)]
pub struct ReasonsArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Window of event time, ending at the newest data (e.g. 15m, 1h) [server default: 1h].
    #[arg(long, value_name = "DURATION")]
    pub window: Option<String>,
    /// Only reasons of findings in this step.
    #[arg(long, value_name = "STEP")]
    pub step: Option<String>,
    /// How many reasons (1..=1000) [server default: 20].
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Args)]
pub struct CohortsArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Window the cohorts are mined over: `ring` (the recent runs kept in memory) or a
    /// duration such as 15m or 1h [server default: ring].
    #[arg(long, value_name = "WINDOW")]
    pub window: Option<String>,
    /// Cohorts shown (best first); 0 shows all. Does not apply to --json.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
}

pub async fn run_reasons(args: &ReasonsArgs) -> Result<(), ClientError> {
    let client = Client::from_args(&args.server)?;
    let query = vec![
        ("window", args.window.clone().unwrap_or_default()),
        ("step", args.step.clone().unwrap_or_default()),
        (
            "limit",
            args.limit.map(|l| l.to_string()).unwrap_or_default(),
        ),
    ];
    let answer = client.get(&["api", "v1", "reasons"], &query).await?;
    if args.server.json {
        format::emit(&format!("{}\n", answer.text.trim_end()));
    } else {
        format::emit(&render_reasons(&answer.json));
    }
    Ok(())
}

pub async fn run_cohorts(args: &CohortsArgs) -> Result<(), ClientError> {
    let client = Client::from_args(&args.server)?;
    let query = vec![("window", args.window.clone().unwrap_or_default())];
    let answer = match client.get(&["api", "v1", "cohorts"], &query).await {
        Err(ClientError::Refused { status: 404, .. }) => {
            return Err(ClientError::Refused {
                status: 404,
                message: format!(
                    "the server at {} has no /api/v1/cohorts endpoint (a version without cohort discovery)",
                    client.base().as_str().trim_end_matches('/')
                ),
            })
        }
        other => other?,
    };
    if args.server.json {
        format::emit(&format!("{}\n", answer.text.trim_end()));
    } else {
        format::emit(&render_cohorts(&answer.json, args.limit));
    }
    Ok(())
}

/// The reasons JSON as text.
pub fn render_reasons(v: &Value) -> String {
    let mut out = String::new();
    let window = v["window_seconds"].as_u64().unwrap_or(0);
    out.push_str(&format!(
        "window {}",
        humantime::format_duration(std::time::Duration::from_secs(window))
    ));
    if let Some(until) = v["until_unix"].as_u64().filter(|u| *u > 0) {
        out.push_str(&format!(" until {}", format::time_secs(until)));
    }
    if let Some(step) = v["step"].as_str() {
        out.push_str(&format!(" · step {step}"));
    }
    out.push('\n');
    let mut table = Table::new(&[
        ("COUNT", Align::Right),
        ("ROOT", Align::Right),
        ("ROOT%", Align::Right),
        ("STEPS", Align::Left),
        ("PATTERN", Align::Left),
        ("EXAMPLE TRACE", Align::Left),
    ])
    .max_cell(80);
    for r in v["reasons"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let steps: Vec<String> = r["steps"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| {
                        format!(
                            "{} {}",
                            s["step"].as_str().unwrap_or("?"),
                            s["count"].as_u64().unwrap_or(0)
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        table.row(vec![
            format::count_of(&r["count"]),
            format::count_of(&r["root_causes"]),
            format::percent_of(&r["root_cause_share"]),
            format::clip(&steps.join(", "), 40),
            format::text_of(&r["template"]),
            r["example_trace_ids"][0].as_str().unwrap_or("-").to_owned(),
        ]);
    }
    if table.is_empty() {
        out.push_str("no failure reasons in this window\n");
    } else {
        out.push_str(&table.render());
    }
    out
}

/// One predicate clause `{key, op, value}` as `key op value` (`=` without spaces).
fn clause(c: &Value) -> String {
    let key = c["key"].as_str().unwrap_or("?");
    let op = c["op"].as_str().unwrap_or("=");
    let value = match &c["value"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut text = if op == "=" {
        format!("{key}={value}")
    } else {
        format!("{key} {op} {value}")
    };
    for e in c["equivalent"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        text.push_str(" ≡ ");
        text.push_str(&clause(e));
    }
    text
}

/// A number with a few significant digits, or `-`.
fn number(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if !x.is_finite() => x.to_string(),
        Some(x) if x.abs() >= 100.0 => format!("{x:.0}"),
        Some(x) if x.abs() >= 10.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.2}"),
        None => "-".into(),
    }
}

/// The cohorts JSON (`{"cohorts": [...]}`) as a table, best first as sent; at most
/// `limit` rows (0: all).
pub fn render_cohorts(v: &Value, limit: usize) -> String {
    let list = v["cohorts"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let pending = v["pending"].as_u64().unwrap_or(0);
    let pending_line = match pending {
        0 => String::new(),
        1 => "1 more cohort pending confirmation (significant in the latest mining run only)\n"
            .to_owned(),
        n => format!(
            "{n} more cohorts pending confirmation (significant in the latest mining run only)\n"
        ),
    };
    if list.is_empty() {
        if v["runs"].as_u64() == Some(0) {
            return "no failure cohorts yet: the window has not been mined\n".to_owned();
        }
        if pending > 0 {
            return format!("no confirmed failure cohorts yet; {pending_line}");
        }
        return "no failure cohorts found\n".to_owned();
    }
    let mut table = Table::new(&[
        ("#", Align::Right),
        ("PREDICATE", Align::Left),
        ("STEP", Align::Left),
        ("SUPPORT", Align::Right),
        ("FAILED", Align::Right),
        ("FAIL%", Align::Right),
        ("BASE%", Align::Right),
        ("RISK", Align::Right),
        ("EXCESS", Align::Right),
        ("Q", Align::Right),
        ("EXAMPLE TRACE", Align::Left),
    ])
    .max_cell(72);
    let shown = if limit == 0 {
        list.len()
    } else {
        limit.min(list.len())
    };
    for (i, c) in list.iter().take(shown).enumerate() {
        let predicate = match &c["predicate"] {
            Value::Array(clauses) => clauses.iter().map(clause).collect::<Vec<_>>().join(" ∧ "),
            Value::String(s) => s.clone(),
            Value::Null => "-".into(),
            other => other.to_string(),
        };
        let step = match &c["step"] {
            Value::Null => "(any)".to_owned(),
            other => format::text_of(other),
        };
        let q = match c["q_value"].as_f64() {
            Some(q) if q < 0.001 => format!("{q:.0e}"),
            Some(q) => format!("{q:.3}"),
            None => "-".into(),
        };
        table.row(vec![
            (i + 1).to_string(),
            predicate,
            step,
            format::count_of(&c["support"]),
            format::count_of(&c["failures"]),
            format::percent_of(&c["failure_rate"]),
            format::percent_of(&c["baseline_rate"]),
            number(&c["risk_ratio"]),
            number(&c["excess_failures"]),
            q,
            c["example_trace_ids"][0].as_str().unwrap_or("-").to_owned(),
        ]);
    }
    let mut out = table.render();
    if shown < list.len() {
        out.push_str(&format!(
            "… {} more cohorts (--limit 0 shows all)\n",
            list.len() - shown
        ));
    }
    out.push_str(&pending_line);
    out
}
