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
