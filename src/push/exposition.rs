//! Reads the text that `/metrics` serves back into families and samples.
//!
//! prometheus-client offers no way to walk a registry's values other than its encoders,
//! and the structured (protobuf) encoders need `protoc` at build time. The push
//! therefore renders the registry exactly as a scrape does and reads the result: what is
//! pushed is what `/metrics` shows at that moment, for every family, by construction.
//!
//! The reader covers what prometheus-client's OpenMetrics text encoder writes: `# HELP`,
//! `# TYPE` and `# UNIT` lines, samples `name{label="value",...} value` with `\\`, `\"`
//! and `\n` escaped in label values, optional exemplars after ` # `, and `# EOF`.
//! Numbers are written by `itoa`/`dtoa` (shortest round-trip form), so they read back
//! to the same values. A line it cannot read is skipped and counted.

/// The metric type of a family, from its `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Histogram,
    Info,
    /// `unknown` or any other type: its samples are sent as gauges.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    pub(crate) fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Float(f) => f,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    /// The full sample name, such as `faultline_trajectories_total`.
    pub name: String,
    /// In the order written.
    pub labels: Vec<(String, String)>,
    pub value: Number,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Family {
    /// The name on the `# TYPE` line (without `_total` for counters).
    pub name: String,
    pub help: String,
    pub unit: Option<String>,
    pub kind: Kind,
    pub samples: Vec<Sample>,
}

/// The families of an exposition, in order, and the number of lines not understood.
pub(crate) fn parse(text: &str) -> (Vec<Family>, usize) {
    let mut families: Vec<Family> = Vec::new();
    let mut skipped = 0;
    for line in text.lines() {
        if line.is_empty() || line == "# EOF" {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (Some(keyword), Some(name)) = (parts.next(), parts.next()) else {
                skipped += 1;
                continue;
            };
            let arg = parts.next().unwrap_or("");
            let family = match families.last_mut() {
                Some(f) if f.name == name => f,
                _ => {
                    families.push(Family {
                        name: name.to_owned(),
                        help: String::new(),
                        unit: None,
                        kind: Kind::Other,
                        samples: Vec::new(),
                    });
                    families.last_mut().expect("just pushed")
                }
            };
            match keyword {
                "HELP" => family.help = arg.to_owned(),
                "TYPE" => {
                    family.kind = match arg {
                        "counter" => Kind::Counter,
                        "gauge" => Kind::Gauge,
                        "histogram" => Kind::Histogram,
                        "info" => Kind::Info,
                        _ => Kind::Other,
                    }
                }
                "UNIT" => family.unit = Some(arg.to_owned()).filter(|u| !u.is_empty()),
                _ => skipped += 1,
            }
            continue;
        }
        match (sample(line), families.last_mut()) {
            (Some(s), Some(f)) if s.name.starts_with(f.name.as_str()) => f.samples.push(s),
            _ => skipped += 1,
        }
    }
    (families, skipped)
}

/// One sample line: `name{labels} value`, then optionally a timestamp or ` # exemplar`
/// (both ignored).
fn sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = after;
        loop {
            rest = rest.trim_start_matches(',');
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = rest.find("=\"")?;
            let key = &rest[..eq];
            if key.is_empty() || key.contains([',', '}', ' ']) {
                return None;
            }
            let (value, after) = label_value(&rest[eq + 2..])?;
            labels.push((key.to_owned(), value));
            rest = after;
        }
    }
    let value = rest.trim_start().split(' ').next()?;
    Some(Sample {
        name: name.to_owned(),
        labels,
        value: number(value)?,
    })
}

/// A label value up to its closing quote, unescaped; and the text after the quote.
fn label_value(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

pub(crate) fn number(s: &str) -> Option<Number> {
    if let Ok(i) = s.parse::<i64>() {
        return Some(Number::Int(i));
    }
    s.parse::<f64>().ok().map(Number::Float)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_prometheus_client_writes() {
        use prometheus_client::metrics::counter::Counter;
        use prometheus_client::metrics::family::Family as PFamily;
        use prometheus_client::metrics::gauge::Gauge;
        use prometheus_client::metrics::histogram::Histogram;
        use prometheus_client::registry::{Registry, Unit};

        let mut registry = Registry::default();
        let counter = PFamily::<Vec<(String, String)>, Counter>::default();
        registry.register("t_requests", "Requests", counter.clone());
        let nasty = "a \"quoted\" back\\slash,\nnew line}=".to_owned();
        counter
            .get_or_create(&vec![
                ("model".into(), nasty.clone()),
                ("step".into(), "planner".into()),
            ])
            .inc_by(7);
        counter
            .get_or_create(&vec![
                ("model".into(), String::new()),
                ("step".into(), "x".into()),
            ])
            .inc();
        let gauge = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        gauge.set(-2.5);
        registry.register("t_level", "A level", gauge);
        let int_gauge = Gauge::<i64>::default();
        int_gauge.set(-3);
        registry.register_with_unit("t_queue", "Queued", Unit::Bytes, int_gauge);
        let hist = PFamily::<Vec<(String, String)>, Histogram>::new_with_constructor(|| {
            Histogram::new([0.1, 1.0])
        });
        registry.register("t_duration_seconds", "Durations", hist.clone());
        let h = hist.get_or_create(&vec![("step".into(), "tool".into())]);
        for v in [0.05, 0.3, 0.3, 7.0] {
            h.observe(v);
        }

        let text = crate::metrics::render(&registry);
        let (families, skipped) = parse(&text);
        assert_eq!(skipped, 0, "{text}");
        let names: Vec<&str> = families.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "t_requests",
                "t_level",
                "t_queue_bytes",
                "t_duration_seconds"
            ]
        );

        let requests = &families[0];
        assert_eq!(requests.kind, Kind::Counter);
        assert_eq!(requests.help, "Requests.");
        let big = requests
            .samples
            .iter()
            .find(|s| s.value == Number::Int(7))
            .expect("the counter at 7");
        assert_eq!(big.name, "t_requests_total");
        assert_eq!(
            big.labels,
            [
                ("model".to_owned(), nasty),
                ("step".to_owned(), "planner".to_owned())
            ]
        );
        assert!(requests
            .samples
            .iter()
            .any(|s| s.labels[0].1.is_empty() && s.value == Number::Int(1)));

        assert_eq!(families[1].kind, Kind::Gauge);
        assert_eq!(families[1].samples[0].value, Number::Float(-2.5));
        assert_eq!(families[2].unit.as_deref(), Some("bytes"));
        assert_eq!(families[2].samples[0].value, Number::Int(-3));

        let d = &families[3];
        assert_eq!(d.kind, Kind::Histogram);
        let get = |name: &str, le: Option<&str>| {
            d.samples
                .iter()
                .find(|s| {
                    s.name == name
                        && s.labels
                            .iter()
                            .find(|(k, _)| k == "le")
                            .map(|(_, v)| v.as_str())
                            == le
                })
                .map(|s| s.value)
        };
        assert_eq!(get("t_duration_seconds_count", None), Some(Number::Int(4)));
        assert_eq!(
            get("t_duration_seconds_sum", None).map(Number::as_f64),
            Some(0.05 + 0.3 + 0.3 + 7.0)
        );
        assert_eq!(
            get("t_duration_seconds_bucket", Some("0.1")),
            Some(Number::Int(1))
        );
        assert_eq!(
            get("t_duration_seconds_bucket", Some("1.0")),
            Some(Number::Int(3))
        );
        assert_eq!(
            get("t_duration_seconds_bucket", Some("+Inf")),
            Some(Number::Int(4))
        );
    }

    #[test]
    fn skips_what_it_cannot_read_and_ignores_exemplars_and_timestamps() {
        let text = "# HELP a x\n# TYPE a counter\n\
                    a_total{k=\"v\"} 3 # {trace_id=\"1\"} 1.0\n\
                    a_total 4 1700000000\n\
                    garbage{k=\"v\" 1\n\
                    # EOF\n";
        let (families, skipped) = parse(text);
        assert_eq!(skipped, 1);
        assert_eq!(families.len(), 1);
        assert_eq!(families[0].samples.len(), 2);
        assert_eq!(families[0].samples[0].value, Number::Int(3));
        assert_eq!(families[0].samples[1].value, Number::Int(4));
        assert!(families[0].samples[1].labels.is_empty());
    }

    #[test]
    fn numbers_keep_their_exact_value() {
        assert_eq!(number("12"), Some(Number::Int(12)));
        assert_eq!(number("0.1"), Some(Number::Float(0.1)));
        assert_eq!(number("+Inf"), Some(Number::Float(f64::INFINITY)));
        assert_eq!(number("1e-7"), Some(Number::Float(1e-7)));
        // Beyond i64: a float, not an error.
        assert!(matches!(
            number("18446744073709551615"),
            Some(Number::Float(_))
        ));
        assert_eq!(number("x"), None);
    }
}
