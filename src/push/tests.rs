//! Unit tests of the push: its config, and the translation of `/metrics` into OTLP.

use std::collections::BTreeMap;
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Metric,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::config::{Headers, PushConfig, RawPushConfig};
use super::*;

fn resolve(raw: RawPushConfig) -> Result<Option<PushConfig>, String> {
    PushConfig::resolve(Some(&raw)).map_err(|e| e.to_string())
}

fn endpoint(e: &str) -> RawPushConfig {
    RawPushConfig {
        endpoint: Some(e.into()),
        ..Default::default()
    }
}

#[test]
fn config_defaults_and_no_endpoint_means_no_push() {
    assert_eq!(resolve(RawPushConfig::default()), Ok(None));
    assert_eq!(PushConfig::resolve(None), Ok(None));
    let c = resolve(endpoint("http://collector:4317")).unwrap().unwrap();
    assert_eq!(c.endpoint, "http://collector:4317");
    assert_eq!(c.protocol, Protocol::Grpc);
    assert_eq!(c.interval, Duration::from_secs(60));
    assert_eq!(c.timeout, Duration::from_secs(10));
    assert!(c.headers.is_empty());
    // Other keys are checked without an endpoint too.
    let typo = RawPushConfig {
        interval: Some("often".into()),
        ..Default::default()
    };
    let e = resolve(typo).unwrap_err();
    assert!(
        e.contains("metrics_push.interval") && e.contains("often"),
        "{e}"
    );
}

#[test]
fn config_endpoint_per_protocol() {
    let http = |e: &str| {
        resolve(RawPushConfig {
            protocol: Some("http/protobuf".into()),
            ..endpoint(e)
        })
        .map(|c| c.unwrap().endpoint)
    };
    assert_eq!(http("http://c:4318"), Ok("http://c:4318/v1/metrics".into()));
    assert_eq!(
        http("http://c:4318/"),
        Ok("http://c:4318/v1/metrics".into())
    );
    assert_eq!(
        http("http://c:4318/otlp/v1/metrics"),
        Ok("http://c:4318/otlp/v1/metrics".into())
    );
    let grpc = |e: &str| resolve(endpoint(e)).map(|c| c.unwrap().endpoint);
    assert_eq!(grpc("http://c:4317/"), Ok("http://c:4317".into()));
    assert_eq!(grpc("https://c:4317"), Ok("https://c:4317".into()));
    for (bad, needle) in [
        ("ftp://c:4317", "not a URL"),
        ("c:4317", "not a URL"),
        ("http://c:4317/v1/metrics", "no path"),
        ("not a url", "not a URL"),
    ] {
        let e = grpc(bad).unwrap_err();
        assert!(
            e.contains("metrics_push.endpoint") && e.contains(needle),
            "{bad}: {e}"
        );
    }
    let e = resolve(RawPushConfig {
        protocol: Some("http/json".into()),
        ..endpoint("http://c:4318")
    })
    .unwrap_err();
    assert!(
        e.contains("metrics_push.protocol") && e.contains("http/json"),
        "{e}"
    );
}

#[test]
fn config_headers_from_a_table_or_a_list() {
    let file = RawPushConfig {
        interval: Some("30s".into()),
        headers: Some(BTreeMap::from([("X-Tenant".into(), "a".into())]).into()),
        ..endpoint("http://file:4317")
    };
    // The command line's form: name=value pairs, `=` allowed in a value.
    let list = RawPushConfig {
        headers: Some(Headers::List("x-a=1, authorization=Bearer t=k".into())),
        ..file.clone()
    };
    let c = resolve(list).unwrap().unwrap();
    assert_eq!(c.interval, Duration::from_secs(30));
    assert_eq!(
        c.headers,
        [
            ("x-a".to_owned(), "1".to_owned()),
            ("authorization".to_owned(), "Bearer t=k".to_owned())
        ]
    );
    // The file's headers, names lower-cased; values never in Debug output.
    let c = resolve(file.clone()).unwrap().unwrap();
    assert_eq!(c.headers, [("x-tenant".to_owned(), "a".to_owned())]);
    assert!(!format!("{c:?}").contains("\"a\""));
    assert!(!format!("{file:?}").contains("\"a\""));

    let e = resolve(RawPushConfig {
        interval: Some("10ms".into()),
        ..file.clone()
    })
    .unwrap_err();
    assert!(
        e.contains("metrics_push.interval") && e.contains("at least"),
        "{e}"
    );
    for (list, needle) in [
        ("novalue", "name=value"),
        ("bad name=1", "header name"),
        ("x=caf\u{e9}", "printable ASCII"),
        ("content-type=text/plain", "set by faultline"),
        ("a=1,A=2", "twice"),
    ] {
        let e = resolve(RawPushConfig {
            headers: Some(Headers::List(list.into())),
            ..file.clone()
        })
        .unwrap_err();
        assert!(
            e.contains("metrics_push.headers") && e.contains(needle),
            "{list}: {e}"
        );
    }
}

type LabelPairs = Vec<(String, String)>;

/// A registry shaped like faultline's: labelled counters, a labelled histogram, gauges.
struct Fixture {
    registry: Registry,
    counter: Family<LabelPairs, Counter>,
    hist: Family<LabelPairs, Histogram, fn() -> Histogram>,
    gauge: Gauge,
}

fn two_buckets() -> Histogram {
    Histogram::new([0.01, 0.1])
}

fn fixture() -> Fixture {
    let mut registry = Registry::default();
    let counter = Family::<LabelPairs, Counter>::default();
    registry.register("x_root_causes", "Root causes", counter.clone());
    let hist = Family::new_with_constructor(two_buckets as fn() -> Histogram);
    registry.register("x_duration_seconds", "Durations", hist.clone());
    let gauge = Gauge::default();
    registry.register("x_buffered", "Buffered", gauge.clone());
    Fixture {
        registry,
        counter,
        hist,
        gauge,
    }
}

fn labels(step: &str) -> LabelPairs {
    vec![
        ("step".into(), step.into()),
        ("model".into(), "gpt \"4\"".into()),
    ]
}

fn snapshot(f: &Fixture, now: u64, starts: &mut otlp::StartTimes) -> Vec<Metric> {
    let (families, skipped) = exposition::parse(&crate::metrics::render(&f.registry));
    assert_eq!(skipped, 0);
    let identity = otlp::Identity::faultline("test-instance".into());
    let mut req = otlp::request(&families, now, starts, &identity);
    assert_eq!(req.resource_metrics.len(), 1);
    let rm = req.resource_metrics.remove(0);
    let resource: Vec<(String, String)> = rm
        .resource
        .expect("resource")
        .attributes
        .into_iter()
        .map(|kv| (kv.key, string(kv.value)))
        .collect();
    assert!(resource.contains(&("service.name".into(), "faultline".into())));
    assert!(resource.contains(&("service.instance.id".into(), "test-instance".into())));
    let mut sm = rm.scope_metrics;
    assert_eq!(sm.len(), 1);
    sm.remove(0).metrics
}

fn string(v: Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.and_then(|v| v.value) {
        Some(any_value::Value::StringValue(s)) => s,
        other => panic!("not a string: {other:?}"),
    }
}

fn find<'a>(metrics: &'a [Metric], name: &str) -> &'a metric::Data {
    metrics
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("no metric {name}"))
        .data
        .as_ref()
        .expect("data")
}

#[test]
fn counters_gauges_and_histograms_translate_with_their_labels_and_values() {
    let f = fixture();
    f.counter.get_or_create(&labels("retriever")).inc_by(5);
    f.counter.get_or_create(&labels("tool")).inc();
    f.gauge.set(42);
    let h = f.hist.get_or_create(&vec![("step".into(), "tool".into())]);
    for v in [0.005, 0.05, 0.07, 3.0] {
        h.observe(v);
    }
    let mut starts = otlp::StartTimes::new(1_000);
    let metrics = snapshot(&f, 2_000, &mut starts);
    let names: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        ["x_root_causes_total", "x_duration_seconds", "x_buffered"]
    );
    assert_eq!(metrics[0].description, "Root causes.");

    let metric::Data::Sum(sum) = find(&metrics, "x_root_causes_total") else {
        panic!("a sum")
    };
    assert!(sum.is_monotonic);
    assert_eq!(
        sum.aggregation_temporality,
        AggregationTemporality::Cumulative as i32
    );
    let mut points: Vec<(LabelPairs, i64, u64, u64)> = sum
        .data_points
        .iter()
        .map(|p| {
            let attrs = p
                .attributes
                .iter()
                .map(|kv| (kv.key.clone(), string(kv.value.clone())))
                .collect();
            let Some(number_data_point::Value::AsInt(v)) = p.value else {
                panic!("an integer")
            };
            (attrs, v, p.start_time_unix_nano, p.time_unix_nano)
        })
        .collect();
    points.sort();
    assert_eq!(
        points,
        [
            (labels("retriever"), 5, 1_000, 2_000),
            (labels("tool"), 1, 1_000, 2_000)
        ]
    );

    let metric::Data::Histogram(hist) = find(&metrics, "x_duration_seconds") else {
        panic!("a histogram")
    };
    assert_eq!(
        hist.aggregation_temporality,
        AggregationTemporality::Cumulative as i32
    );
    let p = &hist.data_points[0];
    assert_eq!(p.count, 4);
    assert_eq!(p.sum, Some(0.005 + 0.05 + 0.07 + 3.0));
    assert_eq!(p.explicit_bounds, [0.01, 0.1]);
    assert_eq!(p.bucket_counts, [1, 2, 1]);
    assert_eq!(p.start_time_unix_nano, 1_000);

    let metric::Data::Gauge(g) = find(&metrics, "x_buffered") else {
        panic!("a gauge")
    };
    assert_eq!(
        g.data_points[0].value,
        Some(number_data_point::Value::AsInt(42))
    );
    assert_eq!(g.data_points[0].start_time_unix_nano, 0);
}

fn start_of(metrics: &[Metric], step: &str) -> u64 {
    let metric::Data::Sum(sum) = find(metrics, "x_root_causes_total") else {
        panic!("a sum")
    };
    sum.data_points
        .iter()
        .find(|p| string(p.attributes[0].value.clone()) == step)
        .unwrap_or_else(|| panic!("no point for {step}"))
        .start_time_unix_nano
}

#[test]
fn a_new_or_recreated_series_starts_at_the_previous_snapshot() {
    let f = fixture();
    f.counter.get_or_create(&labels("retriever")).inc_by(5);
    let mut starts = otlp::StartTimes::new(1_000);
    let m = snapshot(&f, 2_000, &mut starts);
    assert_eq!(start_of(&m, "retriever"), 1_000);

    // Unchanged and growing series keep their start; a new one starts at the last push.
    f.counter.get_or_create(&labels("retriever")).inc();
    f.counter.get_or_create(&labels("tool")).inc();
    let m = snapshot(&f, 3_000, &mut starts);
    assert_eq!(start_of(&m, "retriever"), 1_000);
    assert_eq!(start_of(&m, "tool"), 2_000);

    // Removed (a value left the top-K) and created again at a lower value: a reset.
    f.counter.remove(&labels("retriever"));
    f.counter.get_or_create(&labels("retriever")).inc();
    let m = snapshot(&f, 4_000, &mut starts);
    assert_eq!(start_of(&m, "retriever"), 3_000);
    assert_eq!(start_of(&m, "tool"), 2_000);

    // Removed for one snapshot and back: a new series too, even at the same value.
    f.counter.remove(&labels("tool"));
    let m = snapshot(&f, 5_000, &mut starts);
    assert_eq!(start_of(&m, "retriever"), 3_000);
    f.counter.get_or_create(&labels("tool")).inc();
    let m = snapshot(&f, 6_000, &mut starts);
    assert_eq!(start_of(&m, "tool"), 5_000);
}

#[test]
fn an_inconsistent_histogram_is_left_out() {
    let text = "# HELP h x\n# TYPE h histogram\n\
                h_sum{s=\"a\"} 1.5\nh_count{s=\"a\"} 3\n\
                h_bucket{s=\"a\",le=\"1.0\"} 2\nh_bucket{s=\"a\",le=\"+Inf\"} 3\n\
                h_sum{s=\"b\"} 1.5\nh_count{s=\"b\"} 3\n\
                h_bucket{s=\"b\",le=\"1.0\"} 4\nh_bucket{s=\"b\",le=\"+Inf\"} 3\n\
                h_sum{s=\"c\"} 1.5\nh_count{s=\"c\"} 3\nh_bucket{s=\"c\",le=\"1.0\"} 2\n\
                # EOF\n";
    let (families, _) = exposition::parse(text);
    let req = otlp::request(
        &families,
        2,
        &mut otlp::StartTimes::new(1),
        &otlp::Identity::faultline("i".into()),
    );
    let metrics = &req.resource_metrics[0].scope_metrics[0].metrics;
    let metric::Data::Histogram(h) = find(metrics, "h") else {
        panic!("a histogram")
    };
    // `b` goes down, `c` has no +Inf bucket.
    assert_eq!(h.data_points.len(), 1);
    assert_eq!(h.data_points[0].bucket_counts, [2, 1]);
    assert_eq!(h.data_points[0].explicit_bounds, [1.0]);
}

#[test]
fn every_faultline_family_is_translated() {
    // The real registry of a server: self-metrics and aggregation metrics.
    let mut registry = Registry::default();
    let m = crate::metrics::SelfMetrics::register(&mut registry);
    m.init_series(&["grpc", "http"], &["too_large"]);
    m.received("grpc", 3);
    let _agg = crate::aggregate::Aggregator::new(
        crate::aggregate::config::AggregateConfig::default_config(),
        &mut registry,
        crate::aggregate::system_clock(),
    );
    let _push = PushMetrics::register(&mut registry);
    let text = crate::metrics::render(&registry);
    let (families, skipped) = exposition::parse(&text);
    assert_eq!(skipped, 0, "{text}");
    let req = otlp::request(
        &families,
        2,
        &mut otlp::StartTimes::new(1),
        &otlp::Identity::faultline("i".into()),
    );
    let metrics = &req.resource_metrics[0].scope_metrics[0].metrics;
    let pushed: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
    // Every sample name family of the text (counters with `_total`) is pushed.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap();
        let name = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|n| pushed.contains(n)))
            .unwrap_or(name);
        assert!(pushed.contains(&name), "{name} is not pushed");
    }
    for name in [
        "faultline_spans_received_total",
        "faultline_buffered_spans",
        "faultline_build_info",
        "faultline_metrics_push_failures_total",
    ] {
        assert!(pushed.contains(&name), "{name} missing from {pushed:?}");
    }
    let metric::Data::Sum(received) = find(metrics, "faultline_spans_received_total") else {
        panic!("a sum")
    };
    assert!(received.data_points.iter().any(|p| {
        p.value == Some(number_data_point::Value::AsInt(3))
            && string(p.attributes[0].value.clone()) == "grpc"
    }));
}
