//! `faultline top`: the per-step failure table of a running server
//! (`GET /api/v1/breakdown`), redrawn every `--interval` like `top`, or once.
//!
//! Rows are sorted worst first: by root causes, then failures. The same table renders
//! the breakdown of `faultline analyze`.

use std::io::Write as _;
use std::time::Duration;

use clap::Args;
use serde_json::Value;

use super::client::{Client, ClientError, ServerArgs};
use super::format::{self, Align, Table};

#[derive(Debug, Clone, Args)]
pub struct TopArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Window of event time, ending at the newest data (e.g. 5m, 15m, 1h).
    #[arg(long, default_value = "15m", value_name = "DURATION")]
    pub window: String,
    /// Group rows by cohort dimensions (comma-separated, e.g. model,route).
    #[arg(long, value_name = "DIMS")]
    pub by: Option<String>,
    /// Time between redraws: a duration such as 2s, 500ms or 1m.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub interval: Duration,
    /// Print once and exit instead of redrawing. (Without it, --json prints one JSON
    /// document per line at every interval.)
    #[arg(long)]
    pub once: bool,
    /// Rows shown (worst first); 0 shows all.
    #[arg(long, default_value_t = 40)]
    pub limit: usize,
}

fn query(args: &TopArgs) -> Vec<(&'static str, String)> {
    vec![
        ("window", args.window.clone()),
        ("by", args.by.clone().unwrap_or_default()),
    ]
}

/// Runs `faultline top`. Ctrl-C ends the refresh loop with success.
pub async fn run(args: &TopArgs) -> Result<(), ClientError> {
    let client = Client::from_args(&args.server)?;
    let q = query(args);
    // The first fetch decides: a server that cannot be reached, or a bad window, is an
    // error right away.
    let answer = client.get(&["api", "v1", "breakdown"], &q).await?;
    if args.once {
        if args.server.json {
            format::emit(&format!("{}\n", answer.text.trim_end()));
        } else {
            format::emit(&render_breakdown(&answer.json, args.limit));
        }
        return Ok(());
    }
    let interval = args.interval.max(Duration::from_millis(200));
    let mut current = Ok(answer);
    let stop = super::shutdown_signal();
    tokio::pin!(stop);
    loop {
        draw(args, &client, &current);
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = tokio::time::sleep(interval) => {}
        }
        current = tokio::select! {
            _ = &mut stop => return Ok(()),
            r = client.get(&["api", "v1", "breakdown"], &q) => r,
        };
    }
}

fn draw(args: &TopArgs, client: &Client, current: &Result<super::client::Answer, ClientError>) {
    let mut out = std::io::stdout().lock();
    if args.server.json {
        // One document per line, so the stream is JSON Lines.
        if let Ok(a) = current {
            let line: String = a.text.lines().map(str::trim).collect();
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
        return;
    }
    // Clear the screen and home the cursor, then redraw.
    let _ = write!(out, "\x1b[2J\x1b[H");
    let now = format::time_secs(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    );
    let _ = writeln!(
        out,
        "faultline top · {} · every {} · {now} · Ctrl-C to quit",
        client.base().as_str().trim_end_matches('/'),
        humantime::format_duration(args.interval)
    );
    match current {
        Ok(answer) => {
            let _ = write!(out, "{}", render_breakdown(&answer.json, args.limit));
        }
        Err(error) => {
            let _ = writeln!(out, "\n{error}\n(retrying)");
        }
    }
    let _ = out.flush();
}

/// The breakdown JSON (the `/api/v1/breakdown` shape) as text: the window, the outcome
/// totals, trajectories by cohort when grouped, and the step table worst first.
/// `limit` caps the step rows (0: all).
pub fn render_breakdown(b: &Value, limit: usize) -> String {
    let mut out = String::new();
    let from = b["window"]["from_unix_nano"].as_u64().unwrap_or(0);
    let to = b["window"]["to_unix_nano"].as_u64().unwrap_or(0);
    let by: Vec<&str> = b["by"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    out.push_str(&format!(
        "window {} → {} ({})",
        format::time_nanos(from),
        format::time_nanos(to),
        humantime::format_duration(Duration::from_secs(to.saturating_sub(from) / 1_000_000_000))
    ));
    if !by.is_empty() {
        out.push_str(&format!(" · by {}", by.join(", ")));
    }
    out.push('\n');
    let t = &b["totals"];
    out.push_str(&format!(
        "trajectories {}  failed {} ({})  recovered {}  success {}\n\n",
        format::count_of(&t["trajectories"]),
        format::count_of(&t["failed"]),
        format::percent_of(&t["failure_rate"]),
        format::count_of(&t["recovered"]),
        format::count_of(&t["success"]),
    ));

    if !by.is_empty() {
        if let Some(rows) = b["trajectories"].as_array() {
            let mut table = Table::new(&[
                ("COHORT", Align::Left),
                ("TRAJECTORIES", Align::Right),
                ("FAILED", Align::Right),
                ("FAIL%", Align::Right),
                ("RECOVERED", Align::Right),
            ]);
            let mut rows: Vec<&Value> = rows.iter().collect();
            rows.sort_by(|a, b| {
                b["failed"]
                    .as_u64()
                    .cmp(&a["failed"].as_u64())
                    .then_with(|| b["trajectories"].as_u64().cmp(&a["trajectories"].as_u64()))
            });
            for r in rows {
                table.row(vec![
                    format::cohort(&r["cohort"]),
                    format::count_of(&r["trajectories"]),
                    format::count_of(&r["failed"]),
                    format::percent_of(&r["failure_rate"]),
                    format::count_of(&r["recovered"]),
                ]);
            }
            if !table.is_empty() {
                out.push_str(&table.render());
                out.push('\n');
            }
        }
    }

    let mut headers = vec![("STEP", Align::Left)];
    if !by.is_empty() {
        headers.push(("COHORT", Align::Left));
    }
    headers.extend([
        ("RUNS", Align::Right),
        ("FAILED", Align::Right),
        ("FAIL%", Align::Right),
        ("ROOT", Align::Right),
        ("ROOT%", Align::Right),
        ("P50ms", Align::Right),
        ("P90ms", Align::Right),
        ("P99ms", Align::Right),
        ("ROOT CAUSES", Align::Left),
        ("FINDINGS", Align::Left),
    ]);
    let mut table = Table::new(&headers);
    let mut steps: Vec<&Value> = b["steps"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    steps.sort_by(|a, b| {
        let key = |v: &Value| {
            (
                v["root_causes"].as_u64().unwrap_or(0),
                v["failures"].as_u64().unwrap_or(0),
            )
        };
        key(b).cmp(&key(a))
    });
    let total = steps.len();
    let shown = if limit == 0 { total } else { limit.min(total) };
    for s in steps.iter().take(shown) {
        let mut row = vec![format::text_of(&s["step"])];
        if !by.is_empty() {
            row.push(format::cohort(&s["cohort"]));
        }
        row.extend([
            format::count_of(&s["runs"]),
            format::count_of(&s["failures"]),
            format::percent_of(&s["failure_rate"]),
            format::count_of(&s["root_causes"]),
            format::percent_of(&s["root_cause_rate"]),
            format::millis(&s["p50_ms"]),
            format::millis(&s["p90_ms"]),
            format::millis(&s["p99_ms"]),
            format::top_counts(&s["root_causes_by_kind"], 2),
            format::top_counts(&s["findings_by_kind"], 3),
        ]);
        table.row(row);
    }
    if table.is_empty() {
        out.push_str("no step runs in this window\n");
    } else {
        out.push_str(&table.render());
        if shown < total {
            out.push_str(&format!(
                "… {} more rows (--limit 0 shows all)\n",
                total - shown
            ));
        }
    }
    out
}
