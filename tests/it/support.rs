//! Shared helpers: a server on free ports, API polling, the Python interpreter.

use std::path::PathBuf;
use std::time::Duration;

use faultline::config::{FileConfig, Overrides, RawTopLevel, Settings};
use faultline::server::{self, Running};
use serde_json::Value;

/// A server on 127.0.0.1 free ports with a short idle timeout.
pub async fn start_server(idle_timeout: &str) -> Running {
    start_server_with(FileConfig::default(), idle_timeout).await
}

pub async fn start_server_with(file: FileConfig, idle_timeout: &str) -> Running {
    start_server_graced(file, idle_timeout, "1s").await
}

/// As [`start_server_with`], with the given late-data grace (how long a released run
/// stays pending before it is counted).
pub async fn start_server_graced(
    mut file: FileConfig,
    idle_timeout: &str,
    late_grace: &str,
) -> Running {
    // Every successful run is stored too, so lists are complete.
    file.store
        .get_or_insert_with(|| faultline::store::RawStoreConfig {
            success_sample: Some(1.0),
            ..Default::default()
        });
    let settings = Settings::resolve(
        file,
        None,
        Overrides {
            top: RawTopLevel {
                otlp_grpc_address: Some("127.0.0.1:0".into()),
                otlp_http_address: Some("127.0.0.1:0".into()),
                api_address: Some("127.0.0.1:0".into()),
                idle_timeout: Some(idle_timeout.into()),
                // Short by default, so that counts (taken when a trace's grace ends) show up
                // quickly.
                late_grace: Some(late_grace.into()),
                shards: Some(2),
                data_dir: Some(fresh_data_dir()),
                ..RawTopLevel::default()
            },
            ..Overrides::default()
        },
    )
    .expect("valid test settings");
    server::start(&settings).await.expect("server starts")
}

/// The wall clock in unix nanoseconds.
pub fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64
}

/// An empty data directory of its own for one server, under the target directory.
pub fn fresh_data_dir() -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("data-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

pub fn api_url(running: &Running, path: &str) -> String {
    format!("http://{}{}", running.api_address, path)
}

/// GETs a JSON document from the API.
pub async fn get_json(running: &Running, path: &str) -> (u16, Value) {
    let resp = reqwest::get(api_url(running, path))
        .await
        .expect("API answers");
    let status = resp.status().as_u16();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

/// The sum of the `/metrics` lines that start with `prefix` (a family, or one series
/// written out with its labels), read over plain HTTP without a token.
pub async fn metrics_sum(running: &Running, prefix: &str) -> f64 {
    let text = reqwest::get(api_url(running, "/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Polls the API until the trajectory exists with `min_spans` spans, or panics after
/// `timeout`.
pub async fn wait_trajectory(
    running: &Running,
    trace_id: &str,
    min_spans: usize,
    timeout: Duration,
) -> Value {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let (status, body) = get_json(running, &format!("/api/v1/trajectories/{trace_id}")).await;
        if status == 200
            && body["steps"]
                .as_array()
                .is_some_and(|s| s.len() >= min_spans)
        {
            return body;
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "trajectory {trace_id} not assembled in {timeout:?}: last answer {status} {body}"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The step of the span named `name` in a trajectory document.
pub fn step_of<'a>(trajectory: &'a Value, name: &str) -> (&'a str, &'a str) {
    let steps = trajectory["steps"].as_array().expect("steps array");
    let s = steps
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no span named {name} in {trajectory}"));
    (
        s["step"].as_str().expect("step string"),
        s["step_source"].as_str().expect("step_source string"),
    )
}

/// The Python interpreter with the OpenTelemetry SDK installed by `./scripts/test`.
/// Missing is a failure, never a skip.
pub fn python() -> PathBuf {
    let p = std::env::var_os("FAULTLINE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    assert!(
        p.exists(),
        "the Python OpenTelemetry SDK is required: run ./scripts/test (looked for {})",
        p.display()
    );
    p
}

pub fn repo_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Tests that load the machine for many seconds (the demo's backfill, real Alertmanager,
/// Prometheus and Chromium, the crash test, the Python agents) run one at a time: on a
/// two-core machine their timing assertions must not depend on which others run beside.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub async fn heavy() -> tokio::sync::MutexGuard<'static, ()> {
    HEAVY.lock().await
}

/// Makes sure this process may hold `wanted` open files, raising the soft limit up to the
/// hard one if needed; panics up front, naming both limits, when even the hard limit is
/// lower, so a test that opens thousands of connections fails for the right reason.
pub fn ensure_open_files(wanted: libc::rlim_t) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    assert_eq!(got, 0, "getrlimit(RLIMIT_NOFILE) failed");
    if lim.rlim_cur >= wanted {
        return;
    }
    assert!(
        lim.rlim_max >= wanted,
        "this test needs {wanted} open files; the hard limit is {} (raise it with `ulimit -Hn`)",
        lim.rlim_max
    );
    lim.rlim_cur = wanted;
    // SAFETY: as above.
    let set = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    assert_eq!(set, 0, "setrlimit(RLIMIT_NOFILE, {wanted}) failed");
}

/// A port free on 127.0.0.1 now, for programs that cannot report the port they bound
/// (Prometheus, Alertmanager, the collector). faultline itself binds port 0: see
/// [`ServeChild`].
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The value of one series (e.g. `faultline_connections{listener="api"}`) on the
/// `/metrics` of the API at `api` (`http://host:port`); `None` if it is not there.
pub async fn metric_at(api: &str, series: &str) -> Option<f64> {
    let text = reqwest::get(format!("{api}/metrics"))
        .await
        .expect("/metrics answers")
        .text()
        .await
        .expect("text");
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// `faultline serve` as a child process (so that its RSS, its crash and its restart are
/// its own), on port 0 for every listener: the addresses are read back from its
/// "Serving." log line, so no port is probed free and then lost to another process.
pub struct ServeChild {
    pub process: tokio::process::Child,
    /// `http://host:port` of the API, the OTLP/HTTP and the OTLP/gRPC listeners.
    pub api: String,
    pub otlp_http: String,
    pub otlp_grpc: String,
    addresses: [std::net::SocketAddr; 3],
    log: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<String>>>,
}

impl ServeChild {
    /// Starts `faultline serve` with `args` (data directory, limits, …) and waits until it
    /// serves and answers `/readyz`. Panics with the child's last log lines otherwise.
    pub async fn start<I, S>(args: I) -> ServeChild
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        use tokio::io::AsyncBufReadExt;
        let mut process = tokio::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
            .arg("serve")
            .args(["--otlp-grpc-address", "127.0.0.1:0"])
            .args(["--otlp-http-address", "127.0.0.1:0"])
            .args(["--api-address", "127.0.0.1:0"])
            .args(args)
            .env("FAULTLINE_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the faultline binary starts");
        let stderr = process.stderr.take().expect("piped stderr");
        let log = std::sync::Arc::new(std::sync::Mutex::new(std::collections::VecDeque::new()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let keep = log.clone();
        // Reads the log for the whole life of the child (a full pipe would block it),
        // keeping the last lines for failure messages.
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            let mut tx = Some(tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("Serving.") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(line.clone());
                    }
                }
                let mut log = keep.lock().expect("log lock");
                if log.len() == 200 {
                    log.pop_front();
                }
                log.push_back(line);
            }
        });
        let serving = tokio::time::timeout(Duration::from_secs(60), rx).await;
        let tail = |log: &std::sync::Mutex<std::collections::VecDeque<String>>| {
            let log = log.lock().expect("log lock");
            log.iter().cloned().collect::<Vec<_>>().join("\n")
        };
        let line = match serving {
            Ok(Ok(line)) => line,
            Ok(Err(_)) => panic!("faultline exited before serving:\n{}", tail(&log)),
            Err(_) => panic!("faultline did not serve within 60 s:\n{}", tail(&log)),
        };
        let address = |key: &str| -> std::net::SocketAddr {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("no {key} address in `{line}`"))
        };
        let addresses = [
            address("otlp_grpc="),
            address("otlp_http="),
            address("api="),
        ];
        let child = ServeChild {
            process,
            otlp_grpc: format!("http://{}", addresses[0]),
            otlp_http: format!("http://{}", addresses[1]),
            api: format!("http://{}", addresses[2]),
            addresses,
            log,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = reqwest::get(format!("{}/readyz", child.api)).await {
                if r.status() == 200 {
                    return child;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "faultline is not ready:\n{}",
                child.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The child's last log lines (at most 200).
    pub fn log_tail(&self) -> String {
        let log = self.log.lock().expect("log lock");
        log.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// SIGKILL: no shutdown code runs.
    pub async fn kill9(mut self) {
        self.process.start_kill().expect("kill");
        let _ = self.process.wait().await;
    }

    /// The peak resident set of the child so far (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let pid = self.process.id().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .expect("VmHWM")
            * 1024
    }

    /// The child's resident memory now (`/proc/PID/statm`), in bytes.
    pub fn resident_bytes(&self) -> u64 {
        let pid = self.process.id().expect("running");
        let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).expect("statm");
        let pages: u64 = statm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .expect("resident pages");
        pages * 4096
    }

    /// The value of one series on the child's `/metrics`, if present.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        metric_at(&self.api, series).await
    }
}

/// The listen addresses of a server, in this process or a child.
pub trait Listeners {
    fn otlp_grpc_address(&self) -> std::net::SocketAddr;
    fn otlp_http_address(&self) -> std::net::SocketAddr;
    fn api_address(&self) -> std::net::SocketAddr;
}

impl Listeners for Running {
    fn otlp_grpc_address(&self) -> std::net::SocketAddr {
        self.otlp_grpc_address
    }
    fn otlp_http_address(&self) -> std::net::SocketAddr {
        self.otlp_http_address
    }
    fn api_address(&self) -> std::net::SocketAddr {
        self.api_address
    }
}

impl Listeners for ServeChild {
    fn otlp_grpc_address(&self) -> std::net::SocketAddr {
        self.addresses[0]
    }
    fn otlp_http_address(&self) -> std::net::SocketAddr {
        self.addresses[1]
    }
    fn api_address(&self) -> std::net::SocketAddr {
        self.addresses[2]
    }
}
