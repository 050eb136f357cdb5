//! Families read from `/metrics` into one OTLP `ExportMetricsServiceRequest`.
//!
//! Names and label sets are kept as they are on `/metrics` (`faultline_trajectories_total`
//! with `outcome` and the cohort labels). Counters become monotonic cumulative sums,
//! gauges gauges, histograms explicit-bucket cumulative histograms (the cumulative `le`
//! buckets turned into per-bucket counts), `info` families gauges of 1.
//!
//! Start times: a cumulative series starts at the push's start; a series seen for the
//! first time, or whose value went down (removed from `/metrics` and created again),
//! starts at the previous snapshot, so a consumer sees a reset rather than a decrease.

use crate::conventions;
use std::collections::HashMap;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::exposition::{Family, Kind, Number, Sample};

type Labels = Vec<(String, String)>;

/// Start times of the cumulative series, carried from one snapshot to the next.
pub(crate) struct StartTimes {
    /// Start of every series in the first snapshot.
    origin: u64,
    /// Time of the previous snapshot, if any.
    previous: Option<u64>,
    /// (metric name, labels) → (start time, last value).
    series: HashMap<(String, Labels), (u64, f64)>,
}

impl StartTimes {
    pub(crate) fn new(origin_unix_nano: u64) -> StartTimes {
        StartTimes {
            origin: origin_unix_nano,
            previous: None,
            series: HashMap::new(),
        }
    }
}

/// The resource and scope of every push.
pub(crate) struct Identity {
    pub resource: Vec<KeyValue>,
    pub scope_name: String,
    pub scope_version: String,
}

impl Identity {
    /// `service.name=faultline`, the version, and a random `service.instance.id` (two
    /// replicas pushing to one collector must not write the same series).
    pub(crate) fn faultline(instance_id: String) -> Identity {
        let version = env!("CARGO_PKG_VERSION");
        Identity {
            resource: vec![
                kv(conventions::SERVICE_NAME, "faultline"),
                kv(conventions::SERVICE_VERSION, version),
                kv(conventions::SERVICE_INSTANCE_ID, &instance_id),
            ],
            scope_name: "faultline".into(),
            scope_version: version.into(),
        }
    }
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

fn attributes(labels: &[(String, String)]) -> Vec<KeyValue> {
    labels.iter().map(|(k, v)| kv(k, v)).collect()
}

fn value(n: Number) -> number_data_point::Value {
    match n {
        Number::Int(i) => number_data_point::Value::AsInt(i),
        Number::Float(f) => number_data_point::Value::AsDouble(f),
    }
}

/// The OTLP unit for a Prometheus unit suffix.
fn unit(u: &Option<String>) -> String {
    match u.as_deref() {
        None => String::new(),
        Some("seconds") => "s".into(),
        Some("bytes") => "By".into(),
        Some("ratio") => "1".into(),
        Some(other) => other.into(),
    }
}

/// Builds the request for one snapshot taken at `now` (unix ns).
pub(crate) fn request(
    families: &[Family],
    now: u64,
    starts: &mut StartTimes,
    identity: &Identity,
) -> ExportMetricsServiceRequest {
    let default_start = starts.previous.unwrap_or(starts.origin);
    let mut seen = HashMap::with_capacity(starts.series.len());
    let mut start_of = |name: &str, labels: &Labels, v: f64| -> u64 {
        let key = (name.to_owned(), labels.clone());
        let start = match starts.series.get(&key) {
            Some(&(start, last)) if v >= last => start,
            _ => default_start,
        };
        seen.insert(key, (start, v));
        start
    };
    let mut metrics = Vec::with_capacity(families.len());
    for f in families {
        match f.kind {
            Kind::Counter => {
                let mut by_name: Vec<(&str, Vec<NumberDataPoint>)> = Vec::new();
                for s in &f.samples {
                    // `_created` samples carry creation times, not values.
                    if !s.name.ends_with("_total") {
                        continue;
                    }
                    let point = NumberDataPoint {
                        attributes: attributes(&s.labels),
                        start_time_unix_nano: start_of(&s.name, &s.labels, s.value.as_f64()),
                        time_unix_nano: now,
                        value: Some(value(s.value)),
                        ..Default::default()
                    };
                    push_point(&mut by_name, &s.name, point);
                }
                for (name, data_points) in by_name {
                    metrics.push(Metric {
                        name: name.to_owned(),
                        description: f.help.clone(),
                        unit: unit(&f.unit),
                        data: Some(metric::Data::Sum(Sum {
                            data_points,
                            aggregation_temporality: AggregationTemporality::Cumulative as i32,
                            is_monotonic: true,
                        })),
                        ..Default::default()
                    });
                }
            }
            Kind::Gauge | Kind::Info | Kind::Other => {
                let mut by_name: Vec<(&str, Vec<NumberDataPoint>)> = Vec::new();
                for s in &f.samples {
                    let point = NumberDataPoint {
                        attributes: attributes(&s.labels),
                        time_unix_nano: now,
                        value: Some(value(s.value)),
                        ..Default::default()
                    };
                    push_point(&mut by_name, &s.name, point);
                }
                for (name, data_points) in by_name {
                    metrics.push(Metric {
                        name: name.to_owned(),
                        description: f.help.clone(),
                        unit: unit(&f.unit),
                        data: Some(metric::Data::Gauge(Gauge { data_points })),
                        ..Default::default()
                    });
                }
            }
            Kind::Histogram => {
                let data_points = histogram_points(f)
                    .into_iter()
                    .map(|h| HistogramDataPoint {
                        attributes: attributes(&h.labels),
                        start_time_unix_nano: start_of(&f.name, &h.labels, h.count as f64),
                        time_unix_nano: now,
                        count: h.count,
                        sum: Some(h.sum),
                        bucket_counts: h.bucket_counts,
                        explicit_bounds: h.bounds,
                        ..Default::default()
                    })
                    .collect::<Vec<_>>();
                if data_points.is_empty() {
                    continue;
                }
                metrics.push(Metric {
                    name: f.name.clone(),
                    description: f.help.clone(),
                    unit: unit(&f.unit),
                    data: Some(metric::Data::Histogram(Histogram {
                        data_points,
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    })),
                    ..Default::default()
                });
            }
        }
    }
    starts.series = seen;
    starts.previous = Some(now);
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: identity.resource.clone(),
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: identity.scope_name.clone(),
                    version: identity.scope_version.clone(),
                    ..Default::default()
                }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn push_point<'a>(
    by_name: &mut Vec<(&'a str, Vec<NumberDataPoint>)>,
    name: &'a str,
    point: NumberDataPoint,
) {
    match by_name.iter_mut().find(|(n, _)| *n == name) {
        Some((_, points)) => points.push(point),
        None => by_name.push((name, vec![point])),
    }
}

struct HistogramPoint {
    labels: Labels,
    count: u64,
    sum: f64,
    bounds: Vec<f64>,
    bucket_counts: Vec<u64>,
}

/// Groups `_bucket`, `_sum` and `_count` samples by label set. A series whose buckets do
/// not add up (not ascending, no `+Inf`) is left out rather than sent wrong.
fn histogram_points(f: &Family) -> Vec<HistogramPoint> {
    struct Parts {
        labels: Labels,
        count: Option<u64>,
        sum: Option<f64>,
        /// (le, cumulative count)
        buckets: Vec<(f64, u64)>,
    }
    let mut parts: Vec<Parts> = Vec::new();
    let suffix_of = |s: &Sample| s.name.strip_prefix(f.name.as_str()).map(str::to_owned);
    for s in &f.samples {
        let Some(suffix) = suffix_of(s) else { continue };
        let mut labels = s.labels.clone();
        let le = labels
            .iter()
            .position(|(k, _)| k == "le")
            .map(|i| labels.remove(i).1);
        let index = match parts.iter().position(|p| p.labels == labels) {
            Some(i) => i,
            None => {
                parts.push(Parts {
                    labels,
                    count: None,
                    sum: None,
                    buckets: Vec::new(),
                });
                parts.len() - 1
            }
        };
        let p = &mut parts[index];
        match (suffix.as_str(), le, s.value) {
            ("_count", None, Number::Int(c)) if c >= 0 => p.count = Some(c as u64),
            ("_sum", None, v) => p.sum = Some(v.as_f64()),
            ("_bucket", Some(le), Number::Int(c)) if c >= 0 => {
                if let Some(le) = super::exposition::number(&le) {
                    p.buckets.push((le.as_f64(), c as u64));
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::with_capacity(parts.len());
    'series: for mut p in parts {
        let (Some(count), Some(sum)) = (p.count, p.sum) else {
            continue;
        };
        p.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let Some(&(last_le, last)) = p.buckets.last() else {
            continue;
        };
        if last_le != f64::INFINITY || last != count {
            continue;
        }
        let mut bucket_counts = Vec::with_capacity(p.buckets.len());
        let mut bounds = Vec::with_capacity(p.buckets.len() - 1);
        let mut below = 0;
        for &(le, cumulative) in &p.buckets {
            if cumulative < below {
                continue 'series;
            }
            bucket_counts.push(cumulative - below);
            below = cumulative;
            if le != f64::INFINITY {
                bounds.push(le);
            }
        }
        out.push(HistogramPoint {
            labels: p.labels,
            count,
            sum,
            bounds,
            bucket_counts,
        });
    }
    out
}
