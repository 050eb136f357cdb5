//! What a notification says: an incident's Alertmanager labels and annotations, the
//! link to its failed trajectories on the web page, and the cutting of telemetry text
//! that reaches them. The request bodies are built from these in [`super::deliver`].

use std::collections::BTreeMap;

use super::deliver::Notification;
use super::engine::{Alert, Incident, Signal};

/// Longest text of a label or annotation value taken from telemetry.
const MAX_TEXT: usize = 200;

/// `text` without control characters, cut to `MAX_TEXT` characters (`…` marks a cut).
pub(super) fn truncate(text: &str) -> String {
    let mut out: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_TEXT)
        .collect();
    if text.chars().count() > MAX_TEXT {
        out.push('…');
    }
    out
}

fn percent(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}

/// The link to the failed trajectories of a step on the web page at `external_url`.
pub(super) fn link(external_url: &str, step: &str) -> String {
    format!(
        "{}/#/trajectories?step={}&outcome=failed",
        external_url,
        encode_component(step)
    )
}

/// The notification of incident `inc`, whose alerts still open are `members`;
/// `top_reason` is its step's top failure reason, `resolved` when it resolved.
pub(super) fn notification(
    inc: &Incident,
    members: &[&Alert],
    external_url: &str,
    top_reason: Option<String>,
    resolved: Option<u64>,
) -> Notification {
    let key = &inc.key;
    let mut labels = BTreeMap::new();
    labels.insert("alertname".to_owned(), inc.signal.alertname().to_owned());
    labels.insert("step".to_owned(), truncate(&key.step));
    labels.insert("kind".to_owned(), key.kind.as_str().to_owned());
    labels.insert("signal".to_owned(), inc.signal.as_str().to_owned());
    labels.insert("severity".to_owned(), key.kind.severity().to_owned());
    if let Some((dim, value)) = &inc.lead {
        labels.insert(truncate(dim), truncate(value));
    }
    let (rate, baseline) = members
        .iter()
        .find(|a| a.cohort == inc.lead)
        .map(|a| (a.rate, a.baseline))
        .unwrap_or((inc.peak_rate, inc.baseline));
    let mut cohorts: Vec<String> = members
        .iter()
        .map(|a| match &a.cohort {
            None => "whole step".to_owned(),
            Some((d, v)) => format!("{}={}", truncate(d), truncate(v)),
        })
        .collect();
    cohorts.sort();
    cohorts.dedup();
    let total = cohorts.len() as u64 + inc.suppressed;
    cohorts.truncate(10);
    let mut cohort_text = cohorts.join(", ");
    if total > cohorts.len() as u64 {
        cohort_text.push_str(&format!(" and {} more", total - cohorts.len() as u64));
    }
    let what = match inc.signal {
        Signal::Failure => "failure rate",
        Signal::RootCause => "root-cause rate",
    };
    let mut annotations = BTreeMap::new();
    annotations.insert(
        "summary".to_owned(),
        format!(
            "{} {} of step {}: {} vs baseline {}, since {}",
            key.kind.as_str(),
            what,
            truncate(&key.step),
            percent(rate),
            percent(baseline),
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_nanos(inc.started_unix_nano),
            )
        ),
    );
    let mut signals: Vec<&str> = members.iter().map(|a| a.signal.as_str()).collect();
    signals.push(inc.signal.as_str());
    signals.sort_unstable();
    signals.dedup();
    annotations.insert("signals".to_owned(), signals.join(", "));
    annotations.insert(
        "started".to_owned(),
        humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_nanos(inc.started_unix_nano),
        )
        .to_string(),
    );
    annotations.insert("rate".to_owned(), format!("{rate:.6}"));
    annotations.insert("baseline".to_owned(), format!("{baseline:.6}"));
    annotations.insert("cohorts".to_owned(), cohort_text);
    annotations.insert("link".to_owned(), link(external_url, &key.step));
    if let Some(reason) = top_reason {
        annotations.insert("top_reason".to_owned(), truncate(&reason));
    }
    Notification {
        incident: inc.id,
        labels,
        annotations,
        starts_unix_nano: inc.started_unix_nano,
        resolved_unix_nano: resolved,
        generator_url: link(external_url, &key.step),
    }
}

/// Percent-encodes a URL query value.
fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
