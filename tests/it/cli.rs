//! The binary's command line: help, invalid configuration, exit codes.

use std::process::Command;

fn faultline() -> Command {
    Command::new(env!("CARGO_BIN_EXE_faultline"))
}

#[test]
fn help_explains_every_serve_option() {
    let out = faultline()
        .arg("serve")
        .arg("--help")
        .output()
        .expect("runs");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--config",
        "--otlp-grpc-address",
        "--otlp-http-address",
        "--api-address",
        "--data-dir",
        "--idle-timeout",
        "FAULTLINE_IDLE_TIMEOUT",
        "--max-trace-depth",
        "FAULTLINE_MAX_TRACE_DEPTH",
        "--max-connections",
        "FAULTLINE_MAX_CONNECTIONS",
        "--header-read-timeout",
        "FAULTLINE_HEADER_READ_TIMEOUT",
        "--metrics-push-endpoint",
        "FAULTLINE_METRICS_PUSH_ENDPOINT",
        "--metrics-push-interval",
        "--metrics-push-protocol",
        "--metrics-push-headers",
    ] {
        assert!(help.contains(flag), "`serve --help` lacks {flag}:\n{help}");
    }
}

#[test]
fn invalid_config_names_file_key_and_problem_and_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("faultline.toml");
    std::fs::write(&path, "idle_timeout = \"soon\"\n").expect("write");
    let out = faultline()
        .arg("--config")
        .arg(&path)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("faultline.toml"), "{err}");
    assert!(err.contains("idle_timeout"), "{err}");
    assert!(err.contains("soon"), "{err}");

    std::fs::write(&path, "idle_timout = \"5s\"\n").expect("write");
    let out = faultline()
        .arg("--config")
        .arg(&path)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("idle_timout"), "{err}");
}

#[test]
fn invalid_metrics_push_config_names_file_and_key_and_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("push.toml");
    std::fs::write(
        &path,
        "[metrics_push]\nendpoint = \"ftp://collector:4317\"\n",
    )
    .expect("write");
    let out = faultline()
        .arg("--config")
        .arg(&path)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("push.toml") && err.contains("metrics_push.endpoint") && err.contains("ftp"),
        "{err}"
    );

    let out = faultline()
        .env("FAULTLINE_METRICS_PUSH_INTERVAL", "sometimes")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("metrics_push.interval") && err.contains("sometimes"),
        "{err}"
    );
}

#[test]
fn invalid_flag_value_exits_2() {
    let out = faultline()
        .args(["serve", "--api-address", "not-an-address"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("api_address") && err.contains("not-an-address"),
        "{err}"
    );
}

#[test]
fn env_variable_is_read() {
    let out = faultline()
        .env("FAULTLINE_IDLE_TIMEOUT", "never")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("idle_timeout") && err.contains("never"),
        "{err}"
    );
}

/// One OTLP/JSON line: a run with a root span and a custom `billing` step.
fn one_run_jsonl() -> String {
    let span = |id: &str, parent: &str, name: &str, step: &str| {
        serde_json::json!({
            "traceId": "4bf92f3577b34da6a3ce929d0e0e4736", "spanId": id, "parentSpanId": parent,
            "name": name, "startTimeUnixNano": "1717200000000000000",
            "endTimeUnixNano": "1717200001000000000",
            "attributes": [{"key": "agent.trajectory.step", "value": {"stringValue": step}}]
        })
    };
    serde_json::json!({"resourceSpans": [{"scopeSpans": [{"spans": [
        span("00f067aa0ba902b7", "", "run", "agent"),
        span("00f067aa0ba902b8", "00f067aa0ba902b7", "charge", "billing")
    ]}]}]})
    .to_string()
        + "\n"
}

#[test]
fn gates_naming_an_unknown_step_are_usage_errors_with_a_suggestion() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("traces.jsonl");
    std::fs::write(&file, one_run_jsonl()).expect("write");
    let out = faultline()
        .args(["analyze", "--max-root-cause-rate", "retrievr=0.05"])
        .arg(&file)
        .env("FAULTLINE_LOG", "warn")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown step `retrievr`"), "{err}");
    assert!(err.contains("did you mean `retriever`?"), "{err}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("pass"),
        "nothing is printed as passing"
    );
    // A custom step seen in the input, and a built-in one absent from it, are known.
    for gate in ["billing=0.5", "retriever=0.05"] {
        let out = faultline()
            .args(["analyze", "--max-root-cause-rate", gate])
            .arg(&file)
            .env("FAULTLINE_LOG", "warn")
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(0), "{gate}: {out:?}");
    }
}

#[test]
fn gates_over_an_input_without_trajectories_are_usage_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("traces.jsonl");
    std::fs::write(&file, "{\"resourceSpans\": []}\n").expect("write");
    let out = faultline()
        .args(["analyze", "--max-failure-rate", "0.1"])
        .arg(&file)
        .env("FAULTLINE_LOG", "warn")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no trajectory"), "{err}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("pass"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn client_options_go_before_or_after_the_subcommand_and_only_where_they_apply() {
    // Before the subcommand: taken (the unreachable URL is the one named).
    for args in [
        &["--server", "http://127.0.0.1:9", "top", "--once"][..],
        &["top", "--server", "http://127.0.0.1:9", "--once"][..],
        &["--json", "--server=http://127.0.0.1:9", "trajectories"][..],
    ] {
        let out = faultline()
            .args(args)
            .env("FAULTLINE_SERVER", "http://127.0.0.1:8")
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("http://127.0.0.1:9"), "{args:?}: {err}");
    }
    // Where they do not apply: refused, naming the option.
    for (args, named) in [
        (&["demo", "--server", "x"][..], "--server"),
        (&["--server", "x"][..], "--server"),
        (&["--idle-timeout", "5s", "top"][..], "--idle-timeout"),
    ] {
        let out = faultline().args(args).output().expect("runs");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(named), "{args:?}: {err}");
    }
}

#[test]
fn help_says_what_each_option_takes() {
    let out = faultline().args(["top", "--help"]).output().expect("runs");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("--interval <DURATION>") && help.contains("a duration such as 2s"),
        "{help}"
    );
    assert!(!help.contains("Seconds"), "{help}");
}
