//! The real-framework matrix (`tests/frameworks/README.md`): traces emitted by released
//! agent frameworks and instrumentations against a fake model server, with planted faults
//! whose expected outcome, root-cause step and agent (and the expected step of every
//! span) were written from the agents' scripts.
//!
//! - `framework_goldens_are_scored`: analyses every captured golden with the default
//!   configuration and prints the per-framework table
//!   (`cargo test --test it frameworks -- --nocapture`);
//! - `framework_agents_live`: re-runs every agent against a running faultline, through
//!   the real exporters, and checks the outcome, root-cause step and agent of each run
//!   (every scenario but those marked `"live": false` in their scenarios.json).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use faultline::analyze::{analyze, AnalyzeConfig};
use faultline::config::FileConfig;
use faultline::ingest::decode::{decode_traces, parse_traces_json};
use faultline::model::{Analysis, Interner, Outcome, SpanRecord, TraceId, Trajectory};
use serde_json::Value;

use crate::support::{get_json, python, repo_path, start_server_with};

/// Floors under which the matrix fails: the figures reached when the matrix was last
/// extended, so that a change of rules that loses ground on real frameworks fails. The
/// targets are 97% (outcome), 95% (root cause on failed runs) and 97% (span steps). The
/// truncation, unknown-tool and deadline scenarios (labelled from the agents' scripts
/// before faultline saw them) brought the figures to 94% / 92% / 99% (199/211, 164/179,
/// 2224/2249); four deadline runs leave no sign of the deadline in their trace at all
/// (every span ends OK), and are kept, scored, as what the product cannot yet see.
const FLOOR_OUTCOME: f64 = 0.94;
const FLOOR_ROOT_CAUSE: f64 = 0.91;
const FLOOR_SPAN_STEPS: f64 = 0.98;
/// Live runs whose outcome and root cause match the scenario's expectation. Lower than
/// the goldens' figure: a live run is the same agent, but not the same bytes.
const FLOOR_LIVE: f64 = 0.85;

#[derive(Default, Clone, Copy)]
struct Score {
    runs: usize,
    outcome_ok: usize,
    failed: usize,
    root_ok: usize,
    spans: usize,
    spans_ok: usize,
}

impl Score {
    fn add(&mut self, o: &Score) {
        self.runs += o.runs;
        self.outcome_ok += o.outcome_ok;
        self.failed += o.failed;
        self.root_ok += o.root_ok;
        self.spans += o.spans;
        self.spans_ok += o.spans_ok;
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

fn pct(a: usize, b: usize) -> String {
    if b == 0 {
        "–".to_string()
    } else {
        format!("{:.0}% ({a}/{b})", 100.0 * a as f64 / b as f64)
    }
}

/// The spans of an OTLP/JSON lines file, one request per line.
fn read_spans(path: &Path) -> Vec<SpanRecord> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let interner = Interner::default();
    let mut spans = Vec::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.expect("readable golden");
        if line.trim().is_empty() {
            continue;
        }
        let request = parse_traces_json(line.as_bytes())
            .unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), n + 1));
        let decoded = decode_traces(request, &interner);
        assert_eq!(
            decoded.rejected,
            0,
            "{}: {:?}",
            path.display(),
            decoded.first_error
        );
        spans.extend(decoded.items);
    }
    spans
}

/// One analysis per trace of the golden.
fn analyse(spans: Vec<SpanRecord>) -> Vec<Analysis> {
    let mut by_trace: BTreeMap<TraceId, Vec<SpanRecord>> = BTreeMap::new();
    for s in spans {
        by_trace.entry(s.trace_id).or_default().push(s);
    }
    let config = AnalyzeConfig::default();
    by_trace
        .into_iter()
        .map(|(id, spans)| {
            analyze(
                Arc::new(Trajectory::build(id, spans, vec![], vec![])),
                &config,
            )
        })
        .collect()
}

/// Prints an analysis: every span with its step, the findings and the verdict
/// (`FRAMEWORKS_DUMP=<framework>/<scenario>`).
fn dump(a: &Analysis) {
    let t = &a.trajectory;
    for (i, (span, step)) in t.spans.iter().zip(&a.steps).enumerate() {
        let mut depth = 0;
        let mut cur = t.parent[i];
        while let Some(p) = cur {
            depth += 1;
            cur = t.parent[p as usize];
        }
        println!(
            "{}{} [{} {}]",
            "  ".repeat(depth),
            span.name,
            step.kind.as_str(),
            step.source.as_str()
        );
    }
    for f in &a.findings {
        println!(
            "finding {} {} on `{}`{}: {}",
            f.step.as_str(),
            f.kind.as_str(),
            t.spans[f.span as usize].name,
            if f.propagated { " (propagated)" } else { "" },
            f.reason
        );
    }
    println!("outcome {}", a.outcome.as_str());
    if let Some(rc) = &a.root_cause {
        println!(
            "root cause {} {} [{}]: {}",
            rc.step.as_str(),
            rc.kind.as_str(),
            rc.rule,
            rc.reason
        );
    }
}

/// The run's verdict over its traces (a run is usually one trace): failed when any
/// trace failed (its root cause is the first failed trace's), else recovered, else
/// success.
fn run_verdict(analyses: &[Analysis]) -> (&'static str, Option<(String, Option<String>)>) {
    if let Some(a) = analyses.iter().find(|a| a.outcome == Outcome::Failed) {
        let rc = a.root_cause.as_ref().map(|rc| {
            (
                rc.step.as_str().to_string(),
                rc.agent.as_ref().map(|s| s.to_string()),
            )
        });
        return ("failed", rc);
    }
    if analyses.iter().any(|a| a.outcome == Outcome::Recovered) {
        return ("recovered", None);
    }
    ("success", None)
}

fn expected_root(label: &Value) -> Option<(String, Option<String>)> {
    let rc = label.get("root_cause")?;
    let step = rc.get("step")?.as_str()?.to_string();
    let agent = rc.get("agent").and_then(Value::as_str).map(str::to_string);
    Some((step, agent))
}

/// Whether the blamed step (and agent, when the label names one) is the expected one.
/// An expected agent of `""` means none: the trace does not name the agent.
fn root_matches(
    actual: &Option<(String, Option<String>)>,
    expected: &(String, Option<String>),
) -> bool {
    let Some((step, agent)) = actual else {
        return false;
    };
    step == &expected.0
        && match &expected.1 {
            None => true,
            // The agent is not in the trace: the analysis must not name one.
            Some(want) if want.is_empty() => agent.is_none(),
            Some(want) => agent.as_deref() == Some(want.as_str()),
        }
}

fn golden_dirs() -> Vec<PathBuf> {
    let root = repo_path("tests/data/frameworks");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

fn label_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("framework golden directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".label.json"))
        .collect();
    files.sort();
    files
}

#[test]
fn framework_goldens_are_scored() {
    let dirs = golden_dirs();
    assert!(!dirs.is_empty(), "no goldens under tests/data/frameworks");
    let mut total = Score::default();
    let mut rows = Vec::new();
    let mut misses = Vec::new();
    for dir in &dirs {
        let framework = dir.file_name().unwrap().to_string_lossy().to_string();
        let mut score = Score::default();
        for label_path in label_files(dir) {
            let label: Value = serde_json::from_str(&std::fs::read_to_string(&label_path).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", label_path.display()));
            let scenario = label["scenario"].as_str().unwrap_or("?").to_string();
            let golden = label_path.with_file_name(format!("{scenario}.otlp.json"));
            let analyses = analyse(read_spans(&golden));
            if std::env::var("FRAMEWORKS_DUMP")
                .is_ok_and(|d| d == format!("{framework}/{scenario}"))
            {
                for a in &analyses {
                    dump(a);
                }
            }
            let (outcome, root) = run_verdict(&analyses);
            let want_outcome = label["outcome"].as_str().expect("label outcome");
            score.runs += 1;
            if outcome == want_outcome {
                score.outcome_ok += 1;
            } else {
                misses.push(format!(
                    "{framework}/{scenario}: outcome {outcome}, expected {want_outcome} (blamed {root:?})"
                ));
            }
            if want_outcome == "failed" {
                score.failed += 1;
                let mut want =
                    expected_root(&label).expect("a failed run's label names its root cause");
                // An agent the trace never names (its span was not exported) cannot be
                // named by the analysis either: then no name is the right answer.
                let text = std::fs::read_to_string(&golden).unwrap_or_default();
                if want.1.as_ref().is_some_and(|a| !text.contains(a.as_str())) {
                    want.1 = Some(String::new());
                }
                if root_matches(&root, &want) {
                    score.root_ok += 1;
                } else {
                    misses.push(format!(
                        "{framework}/{scenario}: root cause {root:?}, expected {want:?}"
                    ));
                }
            }
            // Span steps.
            let expected: HashMap<String, String> = label["spans"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                        .collect()
                })
                .unwrap_or_default();
            for a in &analyses {
                for (span, step) in a.trajectory.spans.iter().zip(&a.steps) {
                    let id = span.span_id.to_hex();
                    let Some(want) = expected.get(&id) else {
                        continue;
                    };
                    score.spans += 1;
                    if step.kind.as_str() == want {
                        score.spans_ok += 1;
                    } else {
                        misses.push(format!(
                            "{framework}/{scenario}: span `{}` is {}, expected {want}",
                            span.name,
                            step.kind.as_str()
                        ));
                    }
                }
            }
        }
        total.add(&score);
        rows.push((framework, score));
    }

    let mut out = String::new();
    out.push_str("\n| framework | runs | outcome | root cause (failed runs) | span steps |\n");
    out.push_str("|---|---|---|---|---|\n");
    for (framework, s) in &rows {
        out.push_str(&format!(
            "| {framework} | {} | {} | {} | {} |\n",
            s.runs,
            pct(s.outcome_ok, s.runs),
            pct(s.root_ok, s.failed),
            pct(s.spans_ok, s.spans)
        ));
    }
    out.push_str(&format!(
        "| **all** | {} | {} | {} | {} |\n",
        total.runs,
        pct(total.outcome_ok, total.runs),
        pct(total.root_ok, total.failed),
        pct(total.spans_ok, total.spans)
    ));
    if !misses.is_empty() {
        out.push_str("\nMisses:\n");
        for m in &misses {
            out.push_str(&format!("- {m}\n"));
        }
    }
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    let _ = lock.write_all(out.as_bytes());

    let outcome = ratio(total.outcome_ok, total.runs);
    let root = ratio(total.root_ok, total.failed);
    let spans = ratio(total.spans_ok, total.spans);
    assert!(
        outcome >= FLOOR_OUTCOME && root >= FLOOR_ROOT_CAUSE && spans >= FLOOR_SPAN_STEPS,
        "the framework matrix lost ground: outcome {outcome:.3} (floor {FLOOR_OUTCOME}), \
         root cause {root:.3} (floor {FLOOR_ROOT_CAUSE}), span steps {spans:.3} \
         (floor {FLOOR_SPAN_STEPS}){out}"
    );
}

/// The fake model server, as a child process; ends with the test.
struct FakeModel {
    child: Child,
    port: u16,
}

impl FakeModel {
    fn start() -> FakeModel {
        let mut child = Command::new(python())
            .arg(repo_path("tests/frameworks/harness/fake_model.py"))
            .arg("--exit-on-stdin-eof")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("fake model server starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("port line");
        let doc: Value = serde_json::from_str(&line).expect("port JSON");
        let port = doc["port"].as_u64().expect("port") as u16;
        FakeModel { child, port }
    }

    async fn script(&self, script: &Value) {
        let resp = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/_script", self.port))
            .json(script)
            .send()
            .await
            .expect("fake model answers");
        assert!(
            resp.status().is_success(),
            "script refused: {}",
            resp.text().await.unwrap_or_default()
        );
    }
}

impl Drop for FakeModel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The command that runs one framework's agent; panics when its environment is missing
/// (`./scripts/test` installs it).
fn agent_command(framework: &str) -> Command {
    let dir = repo_path(&format!("tests/frameworks/{framework}"));
    if dir.join("agent.mjs").exists() {
        assert!(
            dir.join("node_modules").exists(),
            "{framework}: node_modules missing: run ./scripts/test (or scripts/framework-envs {framework})"
        );
        let mut c = Command::new("node");
        c.arg(dir.join("agent.mjs"));
        return c;
    }
    let py = repo_path(&format!(".venvs/{framework}/bin/python"));
    assert!(
        py.exists(),
        "{framework}: {} missing: run ./scripts/test (or scripts/framework-envs {framework})",
        py.display()
    );
    let mut c = Command::new(py);
    c.arg(dir.join("agent.py"));
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framework_agents_live() {
    let _heavy = crate::support::heavy().await;
    let model = FakeModel::start();
    // Root-less traces (an instrumentation that never ends its root) complete on age.
    let file = FileConfig {
        top: faultline::config::RawTopLevel {
            max_trace_age: Some("20s".into()),
            ..Default::default()
        },
        ..FileConfig::default()
    };
    let running = start_server_with(file, "500ms").await;
    let endpoint = format!("http://{}", running.otlp_http_address);
    let mut failures = Vec::new();
    let mut runs = 0;
    let frameworks: Vec<String> = golden_dirs()
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    for framework in &frameworks {
        let spec_path = repo_path(&format!("tests/frameworks/{framework}/scenarios.json"));
        let spec: Value = serde_json::from_str(&std::fs::read_to_string(&spec_path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", spec_path.display()));
        for scenario in spec["scenarios"].as_array().expect("scenarios") {
            let name = scenario["name"].as_str().expect("scenario name");
            // `"live": false`: a scenario that waits out a deadline (seconds per run) is
            // scored from its golden only (tests/frameworks/README.md).
            if scenario["live"] == Value::Bool(false) {
                continue;
            }
            model.script(&scenario["model"]).await;
            let mut cmd = agent_command(framework);
            cmd.args([
                "--scenario",
                name,
                "--model-url",
                &format!("http://127.0.0.1:{}/v1", model.port),
                "--otlp-endpoint",
                &endpoint,
            ])
            .current_dir(repo_path("."));
            let out = tokio::process::Command::from(cmd)
                .output()
                .await
                .expect("agent runs");
            assert!(
                out.status.success(),
                "{framework}/{name}: agent failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let stdout = String::from_utf8_lossy(&out.stdout);
            let result: Value = stdout
                .lines()
                .rev()
                .find(|l| l.trim_start().starts_with('{'))
                .and_then(|l| serde_json::from_str(l).ok())
                .unwrap_or_else(|| panic!("{framework}/{name}: no result line in {stdout}"));
            let trace_ids: Vec<String> = result["trace_ids"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            assert!(!trace_ids.is_empty(), "{framework}/{name}: no trace ids");
            runs += 1;
            let mut docs = Vec::new();
            for id in &trace_ids {
                docs.push(wait_final(&running, id).await);
            }
            let outcome = if docs.iter().any(|d| d["outcome"] == "failed") {
                "failed"
            } else if docs.iter().any(|d| d["outcome"] == "recovered") {
                "recovered"
            } else {
                "success"
            };
            let expect = &scenario["expect"];
            let want = expect["outcome"].as_str().unwrap_or("?");
            if outcome != want {
                failures.push(format!(
                    "{framework}/{name}: outcome {outcome}, expected {want}"
                ));
                continue;
            }
            if want == "failed" {
                let doc = docs.iter().find(|d| d["outcome"] == "failed").unwrap();
                let rc = &doc["root_cause"];
                let actual = Some((
                    rc["step"].as_str().unwrap_or("").to_string(),
                    rc["agent"].as_str().map(str::to_string),
                ));
                let want = expected_root(expect).expect("failed scenario names its root cause");
                if !root_matches(&actual, &want) {
                    failures.push(format!(
                        "{framework}/{name}: root cause {actual:?}, expected {want:?}"
                    ));
                }
            }
        }
    }
    running.shutdown().await;
    println!("framework agents live: {runs} runs, {} off", failures.len());
    for f in &failures {
        println!("- {f}");
    }
    let ok = runs - failures.len();
    assert!(
        ratio(ok, runs) >= FLOOR_LIVE,
        "live framework runs below the floor: {ok}/{runs}\n{}",
        failures.join("\n")
    );
}

/// Polls the API until the trajectory exists and has stopped changing (the agent's
/// exporter may send a trace in several batches).
async fn wait_final(running: &faultline::server::Running, trace_id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    let mut last: Option<Value> = None;
    let mut stable = 0;
    loop {
        let (status, body) = get_json(running, &format!("/api/v1/trajectories/{trace_id}")).await;
        if status == 200 {
            if last.as_ref() == Some(&body) {
                stable += 1;
                if stable >= 3 {
                    return body;
                }
            } else {
                stable = 0;
                last = Some(body);
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "trajectory {trace_id} never analysed (last: {last:?})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
