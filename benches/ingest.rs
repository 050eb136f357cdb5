//! Ingest throughput and memory, end to end, with the load generator beside the server.
//!
//! ```sh
//! cargo bench --bench ingest            # FAULTLINE_BENCH_SPANS=1500000 to change the load
//! FAULTLINE_BENCH_MEMORY_ONLY=1 cargo bench --bench ingest   # the memory figures alone
//! FAULTLINE_BENCH_WAL=1 cargo bench --bench ingest   # the write-ahead log's cost alone
//! FAULTLINE_BENCH_WAL=1 FAULTLINE_BENCH_CONCURRENCY=10 cargo bench --bench ingest  # 10 in flight
//! FAULTLINE_BENCH_TLS=1 cargo bench --bench ingest   # plain text against TLS alone
//! ```
//!
//! Prints, for realistic batches from `faultline simulate` (~350 spans per request):
//! 1. the decode-only ceiling: prost decoding the same batches in a loop, one thread;
//!    and prost + faultline's conversion into compact records, one thread;
//! 2. end to end over OTLP/gRPC on loopback (server with 2 shards, 4 concurrent
//!    requests of pre-encoded batches, `FAULTLINE_BENCH_CONCURRENCY` to change it; a
//!    collector's otlp exporter sends 10 at a time by default): spans/s accepted, and spans/s fully assembled +
//!    analysed (classified, detected, attributed), with every sink, without the
//!    aggregation sink (per-step metrics, breakdowns) and without the discovery sinks
//!    (reason clusters, failure cohorts), and the cost each adds;
//! 3. peak RSS, and RSS per buffered span (measured first) (spans held open with a long idle timeout),
//!    next to the wire size per span;
//! 4. with `FAULTLINE_BENCH_WAL=1`, only the cost of the write-ahead log: end to end with
//!    every sink, the log off, on with `fsync = "batch"` (the default) and on with
//!    `fsync = "interval"`, taking turns, `FAULTLINE_BENCH_WAL_RUNS` (default 5) runs
//!    each; medians, their ratios and the median of the ratios within each turn; first,
//!    what compressing a request costs at a few zstd levels. The other phases run with
//!    the log on (the default).
//!
//! With `FAULTLINE_BENCH_TLS=1` it prints only the cost of TLS: end to end over OTLP/gRPC
//! (every sink) in plain text and with TLS on every listener (a certificate generated
//! here; TLS 1.3, the client on the same machine), the two taking turns for
//! `FAULTLINE_BENCH_RUNS` runs each (default 5), their medians and the ratio.
//!
//! Every request carries fresh trace ids (the pre-encoded batches are re-sent with their
//! trace-id bytes rewritten in place), so the server assembles new traces throughout.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes};
use faultline::config::{FileConfig, Overrides, RawTls, RawTopLevel, Settings};
use faultline::ingest::decode::decode_traces;
use faultline::model::Interner;
use faultline::server::OptionalSinks;
use faultline::simulate::{SimConfig, Simulator};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

/// The binary's allocator, so that the figures are those of `faultline serve`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One pre-encoded request and where its trace-id bytes sit.
struct Batch {
    bytes: Vec<u8>,
    trace_id_offsets: Vec<usize>,
    spans: usize,
    traces: usize,
}

fn make_batches(target_spans: usize) -> Vec<Batch> {
    let mut sim = Simulator::new(SimConfig::new(1, 1_790_000_000_000_000_000));
    let mut batches = Vec::new();
    let mut total = 0;
    while total < target_spans {
        let b = sim.next_batch(350);
        let mut ids = HashSet::new();
        for rs in &b.traces.resource_spans {
            for ss in &rs.scope_spans {
                for s in &ss.spans {
                    ids.insert(s.trace_id.clone());
                }
            }
        }
        let bytes = b.traces.encode_to_vec();
        // Field 1 (trace_id) of Span and Link is tag 0x0a, length 16.
        let mut offsets = Vec::new();
        let mut i = 2;
        while i + 16 <= bytes.len() {
            if bytes[i - 2] == 0x0a && bytes[i - 1] == 0x10 && ids.contains(&bytes[i..i + 16]) {
                offsets.push(i);
                i += 16;
            } else {
                i += 1;
            }
        }
        total += b.span_count;
        batches.push(Batch {
            bytes,
            trace_id_offsets: offsets,
            spans: b.span_count,
            traces: b.labels.len(),
        });
    }
    batches
}

/// The batch with its trace ids made unique for `round`.
fn patched(batch: &Batch, round: u32) -> Bytes {
    let mut bytes = batch.bytes.clone();
    let r = round.to_le_bytes();
    for &o in &batch.trace_id_offsets {
        for k in 0..4 {
            bytes[o + k] ^= r[k];
        }
    }
    Bytes::from(bytes)
}

/// Sends pre-encoded bytes as the request body; keeps the response as bytes.
#[derive(Clone, Default)]
struct RawCodec;

struct RawEncoder;
struct RawDecoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

fn rss_kib(field: &str) -> u64 {
    faultline::memory::status_bytes(field).unwrap_or(0) / 1024
}

/// TLS for a run: the server's certificate and key files, and the CA the client trusts.
struct BenchTls {
    _dir: tempfile::TempDir,
    cert_file: std::path::PathBuf,
    key_file: std::path::PathBuf,
    ca_pem: String,
}

impl BenchTls {
    /// A CA and a certificate for localhost and 127.0.0.1 signed by it, in files.
    fn generate() -> BenchTls {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("key")).expect("CA");
        let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("leaf params");
        let key = KeyPair::generate().expect("key");
        let cert = leaf.signed_by(&key, &*ca).expect("leaf");
        let dir = tempfile::tempdir().expect("cert dir");
        let cert_file = dir.path().join("server.pem");
        let key_file = dir.path().join("server.key");
        std::fs::write(&cert_file, cert.pem()).expect("write cert");
        std::fs::write(&key_file, key.serialize_pem()).expect("write key");
        BenchTls {
            _dir: dir,
            cert_file,
            key_file,
            ca_pem: ca.pem(),
        }
    }
}

/// The server as it runs by default: plain text, the write-ahead log on with batch fsync.
const DEFAULT_SERVER: Variant<'static> = Variant {
    tls: None,
    wal: Some(faultline::wal::FsyncPolicy::Batch),
};

/// How a run's server differs from the default: TLS on its listeners, the write-ahead
/// log (off unless a policy is given).
#[derive(Clone, Copy, Default)]
struct Variant<'a> {
    tls: Option<&'a BenchTls>,
    wal: Option<faultline::wal::FsyncPolicy>,
}

fn settings(idle: &str, data_dir: &std::path::Path, variant: Variant<'_>) -> Settings {
    let mut s = Settings::resolve(
        FileConfig::default(),
        None,
        Overrides {
            top: RawTopLevel {
                otlp_grpc_address: Some("127.0.0.1:0".into()),
                otlp_http_address: Some("127.0.0.1:0".into()),
                api_address: Some("127.0.0.1:0".into()),
                idle_timeout: Some(idle.into()),
                late_grace: Some("1s".into()),
                max_buffered_spans: Some(20_000_000),
                shards: Some(2),
                data_dir: Some(data_dir.to_owned()),
                ..RawTopLevel::default()
            },
            tls: RawTls {
                cert_file: variant.tls.map(|t| t.cert_file.clone()),
                key_file: variant.tls.map(|t| t.key_file.clone()),
                ..RawTls::default()
            },
            ..Overrides::default()
        },
    )
    .expect("bench settings");
    s.max_queued_spans = 400_000;
    s.wal.enabled = variant.wal.is_some();
    if let Some(policy) = variant.wal {
        s.wal.fsync = policy;
    }
    s
}

/// Sends `rounds` passes over the batches with `streams` concurrent requests.
/// Returns (spans sent, traces sent, seconds until every request was accepted).
fn send_all(
    addr: std::net::SocketAddr,
    batches: &Arc<Vec<Batch>>,
    rounds: u32,
    first_round: u32,
    streams: usize,
) -> (u64, u64, f64) {
    send_all_tls(addr, batches, rounds, first_round, streams, None)
}

/// [`send_all`], over TLS trusting `ca_pem` when given.
fn send_all_tls(
    addr: std::net::SocketAddr,
    batches: &Arc<Vec<Batch>>,
    rounds: u32,
    first_round: u32,
    streams: usize,
    ca_pem: Option<&str>,
) -> (u64, u64, f64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("client runtime");
    rt.block_on(async {
        let endpoint = match ca_pem {
            None => tonic::transport::Endpoint::from_shared(format!("http://{addr}")),
            Some(pem) => tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
                .and_then(|e| {
                    e.tls_config(
                        tonic::transport::ClientTlsConfig::new()
                            .ca_certificate(tonic::transport::Certificate::from_pem(pem)),
                    )
                }),
        };
        let channel = endpoint
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        let next = Arc::new(AtomicU64::new(0));
        let total = batches.len() as u64 * rounds as u64;
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..streams {
            let channel = channel.clone();
            let next = next.clone();
            let batches = batches.clone();
            tasks.push(tokio::spawn(async move {
                let mut grpc = tonic::client::Grpc::new(channel);
                let path = http::uri::PathAndQuery::from_static(
                    "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                );
                let (mut spans, mut traces) = (0u64, 0u64);
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= total {
                        break;
                    }
                    let batch = &batches[(n % batches.len() as u64) as usize];
                    let round = first_round + (n / batches.len() as u64) as u32;
                    let body = patched(batch, round);
                    loop {
                        grpc.ready().await.expect("channel ready");
                        match grpc
                            .unary(tonic::Request::new(body.clone()), path.clone(), RawCodec)
                            .await
                        {
                            Ok(_) => break,
                            // Backpressure: retry as a collector would.
                            Err(s) if s.code() == tonic::Code::Unavailable => {
                                tokio::time::sleep(Duration::from_millis(20)).await
                            }
                            Err(s) => panic!("export failed: {s}"),
                        }
                    }
                    spans += batch.spans as u64;
                    traces += batch.traces as u64;
                }
                (spans, traces)
            }));
        }
        let (mut spans, mut traces) = (0, 0);
        for t in tasks {
            let (s, tr) = t.await.expect("sender");
            spans += s;
            traces += tr;
        }
        (spans, traces, start.elapsed().as_secs_f64())
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn end_to_end(
    batches: &Arc<Vec<Batch>>,
    rounds: u32,
    sinks: (bool, bool),
    variant: Variant<'_>,
) -> (f64, f64) {
    let dir = tempfile::tempdir().expect("data dir");
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("server runtime");
    let running = server_rt
        .block_on(faultline::server::start_with(
            &settings("200ms", dir.path(), variant),
            OptionalSinks {
                aggregation: sinks.0,
                discovery: sinks.1,
            },
        ))
        .expect("server starts");
    let addr = running.otlp_grpc_address;
    let analysed0 = running.metrics.trajectories_analysed.get();
    let start = Instant::now();
    let (spans, traces, accept_secs) = send_all_tls(
        addr,
        batches,
        rounds,
        1,
        concurrency(),
        variant.tls.map(|t| t.ca_pem.as_str()),
    );
    // Wait until every trace sent has been released and analysed.
    while running.metrics.trajectories_analysed.get() - analysed0 < traces {
        std::thread::sleep(Duration::from_millis(5));
    }
    // The last traces wait out the idle timeout before release: not work, so not counted.
    let done_secs = (start.elapsed().as_secs_f64() - 0.2).max(accept_secs);
    server_rt.block_on(running.shutdown());
    (spans as f64 / accept_secs, spans as f64 / done_secs)
}

fn main() {
    faultline::allocator::tune();
    let target: usize = std::env::var("FAULTLINE_BENCH_SPANS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    // A distinct set of batches; each round re-sends them with new trace ids.
    let batches = Arc::new(make_batches(70_000));
    let spans_per_round: usize = batches.iter().map(|b| b.spans).sum();
    let bytes: usize = batches.iter().map(|b| b.bytes.len()).sum();
    let wire_per_span = bytes as f64 / spans_per_round as f64;
    let reqs: Vec<ExportTraceServiceRequest> = batches
        .iter()
        .map(|b| ExportTraceServiceRequest::decode(&b.bytes[..]).expect("valid batch"))
        .collect();
    let attrs: usize = reqs
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .map(|s| s.attributes.len())
        .sum();
    println!(
        "batches: {} requests, {:.0} spans/request, {:.0} bytes/span on the wire, {:.1} attributes/span",
        batches.len(),
        spans_per_round as f64 / batches.len() as f64,
        wire_per_span,
        attrs as f64 / spans_per_round as f64
    );
    drop(reqs);

    if std::env::var_os("FAULTLINE_BENCH_WAL").is_some() {
        wal_cost(&batches, spans_per_round, target);
        return;
    }
    if std::env::var_os("FAULTLINE_BENCH_TLS").is_some() {
        tls_overhead(&batches, target, spans_per_round);
        return;
    }

    // 1. Memory (first, before other phases leave freed memory in the allocator): hold spans open (long idle timeout) and measure RSS growth per span.
    let mem_dir = tempfile::tempdir().expect("data dir");
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("server runtime");
    let running = server_rt
        .block_on(faultline::server::start(&settings(
            "10m",
            mem_dir.path(),
            DEFAULT_SERVER,
        )))
        .expect("server starts");
    let before = rss_kib("VmRSS:");
    let hold_rounds = (600_000 / spans_per_round).max(1) as u32;
    let (spans, _, _) = send_all(running.otlp_grpc_address, &batches, hold_rounds, 1000, 4);
    // Let the shards drain their queues.
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_kib("VmRSS:");
    let per_span = (after.saturating_sub(before) * 1024) as f64 / spans as f64;
    println!(
        "memory: {} spans buffered, RSS +{} MiB, {:.0} bytes/buffered span (wire: {:.0} bytes/span, ratio {:.2})",
        spans,
        after.saturating_sub(before) / 1024,
        per_span,
        wire_per_span,
        per_span / wire_per_span
    );
    server_rt.block_on(running.shutdown());
    if std::env::var_os("FAULTLINE_BENCH_MEMORY_ONLY").is_some() {
        return;
    }

    // 2. Decode-only ceilings, one thread, median of 5 passes.
    let mut prost_rates = Vec::new();
    let mut convert_rates = Vec::new();
    let interner = Interner::default();
    for _ in 0..5 {
        let t = Instant::now();
        for b in batches.iter() {
            let r = ExportTraceServiceRequest::decode(&b.bytes[..]).expect("decode");
            std::hint::black_box(r);
        }
        prost_rates.push(spans_per_round as f64 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        for b in batches.iter() {
            let r = ExportTraceServiceRequest::decode(&b.bytes[..]).expect("decode");
            std::hint::black_box(decode_traces(r, &interner));
        }
        convert_rates.push(spans_per_round as f64 / t.elapsed().as_secs_f64());
    }
    println!(
        "decode-only ceiling (1 thread): prost {:>9.0} spans/s; prost + faultline records {:>9.0} spans/s",
        median(prost_rates),
        median(convert_rates)
    );

    // 3. The core and the aggregation sinks alone, one thread, per trajectory.
    {
        let mut by_trace: std::collections::BTreeMap<_, Vec<_>> = Default::default();
        for b in batches.iter().take(60) {
            let r = ExportTraceServiceRequest::decode(&b.bytes[..]).expect("decode");
            for span in decode_traces(r, &interner).items {
                by_trace.entry(span.trace_id).or_default().push(span);
            }
        }
        let config = faultline::analyze::AnalyzeConfig::default();
        let t = Instant::now();
        let analyses: Vec<_> = by_trace
            .into_iter()
            .map(|(id, spans)| {
                let traj = faultline::model::Trajectory::build(id, spans, Vec::new(), Vec::new());
                faultline::analyze::analyze(Arc::new(traj), &config)
            })
            .collect();
        let n = analyses.len() as f64;
        let analyze_us = t.elapsed().as_secs_f64() * 1e6 / n;
        let mut registry = prometheus_client::registry::Registry::default();
        let aggregator = faultline::aggregate::Aggregator::new(
            faultline::aggregate::config::AggregateConfig::default_config(),
            &mut registry,
            faultline::aggregate::system_clock(),
        );
        let now = faultline::reasons::system_clock();
        let t = Instant::now();
        for a in &analyses {
            aggregator.record(a, now);
        }
        let aggregate_us = t.elapsed().as_secs_f64() * 1e6 / n;
        let reasons = faultline::reasons::ReasonIndex::new(
            Arc::new(
                faultline::reasons::SharedClusterer::new(
                    faultline::reasons::ReasonConfig::default(),
                    1,
                )
                .expect("clusterer"),
            ),
            Arc::new(std::sync::Mutex::new(faultline::reasons::ReasonStats::new(
                faultline::reasons::ReasonStatsConfig::default(),
            ))),
            faultline::reasons::system_clock,
        );
        let t = Instant::now();
        for a in &analyses {
            reasons.record(a);
        }
        let reasons_us = t.elapsed().as_secs_f64() * 1e6 / n;
        let cohorts =
            faultline::cohorts::CohortIndex::new(faultline::cohorts::CohortConfig::default());
        let shared: Vec<Arc<faultline::model::Analysis>> =
            analyses.iter().cloned().map(Arc::new).collect();
        let t = Instant::now();
        for a in &shared {
            faultline::pipeline::Sink::finalize(&cohorts, &a.clone().into());
        }
        let cohorts_us = t.elapsed().as_secs_f64() * 1e6 / n;
        let spans_per_traj = analyses
            .iter()
            .map(|a| a.trajectory.spans.len())
            .sum::<usize>() as f64
            / n;
        println!(
            "per trajectory ({spans_per_traj:.1} spans), one thread: build + analyze {analyze_us:.1} us, aggregate {aggregate_us:.1} us, reasons {reasons_us:.1} us, cohort window {cohorts_us:.1} us"
        );
    }

    // 4. End to end, median of 3 runs each: every sink; without the aggregation sink
    //    (per-step metrics and breakdowns); without the discovery sinks (reason clusters,
    //    failure cohorts). The in-memory view and the store run in all three.
    //    The variants take turns (all, without aggregation, without discovery, all, ...)
    //    so that drift of the machine's load hits them alike.
    let rounds = (target / spans_per_round).max(1) as u32;
    let variants = [
        ("all sinks", (true, true)),
        ("without aggregation", (false, true)),
        ("without discovery", (true, false)),
    ];
    let mut accepted = vec![Vec::new(); variants.len()];
    let mut analysed = vec![Vec::new(); variants.len()];
    for _ in 0..3 {
        for (i, (_, sinks)) in variants.iter().enumerate() {
            let (a, d) = end_to_end(&batches, rounds, *sinks, DEFAULT_SERVER);
            accepted[i].push(a);
            analysed[i].push(d);
        }
    }
    let mut results = Vec::new();
    for (i, (label, _)) in variants.iter().enumerate() {
        let runs: Vec<String> = analysed[i]
            .iter()
            .map(|d| format!("{:.0}k", d / 1000.0))
            .collect();
        let (a, d) = (median(accepted[i].clone()), median(analysed[i].clone()));
        println!(
            "end to end, gRPC, {} spans/run, {label:<20}: accepted {a:>9.0} spans/s, assembled + analysed {d:>9.0} spans/s (median of 3: {})",
            rounds as usize * spans_per_round,
            runs.join(", "),
        );
        results.push(d);
    }
    // Cost as CPU time per span: 1/throughput, relative to the run without that sink.
    println!(
        "cost added to end-to-end ingest: aggregation {:+.1}%, discovery (reasons + cohorts) {:+.1}%",
        100.0 * (results[1] / results[0] - 1.0),
        100.0 * (results[2] / results[0] - 1.0),
    );
    println!(
        "peak RSS of the whole benchmark process: {} MiB",
        rss_kib("VmHWM:") / 1024
    );
}

/// Interleaved runs per variant: `FAULTLINE_BENCH_RUNS` (or `FAULTLINE_BENCH_WAL_RUNS`),
/// default 5.
fn bench_runs() -> usize {
    ["FAULTLINE_BENCH_RUNS", "FAULTLINE_BENCH_WAL_RUNS"]
        .iter()
        .find_map(|k| std::env::var(k).ok()?.parse().ok())
        .unwrap_or(5)
        .max(1)
}

/// The write-ahead log's cost: every sink, the log off / batch fsync / interval fsync.
fn wal_cost(batches: &Arc<Vec<Batch>>, spans_per_round: usize, target: usize) {
    use faultline::wal::FsyncPolicy;
    wal_codec_cost(batches);
    let wal = |policy| Variant {
        wal: Some(policy),
        ..Variant::default()
    };
    compare(
        batches,
        target,
        spans_per_round,
        &[
            ("wal off", Variant::default()),
            ("wal fsync=batch", wal(FsyncPolicy::Batch)),
            (
                "wal fsync=interval 1s",
                wal(FsyncPolicy::Interval(Duration::from_secs(1))),
            ),
        ],
    );
}

/// End to end over OTLP/gRPC, every sink, plain text and TLS.
fn tls_overhead(batches: &Arc<Vec<Batch>>, target: usize, spans_per_round: usize) {
    let tls = BenchTls::generate();
    let with_tls = Variant {
        tls: Some(&tls),
        ..Variant::default()
    };
    compare(
        batches,
        target,
        spans_per_round,
        &[("plain text", Variant::default()), ("TLS", with_tls)],
    );
}

/// End to end over OTLP/gRPC with every sink, the variants taking turns so that drift
/// of the machine's load hits them alike; medians, and each against the first.
fn compare(
    batches: &Arc<Vec<Batch>>,
    target: usize,
    spans_per_round: usize,
    variants: &[(&str, Variant<'_>)],
) {
    let runs = bench_runs();
    let streams = concurrency();
    let rounds = (target / spans_per_round).max(1) as u32;
    let mut accepted = vec![Vec::new(); variants.len()];
    let mut analysed = vec![Vec::new(); variants.len()];
    println!(
        "{streams} requests in flight; load average before: {}",
        load_average()
    );
    for _ in 0..runs {
        for (i, (_, variant)) in variants.iter().enumerate() {
            let (a, d) = end_to_end(batches, rounds, (true, true), *variant);
            accepted[i].push(a);
            analysed[i].push(d);
        }
    }
    let mut medians = Vec::new();
    for (i, (label, _)) in variants.iter().enumerate() {
        let thousands = |v: &[f64]| -> String {
            v.iter()
                .map(|x| format!("{:.0}k", x / 1000.0))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (a, d) = (median(accepted[i].clone()), median(analysed[i].clone()));
        println!(
            "end to end, gRPC, {} spans/run, {streams} in flight, {label:<22}: accepted {a:>9.0} spans/s, assembled + analysed {d:>9.0} spans/s (median of {runs}, interleaved; accepted: {}; analysed: {})",
            rounds as usize * spans_per_round,
            thousands(&accepted[i]),
            thousands(&analysed[i]),
        );
        medians.push((a, d));
    }
    let (reference, _) = variants[0];
    for (i, (label, _)) in variants.iter().enumerate().skip(1) {
        // Also the ratio within each turn (the runs next to each other in time), whose
        // median is less exposed to the machine's load drifting between turns.
        let per_turn = |v: &[Vec<f64>]| -> (f64, String) {
            let r: Vec<f64> = v[i].iter().zip(&v[0]).map(|(x, y)| x / y).collect();
            let each = r.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>();
            (median(r), each.join(", "))
        };
        let (turn_a, each_a) = per_turn(&accepted);
        let (turn_d, each_d) = per_turn(&analysed);
        println!(
            "{label} / {reference}, {streams} in flight: accepted {:.3} ({:+.1}%), assembled + analysed {:.3} ({:+.1}%); median of per-turn ratios: accepted {turn_a:.3} ({each_a}), assembled + analysed {turn_d:.3} ({each_d})",
            medians[i].0 / medians[0].0,
            100.0 * (medians[i].0 / medians[0].0 - 1.0),
            medians[i].1 / medians[0].1,
            100.0 * (medians[i].1 / medians[0].1 - 1.0),
        );
    }
    println!("load average after: {}", load_average());
}

/// The machine's load average (1, 5, 15 minutes), for the reader of the figures.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Requests in flight in the end-to-end runs: `FAULTLINE_BENCH_CONCURRENCY`, default 4
/// (an OpenTelemetry Collector's otlp exporter sends with `sending_queue.num_consumers`
/// = 10 by default).
fn concurrency() -> usize {
    std::env::var("FAULTLINE_BENCH_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4)
        .max(1)
}

/// What compressing a request body costs at a few zstd levels, one thread, the same
/// batches: milliseconds per request, MB/s and the size ratio, median of 3 passes.
fn wal_codec_cost(batches: &Arc<Vec<Batch>>) {
    let bytes: usize = batches.iter().map(|b| b.bytes.len()).sum();
    for level in [1, -1, -3, -5] {
        let mut secs = Vec::new();
        let mut compressed = 0;
        for _ in 0..3 {
            compressed = 0;
            let t = Instant::now();
            for b in batches.iter() {
                compressed += zstd::bulk::compress(&b.bytes, level)
                    .expect("compress")
                    .len();
            }
            secs.push(t.elapsed().as_secs_f64());
        }
        let s = median(secs);
        println!(
            "wal codec: zstd level {level:>2}: {:.3} ms/request ({:.0} KB), {:.0} MB/s, compressed to {:.1}% (median of 3, one thread)",
            s * 1e3 / batches.len() as f64,
            bytes as f64 / batches.len() as f64 / 1e3,
            bytes as f64 / s / 1e6,
            100.0 * compressed as f64 / bytes as f64,
        );
    }
}
