//! Tests of the client side of the CLI: server URLs, formatting, and the rendering of
//! each API answer as text.

use serde_json::json;

use super::client::{parse_server, Client, ClientError};
use super::format::{self, Align, Table};
use super::{reasons, show, top, trajectories};

#[test]
fn server_urls_parse_with_or_without_scheme() {
    assert_eq!(
        parse_server("127.0.0.1:8700").unwrap().as_str(),
        "http://127.0.0.1:8700/"
    );
    assert_eq!(
        parse_server("http://example.test:9/prefix/")
            .unwrap()
            .as_str(),
        "http://example.test:9/prefix/"
    );
    assert_eq!(
        parse_server("https://example.test:8700").unwrap().as_str(),
        "https://example.test:8700/"
    );
    for bad in [
        "ftp://x:1",
        "http://",
        "http://x:1/?a=b",
        "not a url at all:",
    ] {
        let err = parse_server(bad).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{bad}: {err}");
    }
}

#[test]
fn endpoint_urls_keep_a_path_prefix_and_encode_segments() {
    let c = Client::new("http://h:1/base").unwrap();
    assert_eq!(
        c.url(&["api", "v1", "trajectories", "../x y"]).as_str(),
        "http://h:1/base/api/v1/trajectories/..%2Fx%20y"
    );
    let c = Client::new("h:1").unwrap();
    assert_eq!(c.url(&["api", "v1"]).as_str(), "http://h:1/api/v1");
}

#[test]
fn exit_codes_follow_the_kind_of_error() {
    let refused = ClientError::Refused {
        status: 400,
        message: "bad".into(),
    };
    assert_eq!(refused.exit_code(), 2);
    let down = ClientError::Unreachable {
        url: "http://127.0.0.1:9".into(),
        message: "Connection refused".into(),
    };
    assert_eq!(down.exit_code(), 1);
    assert!(down.to_string().contains("http://127.0.0.1:9"));
}

#[test]
fn tables_align_and_clip() {
    let mut t = Table::new(&[("NAME", Align::Left), ("N", Align::Right)]).max_cell(8);
    t.row(vec!["a".into(), "1".into()]);
    t.row(vec!["a-very-long-name".into(), "1234".into()]);
    let text = t.render();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "NAME         N");
    assert_eq!(lines[1], "a            1");
    assert_eq!(lines[2], "a-very-…  1234");
    assert_eq!(format::clip("a\x1b[2Jb", 10), "a [2Jb");
}

#[test]
fn numbers_durations_and_times_format() {
    assert_eq!(format::count(0), "0");
    assert_eq!(format::count(1234567), "1,234,567");
    assert_eq!(format::duration_nanos(400_000), "0.4ms");
    assert_eq!(format::duration_nanos(410_000_000), "410ms");
    assert_eq!(format::duration_nanos(2_310_000_000), "2.31s");
    assert_eq!(format::duration_nanos(185_000_000_000), "3m05s");
    assert_eq!(format::percent(0.08), "8.0%");
    assert_eq!(
        format::time_nanos(1_717_200_001_000_000_000),
        "2024-06-01 00:00:01Z"
    );
    assert_eq!(
        format::top_counts(&json!({"a": 3, "b": 9, "c": 0, "d": 1}), 2),
        "b 9, a 3, …"
    );
    assert_eq!(
        format::cohort(&json!({"model": "m1", "route": null})),
        "model=m1 route=-"
    );
}

fn breakdown() -> serde_json::Value {
    json!({
        "window": {"from_unix_nano": 1_717_200_000_000_000_000u64, "to_unix_nano": 1_717_200_900_000_000_000u64},
        "by": ["model"],
        "totals": {"trajectories": 120, "success": 100, "recovered": 8, "failed": 12, "failure_rate": 0.1},
        "trajectories": [
            {"cohort": {"model": "m1"}, "trajectories": 80, "success": 70, "recovered": 4, "failed": 6, "failure_rate": 0.075},
            {"cohort": {"model": null}, "trajectories": 40, "success": 30, "recovered": 4, "failed": 6, "failure_rate": 0.15}
        ],
        "steps": [
            {"step": "planner", "cohort": {"model": "m1"}, "runs": 80, "failures": 1, "root_causes": 0,
             "failure_rate": 0.0125, "root_cause_rate": 0.0, "p50_ms": 400.0, "p90_ms": 900.0, "p99_ms": null,
             "findings_by_kind": {"loop": 1}, "root_causes_by_kind": {}},
            {"step": "retriever", "cohort": {"model": "m1"}, "runs": 80, "failures": 9, "root_causes": 5,
             "failure_rate": 0.1125, "root_cause_rate": 0.0625, "p50_ms": 41.5, "p90_ms": 118.0, "p99_ms": 402.0,
             "findings_by_kind": {"empty_retrieval": 9}, "root_causes_by_kind": {"empty_retrieval": 5}}
        ]
    })
}

#[test]
fn the_breakdown_table_is_worst_first() {
    let text = top::render_breakdown(&breakdown(), 0);
    assert!(text.contains("(15m) · by model"), "{text}");
    assert!(
        text.contains("trajectories 120  failed 12 (10.0%)"),
        "{text}"
    );
    let retriever = text.find("retriever  model=m1").expect("retriever row");
    let planner = text.find("planner    model=m1").expect("planner row");
    assert!(retriever < planner, "worst first:\n{text}");
    assert!(text.contains("empty_retrieval 5"), "{text}");
    assert!(
        text.contains("model=-"),
        "an absent value shows as -:\n{text}"
    );

    let text = top::render_breakdown(&breakdown(), 1);
    assert!(!text.contains("planner "), "{text}");
    assert!(text.contains("1 more rows"), "{text}");
}

#[test]
fn an_empty_breakdown_says_so() {
    let text = top::render_breakdown(
        &json!({"window": {}, "by": [], "totals": {}, "trajectories": [], "steps": []}),
        0,
    );
    assert!(text.contains("no step runs in this window"), "{text}");
}

#[test]
fn the_trajectory_list_renders_rows_and_the_cursor() {
    let v = json!({
        "trajectories": [{
            "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "session_id": null, "service": "svc",
            "start_unix_nano": 1_717_200_000_000_000_000u64, "end_unix_nano": 1_717_200_002_310_000_000u64,
            "complete": false, "late_spans": 0, "revision": 0, "outcome": "failed",
            "root_cause_step": "retriever", "root_cause_kind": "empty_retrieval",
            "span_count": 18, "finding_count": 3,
            "root_cause_reason": "retriever returned 0 documents", "model": "gpt-4o-mini",
            "pending": true
        }],
        "next_cursor": "50"
    });
    let text = trajectories::render_list(&v);
    // Sorted by end time: the END column, holding the end, not the start.
    let header = text.lines().next().unwrap();
    assert!(
        header.contains("END (UTC)") && !header.contains("START"),
        "{header}"
    );
    assert!(
        header.find("REASON") < header.find("MODEL") && header.contains("MODEL"),
        "{header}"
    );
    assert!(
        text.contains(&format::time_nanos(1_717_200_002_310_000_000)),
        "{text}"
    );
    assert!(text.contains("retriever returned 0 documents"), "{text}");
    assert!(text.contains("gpt-4o-mini"), "{text}");
    assert!(
        text.contains("(pending)") && text.contains("late-data grace"),
        "{text}"
    );
    assert!(text.contains("4bf92f3577b34da6a3ce929d0e0e4736"), "{text}");
    assert!(text.contains("retriever/empty_retrieval"), "{text}");
    assert!(text.contains("failed (incomplete) (pending)"), "{text}");
    assert!(text.contains("2.31s"), "{text}");
    assert!(text.ends_with("more: --cursor 50\n"), "{text}");
    assert_eq!(
        trajectories::render_list(&json!({"trajectories": [], "next_cursor": null})),
        "no trajectories match\n"
    );
}

fn span(id: &str, parent: Option<&str>, name: &str, step: &str) -> serde_json::Value {
    json!({
        "span_id": id, "parent_span_id": parent, "name": name, "step": step,
        "step_source": "convention", "run_start": true,
        "start_unix_nano": 1_000_000_000u64, "end_unix_nano": 1_041_000_000u64,
        "status": "ok", "status_message": null
    })
}

#[test]
fn show_marks_the_blamed_span_and_prints_the_evidence_chain() {
    let t = json!({
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "session_id": "s1", "service": "svc",
        "start_unix_nano": 1_000_000_000u64, "end_unix_nano": 3_000_000_000u64,
        "complete": true, "incomplete_reason": null, "late_spans": 0, "revision": 0,
        "outcome": "failed",
        "root_cause": {
            "step": "retriever", "span_id": "02", "kind": "empty_retrieval",
            "reason": "retrieval returned 0 documents", "confidence": 0.9, "rule": "upstream",
            "evidence": [
                {"span_id": "02", "step": "retriever", "kind": "empty_retrieval", "reason": "0 documents"},
                {"span_id": "03", "step": "generator", "kind": "eval_failed", "reason": "hallucination"}
            ]
        },
        "findings": [
            {"span_id": "02", "step": "retriever", "kind": "empty_retrieval", "reason": "0 documents",
             "score": null, "source": "retrieval", "propagated": false},
            {"span_id": "01", "step": "agent", "kind": "error", "reason": "failed",
             "score": null, "source": "status", "propagated": true}
        ],
        "steps": [
            span("01", None, "agent_run", "agent"),
            span("02", Some("01"), "retrieve_docs", "retriever"),
            span("03", Some("01"), "generate", "generator"),
            span("04", Some("03"), "POST", "generator"),
            // A parent cycle: shown, detached, not lost.
            span("05", Some("06"), "cyc_a", "tool"),
            span("06", Some("05"), "cyc_b", "tool"),
        ],
        "anomalies": [{"kind": "cycle", "span_id": "05", "message": "the parent links lead back"}]
    });
    let text = show::render_trajectory(&t);
    assert!(
        text.contains("ROOT CAUSE  retriever — empty_retrieval (confidence 0.90, rule upstream)"),
        "{text}"
    );
    assert!(
        text.contains("1. retriever empty_retrieval at 02 (retrieve_docs)"),
        "{text}"
    );
    assert!(
        text.contains("2. generator eval_failed at 03 (generate)"),
        "{text}"
    );
    let blamed = text
        .lines()
        .find(|l| l.contains(show::BLAMED_MARK))
        .expect("a marked line");
    assert!(blamed.contains("├─ retrieve_docs"), "{blamed}");
    assert!(
        blamed.contains("retriever") && blamed.contains("41ms"),
        "{blamed}"
    );
    assert!(
        text.contains("└─ generate") && text.contains("   └─ POST"),
        "{text}"
    );
    assert!(text.contains("~ cyc_a"), "{text}");
    assert!(text.contains("detached"), "{text}");
    assert!(text.contains("error (propagated)"), "{text}");
    assert!(text.contains("anomalies: cycle (span 05)"), "{text}");
}

#[test]
fn reasons_render_with_steps_and_an_example() {
    let v = json!({
        "window_seconds": 3600, "step": null, "until_unix": 1_717_200_000u64,
        "reasons": [{
            "pattern_id": "p1", "key": "retriever", "template": "retrieval returned <*> documents",
            "count": 12, "root_causes": 6, "root_cause_share": 0.5,
            "steps": [{"step": "retriever", "count": 12}],
            "example_trace_ids": ["abc"], "per_minute": []
        }]
    });
    let text = reasons::render_reasons(&v);
    assert!(text.starts_with("window 1h until 2024-06-01"), "{text}");
    assert!(text.contains("retrieval returned <*> documents"), "{text}");
    assert!(
        text.contains("50.0%") && text.contains("retriever 12"),
        "{text}"
    );
}

#[test]
fn cohorts_render_generically() {
    let v = json!({"cohorts": [
        {"predicate": [{"key": "model", "op": "=", "value": "m2"},
                       {"key": "prompt_version", "op": "=", "value": "v7"}],
         "step": null, "support": 812, "failures": 250, "failure_rate": 0.31, "baseline_rate": 0.08,
         "risk_ratio": 3.9, "excess_failures": 186.7, "q_value": 0.00001,
         "example_trace_ids": ["t1"]},
        {"predicate": [{"key": "input_tokens", "op": ">=", "value": 4000}],
         "step": "generator", "support": 90, "risk_ratio": 2.5, "excess_failures": 12.0}
    ]});
    let text = reasons::render_cohorts(&v, 0);
    assert!(text.contains("model=m2 ∧ prompt_version=v7"), "{text}");
    assert!(text.contains("input_tokens >= 4000"), "{text}");
    assert!(
        text.contains("(any)") && text.contains("generator"),
        "{text}"
    );
    assert!(
        text.contains("31.0%") && text.contains("3.90") && text.contains("187"),
        "{text}"
    );
    let text = reasons::render_cohorts(&v, 1);
    assert!(text.contains("1 more cohorts"), "{text}");
    assert_eq!(
        reasons::render_cohorts(&json!({"cohorts": []}), 0),
        "no failure cohorts found\n"
    );
    let text = reasons::render_cohorts(
        &json!({"cohorts": [{"predicate": [{"key": "prompt_version", "op": "=", "value": "v7",
            "equivalent": [{"key": "service.version", "op": "=", "value": "1.6.1"}]}]}]}),
        0,
    );
    assert!(
        text.contains("prompt_version=v7 ≡ service.version=1.6.1"),
        "{text}"
    );
    let text = reasons::render_cohorts(&json!({"cohorts": [], "runs": 1, "pending": 6}), 0);
    assert!(
        text.contains("no confirmed failure cohorts yet")
            && text.contains("6 more cohorts pending confirmation"),
        "{text}"
    );
    let text = reasons::render_cohorts(&json!({"cohorts": [], "runs": 0, "pending": 0}), 0);
    assert!(text.contains("not been mined"), "{text}");
    let mut with_pending = v.clone();
    with_pending["pending"] = json!(1);
    let text = reasons::render_cohorts(&with_pending, 0);
    assert!(
        text.contains("1 more cohort pending confirmation"),
        "{text}"
    );
}

/// The settings of `faultline serve` with these flags.
fn serve_settings(flags: &[&str]) -> crate::config::Settings {
    use clap::Parser;
    let cli = super::Cli::try_parse_from(["faultline", "serve"].iter().chain(flags)).unwrap();
    match cli.command {
        Some(super::Command::Serve(args)) => args.settings().unwrap(),
        other => panic!("not serve: {other:?}"),
    }
}

#[test]
fn the_depth_cap_is_a_flag_a_file_key_and_defaults_to_1000() {
    use crate::config::{FileConfig, Overrides, Settings};
    let default = Settings::resolve(FileConfig::default(), None, Overrides::default()).unwrap();
    assert_eq!(default.max_trace_depth, 1000);

    assert_eq!(
        serve_settings(&["--max-trace-depth", "50"]).max_trace_depth,
        50
    );

    let path = std::path::Path::new("faultline.toml");
    let file = FileConfig::parse("max_trace_depth = 7\n", path).unwrap();
    let s = Settings::resolve(file, Some(path), Overrides::default()).unwrap();
    assert_eq!(s.max_trace_depth, 7);

    let zero = FileConfig::parse("max_trace_depth = 0\n", path).unwrap();
    let err = Settings::resolve(zero, Some(path), Overrides::default()).unwrap_err();
    assert!(err.to_string().contains("max_trace_depth"), "{err}");
}

#[test]
fn show_draws_a_deep_chain_with_short_prefixes() {
    let n = 20_000;
    let steps: Vec<serde_json::Value> = (1..=n)
        .map(|i| {
            let id = format!("{i:016x}");
            let parent = (i > 1).then(|| format!("{:016x}", i - 1));
            span(&id, parent.as_deref(), &format!("hop{i}"), "tool")
        })
        .collect();
    let text = show::render_tree(&steps, None, &json!([]));
    assert_eq!(
        text.lines().count(),
        n + 1,
        "a header and one line per span"
    );
    let longest = text.lines().map(|l| l.chars().count()).max().unwrap_or(0);
    assert!(longest < 200, "a line of {longest} characters");
    assert!(text.contains("┄ hop"), "deep levels are marked");
}

#[test]
fn connection_limits_are_flags_and_file_keys_with_defaults() {
    use crate::config::{FileConfig, Overrides, Settings};
    use std::time::Duration;
    let default = Settings::resolve(FileConfig::default(), None, Overrides::default()).unwrap();
    assert_eq!(default.conn_limits, crate::net::ConnLimits::default());
    assert_eq!(default.conn_limits.max_connections, 4096);
    assert_eq!(
        default.conn_limits.header_read_timeout,
        Duration::from_secs(10)
    );

    let s = serve_settings(&["--max-connections", "64", "--header-read-timeout", "3s"]);
    assert_eq!(s.conn_limits.max_connections, 64);
    assert_eq!(s.conn_limits.header_read_timeout, Duration::from_secs(3));

    let path = std::path::Path::new("faultline.toml");
    let file = FileConfig::parse(
        "max_connections = 8\nheader_read_timeout = \"500ms\"\n",
        path,
    )
    .unwrap();
    let s = Settings::resolve(file, Some(path), Overrides::default()).unwrap();
    assert_eq!(s.conn_limits.max_connections, 8);
    assert_eq!(
        s.conn_limits.header_read_timeout,
        Duration::from_millis(500)
    );

    for bad in ["max_connections = 0\n", "header_read_timeout = \"0s\"\n"] {
        let file = FileConfig::parse(bad, path).unwrap();
        assert!(
            Settings::resolve(file, Some(path), Overrides::default()).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn nearest_names_suggest_typos_only() {
    let steps = ["retriever", "reranker", "router", "tool"];
    assert_eq!(format::nearest("retrievr", steps), Some("retriever"));
    assert_eq!(format::nearest("Tool", steps), Some("tool"));
    assert_eq!(format::nearest("rooter", steps), Some("router"));
    assert_eq!(format::nearest("database", steps), None);
}

#[test]
fn client_options_are_accepted_before_or_after_the_subcommand() {
    use clap::{CommandFactory, FromArgMatches};
    let parse = |argv: &[&str]| {
        let m = super::Cli::command()
            .try_get_matches_from(argv)
            .expect("parses");
        super::Cli::from_arg_matches(&m).expect("builds")
    };
    for argv in [
        &["faultline", "--server", "http://h:1", "top", "--once"][..],
        &["faultline", "top", "--server", "http://h:1", "--once"][..],
        &[
            "faultline",
            "--server=http://h:1",
            "--json",
            "top",
            "--once",
        ][..],
    ] {
        let cli = parse(argv);
        let Some(super::Command::Top(top)) = cli.command else {
            panic!("{argv:?}: not top");
        };
        assert_eq!(top.server.server, "http://h:1", "{argv:?}");
        assert_eq!(top.server.json, argv.contains(&"--json"), "{argv:?}");
    }
    let cli = parse(&["faultline", "--json", "analyze", "f.pb"]);
    let Some(super::Command::Analyze(a)) = cli.command else {
        panic!("not analyze");
    };
    assert!(a.json);
    let cli = parse(&["faultline", "trajectories"]);
    let Some(super::Command::Trajectories(t)) = cli.command else {
        panic!("not trajectories");
    };
    assert_eq!(t.server.server, super::client::DEFAULT_SERVER);
}

#[test]
fn the_trajectory_list_marks_the_sorted_column_as_the_page_does() {
    let v = json!({"trajectories": [{
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "outcome": "success",
        "start_unix_nano": 1_717_200_000_000_000_000u64, "end_unix_nano": 1_717_200_001_000_000_000u64,
        "span_count": 2, "finding_count": 0
    }]});
    let header = |sort, order| {
        trajectories::render_sorted(&v, sort, order)
            .lines()
            .next()
            .unwrap()
            .to_owned()
    };
    let default = header("end", "desc");
    assert!(default.contains("END (UTC) ↓"), "{default}");
    assert!(!default.contains("DURATION ↓"), "{default}");
    assert_eq!(
        trajectories::render_list(&v).lines().next().unwrap(),
        default
    );
    let by_duration = header("duration", "asc");
    assert!(by_duration.contains("DURATION ↑"), "{by_duration}");
    assert!(!by_duration.contains('↓'), "{by_duration}");
}

#[test]
fn the_write_ahead_log_is_flags_and_a_file_table_with_defaults() {
    use crate::config::{FileConfig, Overrides, Settings};
    use crate::wal::FsyncPolicy;
    use std::time::Duration;
    let default = Settings::resolve(FileConfig::default(), None, Overrides::default()).unwrap();
    assert!(default.wal.enabled);
    assert_eq!(default.wal.fsync, FsyncPolicy::Batch);
    assert_eq!(default.wal.segment_bytes, 64 * 1024 * 1024);

    let s = serve_settings(&[
        "--wal-fsync",
        "interval",
        "--wal-fsync-interval",
        "200ms",
        "--wal-segment-bytes",
        "1048576",
        "--wal-enabled",
        "false",
    ]);
    assert!(!s.wal.enabled);
    assert_eq!(
        s.wal.fsync,
        FsyncPolicy::Interval(Duration::from_millis(200))
    );
    assert_eq!(s.wal.segment_bytes, 1 << 20);

    let path = std::path::Path::new("faultline.toml");
    let file = FileConfig::parse(
        "[wal]\nfsync = \"interval\"\nfsync_interval = \"2s\"\nsegment_bytes = 131072\n",
        path,
    )
    .unwrap();
    let s = Settings::resolve(file, Some(path), Overrides::default()).unwrap();
    assert_eq!(s.wal.fsync, FsyncPolicy::Interval(Duration::from_secs(2)));
    assert_eq!(s.wal.segment_bytes, 131072);

    for (bad, key) in [
        ("[wal]\nfsync = \"sometimes\"\n", "wal.fsync"),
        ("[wal]\nfsync_interval = \"0s\"\n", "wal.fsync_interval"),
        ("[wal]\nsegment_bytes = 100\n", "wal.segment_bytes"),
    ] {
        let file = FileConfig::parse(bad, path).unwrap();
        let err = Settings::resolve(file, Some(path), Overrides::default()).unwrap_err();
        assert!(err.to_string().contains(key), "{bad}: {err}");
        assert!(err.to_string().contains("faultline.toml"), "{err}");
    }
    assert!(FileConfig::parse("[wal]\nfsynk = \"batch\"\n", path).is_err());
}

#[test]
fn the_token_file_and_ca_file_options_go_before_or_after_the_subcommand() {
    let parse = |argv: &[&str]| super::parse_from(argv);
    for argv in [
        &[
            "faultline",
            "--api-token-file",
            "t",
            "--ca-file",
            "c",
            "top",
        ][..],
        &[
            "faultline",
            "top",
            "--api-token-file",
            "t",
            "--ca-file",
            "c",
        ][..],
        &["faultline", "--ca-file=c", "top", "--api-token-file=t"][..],
    ] {
        let cli = parse(argv).expect("parses");
        let Some(super::Command::Top(top)) = cli.command else {
            panic!("{argv:?}: not top");
        };
        assert_eq!(
            top.server.api_token_file.as_deref(),
            Some("t".as_ref()),
            "{argv:?}"
        );
        assert_eq!(
            top.server.ca_file.as_deref(),
            Some("c".as_ref()),
            "{argv:?}"
        );
        assert!(
            cli.serve.overrides.auth.api_token_file.is_none(),
            "{argv:?}"
        );
    }
    // Without a subcommand, or after `serve`, --api-token-file is the server's.
    let cli = parse(&["faultline", "--api-token-file", "t"]).expect("parses");
    assert!(cli.command.is_none());
    assert_eq!(
        cli.serve.overrides.auth.api_token_file.as_deref(),
        Some("t".as_ref())
    );
    let cli = parse(&["faultline", "serve", "--api-token-file", "t"]).expect("parses");
    let Some(super::Command::Serve(serve)) = cli.command else {
        panic!("not serve");
    };
    assert_eq!(
        serve.overrides.auth.api_token_file.as_deref(),
        Some("t".as_ref())
    );
    // Refused: --ca-file to serve, and serve's token option before a non-client command.
    for argv in [
        &["faultline", "serve", "--ca-file", "c"][..],
        &["faultline", "--ca-file", "c"][..],
        &["faultline", "--ca-file", "c", "demo"][..],
        &["faultline", "--api-token-file", "t", "simulate"][..],
    ] {
        let err = parse(argv).expect_err("refused");
        assert_eq!(err.exit_code(), 2, "{argv:?}: {err}");
    }
}
