//! The README's Python quickstart, as written: its code blocks are read from README.md
//! (not copied here), run with the test venv's Python against a running faultline, and
//! the run they send must show up with the steps the snippet names.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::support::{get_json, python, repo_path, start_server, step_of, wait_trajectory};

/// The fenced code blocks (language, body) of the README section under `heading`, up to
/// the next heading of the same or a higher level.
fn blocks_under(readme: &str, heading: &str) -> Vec<(String, String)> {
    let level = heading.chars().take_while(|c| *c == '#').count();
    let mut lines = readme.lines().skip_while(|l| l.trim_end() != heading);
    assert!(
        lines.next().is_some(),
        "README.md has no `{heading}` section"
    );
    let mut blocks = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in lines {
        if let Some((lang, body)) = current.as_mut() {
            if line.trim_start().starts_with("```") {
                blocks.push((lang.clone(), std::mem::take(body)));
                current = None;
            } else {
                body.push_str(line);
                body.push('\n');
            }
            continue;
        }
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if hashes > 0 && hashes <= level && line[hashes..].starts_with(' ') {
            break;
        }
        if let Some(lang) = line.trim_start().strip_prefix("```") {
            current = Some((lang.trim().to_owned(), String::new()));
        }
    }
    assert!(
        current.is_none(),
        "an unclosed code block under `{heading}`"
    );
    blocks
}

/// `export NAME=VALUE` lines of a shell block.
fn exports(sh: &str) -> BTreeMap<String, String> {
    sh.lines()
        .filter_map(|l| l.trim().strip_prefix("export "))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
        .collect()
}

/// The packages of `pip install` lines of a shell block.
fn pip_packages(sh: &str) -> Vec<String> {
    sh.lines()
        .filter_map(|l| l.trim().strip_prefix("pip install "))
        .flat_map(|rest| rest.split_whitespace().map(str::to_owned))
        .filter(|p| !p.starts_with('-'))
        .collect()
}

#[test]
fn the_quickstart_blocks_are_found() {
    let readme = std::fs::read_to_string(repo_path("README.md")).expect("README.md");
    let blocks = blocks_under(&readme, "### From Python");
    let langs: Vec<&str> = blocks.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(langs, ["sh", "python", "python", "sh"], "{blocks:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_python_quickstart_runs_as_written() {
    let _heavy = crate::support::heavy().await;
    let readme = std::fs::read_to_string(repo_path("README.md")).expect("README.md");
    let blocks = blocks_under(&readme, "### From Python");
    let setup = &blocks
        .iter()
        .find(|(lang, body)| lang == "sh" && body.contains("export "))
        .expect("a shell block with the exports")
        .1;
    let python_blocks: Vec<&str> = blocks
        .iter()
        .filter(|(lang, _)| lang == "python")
        .map(|(_, body)| body.as_str())
        .collect();
    assert_eq!(
        python_blocks.len(),
        2,
        "the quickstart and the framework line"
    );

    // What the README installs is what the test venv holds (tests/python/requirements.txt),
    // so that the snippet runs here with what a reader would install.
    let requirements =
        std::fs::read_to_string(repo_path("tests/python/requirements.txt")).expect("requirements");
    let pinned: Vec<&str> = requirements
        .lines()
        .filter_map(|l| l.split("==").next())
        .map(str::trim)
        .collect();
    let mut packages = pip_packages(setup);
    for (_, body) in &blocks {
        packages.extend(pip_packages(body));
    }
    let section = readme
        .split("### From Python")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .unwrap_or_default();
    for line in section.lines().filter(|l| l.contains("(`pip install ")) {
        // The framework line's own install, given in the prose before it.
        if let Some(rest) = line.split("(`pip install ").nth(1) {
            packages.extend(rest.split('`').next().map(str::to_owned));
        }
    }
    assert!(packages.len() >= 3, "{packages:?}");
    for p in &packages {
        assert!(
            pinned.contains(&p.as_str()),
            "the README installs {p}, which tests/python/requirements.txt does not pin"
        );
    }

    let env = exports(setup);
    assert_eq!(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT").map(String::as_str),
        Some("http://127.0.0.1:4318"),
        "the README points at the default OTLP/HTTP address: {env:?}"
    );
    let service = env
        .get("OTEL_SERVICE_NAME")
        .expect("the README names the service")
        .clone();

    let running = start_server("300ms").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("quickstart.py");
    std::fs::write(&script, python_blocks.join("\n")).expect("write the snippet");
    let mut cmd = tokio::process::Command::new(python());
    cmd.arg(&script).current_dir(dir.path());
    for (k, v) in &env {
        cmd.env(k, v);
    }
    // The one change: the test server's port instead of the default 4318.
    cmd.env(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        format!("http://{}", running.otlp_http_address),
    );
    let out = cmd.output().await.expect("python runs");
    assert!(
        out.status.success(),
        "the README's Python quickstart failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The run shows up, under the README's service name, with the steps it names.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let trace_id = loop {
        let (_, list) =
            get_json(&running, &format!("/api/v1/trajectories?service={service}")).await;
        let ids: Vec<String> = list["trajectories"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|t| t["trace_id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(id) = ids.first() {
            assert_eq!(ids.len(), 1, "one run sent: {list}");
            break id.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the quickstart's run never showed up: {list}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let t: Value = wait_trajectory(&running, &trace_id, 3, Duration::from_secs(20)).await;
    assert_eq!(t["service"], service.as_str());
    assert_eq!(t["complete"], true, "{t}");
    assert_eq!(t["steps"].as_array().map(Vec::len), Some(3), "{t}");
    assert_eq!(step_of(&t, "answer_question").0, "agent");
    assert_eq!(
        step_of(&t, "search_docs"),
        ("retriever", "agent.trajectory.step")
    );
    assert_eq!(
        step_of(&t, "chat gpt-4o"),
        ("generator", "gen_ai.operation.name")
    );
    running.shutdown().await;
}
