//! Tests of offline analysis: file formats, equivalence of formats, the live-pipeline
//! routing of evaluator spans, gates and errors.

use std::io::Write;
use std::path::{Path, PathBuf};

use prost::Message;

use super::*;
use crate::model::Outcome;
use crate::simulate::{to_otlp_json, Label, Scenario, SimConfig, Simulator};

const START: u64 = 1_717_200_000_000_000_000;

/// Simulated runs written as the collector's file exporter would, traces and logs in
/// separate files (`traces.pb`, `logs.pb`, `traces.jsonl`, `logs.jsonl`) and also all in
/// one JSON file (`all.jsonl`).
fn write_sim(dir: &Path, runs: usize, seed: u64) -> Vec<Label> {
    let mut sim = Simulator::new(SimConfig {
        scenario: Scenario::uniform(0.04, 0.08),
        ..SimConfig::new(seed, START)
    });
    let mut files: Vec<std::fs::File> = [
        "traces.pb",
        "logs.pb",
        "traces.jsonl",
        "logs.jsonl",
        "all.jsonl",
    ]
    .iter()
    .map(|n| std::fs::File::create(dir.join(n)).unwrap())
    .collect();
    let mut labels = Vec::new();
    let prefixed = |f: &mut std::fs::File, bytes: Vec<u8>| {
        f.write_all(&(bytes.len() as u32).to_be_bytes()).unwrap();
        f.write_all(&bytes).unwrap();
    };
    for _ in 0..runs {
        let run = sim.next_run();
        let mut traces = vec![run.traces];
        traces.extend(run.late_traces);
        for t in &traces {
            prefixed(&mut files[0], t.encode_to_vec());
            let line = to_otlp_json(t).unwrap();
            writeln!(files[2], "{line}").unwrap();
            writeln!(files[4], "{line}").unwrap();
        }
        if let Some(l) = &run.logs {
            prefixed(&mut files[1], l.encode_to_vec());
            let line = to_otlp_json(l).unwrap();
            writeln!(files[3], "{line}").unwrap();
            writeln!(files[4], "{line}").unwrap();
        }
        labels.push(run.label);
    }
    labels
}

fn settings() -> AnalyzeSettings {
    let s = Settings::resolve(FileConfig::default(), None, Overrides::default()).unwrap();
    AnalyzeSettings::from_settings(&s, Vec::new())
}

fn paths(dir: &Path, names: &[&str]) -> Vec<PathBuf> {
    names.iter().map(|n| dir.join(n)).collect()
}

fn numbers(r: &Report) -> Value {
    serde_json::to_value(BreakdownDto::from_breakdown(&r.overall)).unwrap()
}

#[test]
fn proto_and_json_give_the_same_numbers_as_the_labels() {
    let dir = tempfile::tempdir().unwrap();
    let labels = write_sim(dir.path(), 150, 3);
    let proto = analyze_files(&paths(dir.path(), &["traces.pb", "logs.pb"]), &settings()).unwrap();
    let json = analyze_files(
        &paths(dir.path(), &["traces.jsonl", "logs.jsonl"]),
        &settings(),
    )
    .unwrap();
    let mixed = analyze_files(&paths(dir.path(), &["all.jsonl"]), &settings()).unwrap();

    assert_eq!(proto.assembly.trajectories, 150);
    assert_eq!(numbers(&proto), numbers(&json));
    assert_eq!(numbers(&proto), numbers(&mixed));
    assert_eq!(proto.root_causes, json.root_causes);

    // Late evaluator traces are merged into their run, not counted as runs.
    let late = labels.len() as u64;
    assert!(proto.assembly.annotation_traces <= late);
    let planted = |outcome: Outcome| labels.iter().filter(|l| l.outcome == outcome).count() as u64;
    let totals = &proto.overall.totals;
    assert_eq!(totals.total(), 150);
    // Every run's outcome is read from its spans as the simulator planted it, so the
    // counts are the labels' counts exactly (per run: `trajectories_file_…` below).
    assert_eq!(totals.failed, planted(Outcome::Failed), "failed runs");
    assert_eq!(
        totals.recovered,
        planted(Outcome::Recovered),
        "recovered runs"
    );
    assert_eq!(totals.success, planted(Outcome::Success), "successful runs");
    let f = &proto.files[0];
    assert_eq!(f.format, input::Format::Proto);
    assert!(!f.zstd);
    assert!(f.trace_requests >= 150);
    assert_eq!(proto.files[1].log_requests, json.files[1].log_requests);
    assert!(
        proto.files[1].log_records > 0,
        "the simulator writes evaluation logs"
    );
}

#[test]
fn zstd_files_are_detected_by_their_magic_number() {
    let dir = tempfile::tempdir().unwrap();
    write_sim(dir.path(), 60, 5);
    for name in ["traces.pb", "all.jsonl"] {
        let raw = std::fs::read(dir.path().join(name)).unwrap();
        let packed = zstd::encode_all(&raw[..], 3).unwrap();
        // No `.zst` suffix: the magic number decides.
        std::fs::write(dir.path().join(format!("{name}.packed")), packed).unwrap();
    }
    let plain = analyze_files(&paths(dir.path(), &["traces.pb"]), &settings()).unwrap();
    let packed = analyze_files(&paths(dir.path(), &["traces.pb.packed"]), &settings()).unwrap();
    assert!(packed.files[0].zstd);
    assert_eq!(packed.files[0].bytes, plain.files[0].bytes);
    assert_eq!(numbers(&plain), numbers(&packed));
    let json = analyze_files(&paths(dir.path(), &["all.jsonl.packed"]), &settings()).unwrap();
    assert_eq!(json.files[0].format, input::Format::Json);
    assert_eq!(json.overall.totals.total(), 60);
}

#[test]
fn malformed_input_names_the_file_and_where() {
    let dir = tempfile::tempdir().unwrap();
    write_sim(dir.path(), 10, 9);

    // A truncated protobuf record: the offset of the record's length prefix.
    let raw = std::fs::read(dir.path().join("traces.pb")).unwrap();
    let first_len = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize;
    let cut = &raw[..4 + first_len + 10];
    let path = dir.path().join("cut.pb");
    std::fs::write(&path, cut).unwrap();
    let err = analyze_files(std::slice::from_ref(&path), &settings()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("cut.pb"), "{text}");
    assert!(
        text.contains(&format!("byte offset {}", 4 + first_len)),
        "{text}"
    );
    assert!(text.contains("truncated"), "{text}");

    // A record that is neither traces nor logs.
    let path = dir.path().join("garbage.pb");
    let mut bytes = 5u32.to_be_bytes().to_vec();
    bytes.extend([0xff, 0xff, 0xff, 0xff, 0xff]);
    std::fs::write(&path, bytes).unwrap();
    let text = analyze_files(std::slice::from_ref(&path), &settings())
        .unwrap_err()
        .to_string();
    assert!(text.contains("garbage.pb: byte offset 0"), "{text}");

    // A bad JSON line: its line number.
    let mut lines = std::fs::read_to_string(dir.path().join("traces.jsonl")).unwrap();
    lines.push_str("{\"resourceSpans\": [{\"scopeSpans\": 3}]}\n");
    let n = lines.lines().count();
    let path = dir.path().join("bad.jsonl");
    std::fs::write(&path, lines).unwrap();
    let text = analyze_files(std::slice::from_ref(&path), &settings())
        .unwrap_err()
        .to_string();
    assert!(text.contains(&format!("bad.jsonl: line {n}")), "{text}");

    // A JSON line that is not an OTLP request.
    let path = dir.path().join("other.jsonl");
    std::fs::write(&path, "{\"resourceMetrics\": []}\n").unwrap();
    let text = analyze_files(std::slice::from_ref(&path), &settings())
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("line 1") && text.contains("resourceMetrics"),
        "{text}"
    );

    // A missing file.
    let text = analyze_files(&[dir.path().join("nope.pb")], &settings())
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("nope.pb") && text.contains("cannot open"),
        "{text}"
    );
}

#[test]
fn a_length_over_the_limit_is_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.pb");
    std::fs::write(&path, [0x7f, 0xff, 0xff, 0xff, 0, 0]).unwrap();
    let text = analyze_files(std::slice::from_ref(&path), &settings())
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("byte offset 0") && text.contains("max_request_bytes"),
        "{text}"
    );
}

#[test]
fn empty_input_gives_an_empty_breakdown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.jsonl");
    std::fs::write(&path, "\n{}\n").unwrap();
    let r = analyze_files(std::slice::from_ref(&path), &settings()).unwrap();
    assert_eq!(r.overall.totals.total(), 0);
    assert!(r.root_causes.is_empty());
    let gates = check_gates(&r.overall, Some(0.1), &[]);
    assert!(gates[0].passed, "an empty input passes the rate itself");
}

#[test]
fn gates_compare_rates_over_all_trajectories() {
    let dir = tempfile::tempdir().unwrap();
    write_sim(dir.path(), 200, 21);
    let r = analyze_files(&paths(dir.path(), &["traces.pb", "logs.pb"]), &settings()).unwrap();
    let total = r.overall.totals.total() as f64;
    let rate = r.overall.totals.failure_rate();
    assert!(rate > 0.0);
    let top = &r.root_causes[0];
    let step_rate = r
        .root_causes
        .iter()
        .filter(|x| x.step == top.step)
        .map(|x| x.count)
        .sum::<u64>() as f64
        / total;

    let gates = check_gates(
        &r.overall,
        Some(rate + 0.01),
        &[
            StepGate {
                step: top.step.clone(),
                max: step_rate,
            },
            StepGate {
                step: "no-such-step".into(),
                max: 0.0,
            },
        ],
    );
    assert!(gates.iter().all(|g| g.passed), "{gates:?}");
    assert!((gates[1].value - step_rate).abs() < 1e-12);

    let gates = check_gates(
        &r.overall,
        Some(rate - 0.01),
        &[StepGate {
            step: top.step.clone(),
            max: step_rate - 0.001,
        }],
    );
    assert!(!gates[0].passed && !gates[1].passed, "{gates:?}");
}

#[test]
fn by_groups_the_table_and_rejects_unknown_dimensions() {
    let dir = tempfile::tempdir().unwrap();
    write_sim(dir.path(), 80, 4);
    let mut s = settings();
    s.by = vec!["model".into()];
    let r = analyze_files(&paths(dir.path(), &["traces.pb"]), &s).unwrap();
    assert_eq!(&*r.breakdown.by[0], "model");
    assert!(r.breakdown.trajectories.len() > 1);
    assert_eq!(r.overall.totals, r.breakdown.totals);
    s.by = vec!["colour".into()];
    let err = analyze_files(&paths(dir.path(), &["traces.pb"]), &s).unwrap_err();
    assert!(err.to_string().contains("colour"));
}

#[test]
fn the_report_renders_as_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    write_sim(dir.path(), 100, 8);
    let r = analyze_files(
        &paths(dir.path(), &["traces.jsonl", "logs.jsonl"]),
        &settings(),
    )
    .unwrap();
    let gates = check_gates(&r.overall, Some(0.0), &[]);
    let text = render_report(&r, &gates, 5);
    assert!(text.contains("2 files"), "{text}");
    assert!(text.contains("TOP ROOT CAUSES"), "{text}");
    assert!(text.contains("FAIL  failed / trajectories"), "{text}");
    let v = report_json(&r, &gates);
    assert_eq!(v["passed"], false);
    assert_eq!(v["breakdown"]["totals"]["trajectories"], 100);
    assert_eq!(v["files"][0]["format"], "json");
    assert_eq!(v["gates"][0]["gate"], "failure_rate");
    assert!(v["root_causes"][0]["count"].as_u64().unwrap() > 0);
}

#[test]
fn step_gate_arguments_parse() {
    assert_eq!(
        parse_step_gate("retriever=0.05").unwrap(),
        StepGate {
            step: "retriever".into(),
            max: 0.05
        }
    );
    assert!(parse_step_gate("retriever").is_err());
    assert!(parse_step_gate("=0.1").is_err());
    assert!(parse_step_gate("tool=1.5").is_err());
    assert!(parse_rate("x").is_err());
    assert_eq!(parse_rate(" 0.1 ").unwrap(), 0.1);
}

#[test]
fn first_key_reads_the_top_level_key() {
    assert_eq!(
        input::first_key(b" { \"resourceSpans\": []}"),
        Some(&b"resourceSpans"[..])
    );
    assert_eq!(input::first_key(b"{}"), Some(&b""[..]));
    assert_eq!(input::first_key(b"[1]"), None);
}

#[test]
fn trajectories_file_has_one_verdict_per_trajectory() {
    let dir = tempfile::tempdir().unwrap();
    let labels = write_sim(dir.path(), 120, 5);
    let report = analyze_files(
        &paths(dir.path(), &["traces.jsonl", "logs.jsonl"]),
        &settings(),
    )
    .unwrap();
    let out = dir.path().join("verdicts.jsonl");
    write_trajectories(&out, &report.trajectories).unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    let rows: HashMap<String, Value> = text
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["trace_id"].as_str().unwrap().to_owned(), v)
        })
        .collect();
    assert_eq!(rows.len(), labels.len(), "one line per run");
    let mut failed = 0;
    for label in &labels {
        let row = &rows[&label.trace_id];
        assert_eq!(row["outcome"], label.outcome.as_str(), "{}", label.trace_id);
        if label.outcome == Outcome::Failed {
            failed += 1;
            let rc = &row["root_cause"];
            assert!(rc["step"].is_string() && rc["span_id"].as_str().unwrap().len() == 16);
            assert!(!rc["reason"].as_str().unwrap().is_empty());
        } else {
            assert!(row["root_cause"].is_null());
        }
    }
    assert!(failed > 0, "the sample holds failed runs");
}
