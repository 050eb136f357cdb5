//! Configuration precedence, through the binary: a flag wins over its environment
//! variable, which wins over the config file, for a top-level key, a `[tls]` key, an
//! `[auth]` key and a `[limits]` key. Each run ends before binding anything: the path
//! a TLS or token error names, or whether an invalid value was taken, shows which
//! source won.

use crate::security::{faultline_bin, stderr_of};

/// Runs `faultline serve` with `args` and `env` (expected to stop with exit code 2 on
/// a configuration error) and returns its one line of error.
fn env_ref(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

async fn serve_error(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut argv = vec![
        "serve",
        "--api-address",
        "127.0.0.1:0",
        "--otlp-grpc-address",
        "127.0.0.1:0",
        "--otlp-http-address",
        "127.0.0.1:0",
    ];
    argv.extend_from_slice(args);
    let out = faultline_bin(&argv, env).await;
    let text = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{argv:?} {env:?}: {text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_win_over_the_environment_which_wins_over_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = |name: &str| dir.path().join(name).display().to_string();
    // Files that do not exist, one per source: the error names the one taken.
    let config = path("faultline.toml");
    std::fs::write(
        &config,
        format!(
            "idle_timeout = \"0s\"\n\
             [limits]\nmemory_bytes = 0\n\
             [tls]\ncert_file = {:?}\nkey_file = {:?}\n\
             [auth]\ningest_token_file = {:?}\n",
            path("cert-from-file"),
            path("key-from-file"),
            path("token-from-file"),
        ),
    )
    .expect("write config");
    let file = ["--config", config.as_str()];

    // A top-level key (idle_timeout) and a [limits] key (memory_bytes), both invalid in
    // the file: the file's value is reported, naming the file.
    let text = serve_error(&file, &[]).await;
    assert!(
        text.contains(&config) && text.contains("idle_timeout"),
        "{text}"
    );
    let valid_idle = [("FAULTLINE_IDLE_TIMEOUT", "5s")];
    let text = serve_error(&file, &valid_idle).await;
    assert!(
        text.contains(&config) && text.contains("limits.memory_bytes"),
        "the environment's idle_timeout is taken over the file's: {text}"
    );
    // The environment's valid memory budget is taken over the file's 0: the next
    // problem is the TLS file the config names.
    let env_valid = [
        ("FAULTLINE_IDLE_TIMEOUT", "5s"),
        ("FAULTLINE_MAX_MEMORY_BYTES", "100000000"),
    ];
    let text = serve_error(&file, &env_valid).await;
    assert!(!text.contains("memory_bytes"), "{text}");
    assert!(text.contains(&path("cert-from-file")), "{text}");
    // A flag's valid value is taken over the environment's invalid one.
    let env_invalid = [
        ("FAULTLINE_IDLE_TIMEOUT", "0s"),
        ("FAULTLINE_MAX_MEMORY_BYTES", "0"),
    ];
    let flags_valid = [
        &file[..],
        &["--idle-timeout", "5s", "--max-memory-bytes", "100000000"],
    ]
    .concat();
    let text = serve_error(&flags_valid, &env_invalid).await;
    assert!(
        !text.contains("memory_bytes") && !text.contains("idle_timeout"),
        "{text}"
    );
    assert!(text.contains(&path("cert-from-file")), "{text}");
    // ... and the environment's invalid one over the file's: named as the variable's,
    // with the key.
    let text = serve_error(&file, &env_invalid).await;
    assert!(
        text.contains("environment variable FAULTLINE_IDLE_TIMEOUT")
            && text.contains("idle_timeout")
            && !text.contains(&config),
        "{text}"
    );

    // [tls] cert_file and key_file: flag > environment > file.
    let tls_env = [
        ("FAULTLINE_TLS_CERT_FILE", path("cert-from-env")),
        ("FAULTLINE_TLS_KEY_FILE", path("key-from-env")),
    ];
    let with = |extra: &[(&str, String)]| -> Vec<(String, String)> {
        env_valid
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain(extra.iter().map(|(k, v)| (k.to_string(), v.clone())))
            .collect()
    };
    let env = with(&tls_env);
    let text = serve_error(&file, &env_ref(&env)).await;
    assert!(text.contains(&path("cert-from-env")), "{text}");
    let cert_flag = path("cert-from-flag");
    let key_flag = path("key-from-flag");
    let flags = [
        &file[..],
        &["--tls-cert-file", &cert_flag, "--tls-key-file", &key_flag],
    ]
    .concat();
    let text = serve_error(&flags, &env_ref(&env)).await;
    assert!(
        text.contains(&cert_flag) && text.contains("--tls-cert-file"),
        "{text}"
    );

    // [auth] ingest_token_file: with TLS files that load, the token file is next.
    let files = crate::security::Files::new();
    let (cert, key) = (
        files.path("server.pem").display().to_string(),
        files.path("server.key").display().to_string(),
    );
    let good_tls = [
        ("FAULTLINE_TLS_CERT_FILE", cert.clone()),
        ("FAULTLINE_TLS_KEY_FILE", key.clone()),
    ];
    let env = with(&good_tls);
    let text = serve_error(&file, &env_ref(&env)).await;
    assert!(
        text.contains(&path("token-from-file")) && text.contains("--ingest-token-file"),
        "{text}"
    );
    let env = with(&[
        good_tls[0].clone(),
        good_tls[1].clone(),
        ("FAULTLINE_INGEST_TOKEN_FILE", path("token-from-env")),
    ]);
    let text = serve_error(&file, &env_ref(&env)).await;
    assert!(text.contains(&path("token-from-env")), "{text}");
    let token_flag = path("token-from-flag");
    let flags = [&file[..], &["--ingest-token-file", &token_flag]].concat();
    let text = serve_error(&flags, &env_ref(&env)).await;
    assert!(text.contains(&token_flag), "{text}");
}
