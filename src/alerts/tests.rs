//! Unit tests of the alert engine: the statistics, the spike and shift tests and their
//! labels, the lifecycle with hysteresis, grouping and bounds under a flood of cohorts,
//! late data, delivery batches and bodies, and config validation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::registry::Registry;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::config::RawAlertsConfig;
use super::deliver::{alertmanager_body, webhook_body, Notification};
use super::stats::ln_gamma;
use super::*;

/// 2024-06-01T00:00:00Z in unix minutes.
const T0: u64 = 1_717_200_000 / 60;
const MIN: u64 = 60_000_000_000;

/// Counts by minute, set by the test.
#[derive(Default)]
struct Fake {
    minutes: Mutex<HashMap<u64, Vec<SeriesCounts>>>,
    newest: Mutex<Option<u64>>,
}

impl Fake {
    fn put(&self, minute: u64, rows: Vec<SeriesCounts>) {
        let mut newest = self.newest.lock().unwrap();
        *newest = Some(newest.map_or(minute, |n| n.max(minute)));
        self.minutes
            .lock()
            .unwrap()
            .entry(minute)
            .or_default()
            .extend(rows);
    }
}

impl CountSource for Fake {
    fn newest_minute(&self) -> Option<u64> {
        *self.newest.lock().unwrap()
    }

    fn minute_counts(&self, minute: u64, out: &mut Vec<SeriesCounts>) {
        if let Some(rows) = self.minutes.lock().unwrap().get(&minute) {
            out.extend(rows.iter().cloned());
        }
    }
}

fn row(step: &str, cohort: Option<(&str, &str)>, runs: u64, fails: u64, rc: u64) -> SeriesCounts {
    SeriesCounts {
        step: step.into(),
        cohort: cohort.map(|(d, v)| (Arc::from(d), Arc::from(v))),
        runs,
        failures: fails,
        root_causes: rc,
    }
}

fn binomial(rng: &mut SmallRng, n: u64, p: f64) -> u64 {
    (0..n).filter(|_| rng.random::<f64>() < p).count() as u64
}

fn engine(config: AlertsConfig) -> (AlertEngine, Registry) {
    let mut registry = Registry::default();
    let e = AlertEngine::new(config, &mut registry, None, "http://faultline:8700");
    (e, registry)
}

/// Steady traffic for `minutes` from `start`, with `rate(minute)` for the retriever's
/// failure and root-cause rates, two models (m1 two thirds of the runs).
fn traffic(
    fake: &Fake,
    engine: &AlertEngine,
    rng: &mut SmallRng,
    start: u64,
    minutes: u64,
    runs: u64,
    rate: impl Fn(u64) -> (f64, f64),
) {
    for m in start..start + minutes {
        let (p_m1, p_m2) = rate(m);
        let n1 = runs * 2 / 3;
        let n2 = runs - n1;
        let f1 = binomial(rng, n1, p_m1);
        let f2 = binomial(rng, n2, p_m2);
        let r1 = binomial(rng, f1, 0.6);
        let r2 = binomial(rng, f2, 0.6);
        let g = binomial(rng, runs, 0.03);
        fake.put(
            m,
            vec![
                row("retriever", None, runs, f1 + f2, r1 + r2),
                row("retriever", Some(("model", "m1")), n1, f1, r1),
                row("retriever", Some(("model", "m2")), n2, f2, r2),
                row("generator", None, runs, g, g / 2),
            ],
        );
        engine.tick(fake);
    }
}

#[test]
fn binomial_tail_and_ln_gamma_match_known_values() {
    assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-12);
    assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-12);
    assert!((ln_gamma(101.0) - 363.739_375_555_563_5).abs() < 1e-9);
    // P(X >= 8), X ~ B(10, 0.5) = 56/1024.
    assert!((binomial_upper_tail(8, 10, 0.5) - 56.0 / 1024.0).abs() < 1e-12);
    // P(X >= 5), X ~ B(100, 0.01) = 0.0034238...
    assert!((binomial_upper_tail(5, 100, 0.01) - 0.003_432_3).abs() < 1e-6);
    assert_eq!(binomial_upper_tail(0, 10, 0.3), 1.0);
    assert_eq!(binomial_upper_tail(11, 10, 0.3), 0.0);
    assert_eq!(binomial_upper_tail(2, 10, 0.5), 1.0, "below the mean");
    // Huge counts stay finite and tiny.
    let p = binomial_upper_tail(5000, 100_000, 0.01);
    assert!(p.is_finite() && p < 1e-300);
    let p = binomial_upper_tail(1100, 100_000, 0.01);
    assert!(p > 0.0 && p < 0.01, "{p}");
    // The CUSUM step is positive above the shifted rate and negative at the baseline.
    assert!(bernoulli_llr(20, 100, 0.1, 0.175) > 0.0);
    assert!(bernoulli_llr(10, 100, 0.1, 0.175) < 0.0);
}

#[test]
fn a_day_of_steady_noisy_traffic_raises_nothing() {
    let (engine, _) = engine(AlertsConfig::default());
    let fake = Fake::default();
    let mut rng = SmallRng::seed_from_u64(7);
    // Rates drift by up to ±20% every half hour: real traffic is never a pure binomial.
    let mut drift = HashMap::new();
    for block in 0..48 {
        drift.insert(block, 0.8 + 0.4 * rng.random::<f64>());
    }
    traffic(&fake, &engine, &mut rng, T0, 24 * 60, 300, |m| {
        let d = drift[&((m - T0) / 30)];
        (0.05 * d, 0.05 * d)
    });
    let all = engine.alerts(&AlertFilter::default());
    assert!(all.is_empty(), "{all:#?}");
    assert_eq!(engine.stats().alerts_created, 0);
    assert!(engine.stats().evaluations >= 24 * 60 - 2);
}

#[test]
fn a_3x_spike_fires_within_two_minutes_as_a_spike_and_resolves() {
    let (engine, registry) = engine(AlertsConfig::default());
    let fake = Fake::default();
    let mut rng = SmallRng::seed_from_u64(11);
    let spike_start = T0 + 120;
    traffic(&fake, &engine, &mut rng, T0, 180, 300, |m| {
        if (spike_start..spike_start + 6).contains(&m) {
            (0.15, 0.15)
        } else {
            (0.05, 0.05)
        }
    });
    let all = engine.alerts(&AlertFilter::default());
    let step = all
        .iter()
        .find(|a| &*a.step == "retriever" && a.cohort.is_none() && a.signal == Signal::Failure)
        .unwrap_or_else(|| panic!("no step-level alert: {all:#?}"));
    assert_eq!(step.kind, AlertKind::Spike);
    assert_eq!(step.state, AlertState::Resolved);
    assert!(step.started_unix_nano >= spike_start * MIN - 2 * MIN);
    assert!(step.started_unix_nano <= (spike_start + 2) * MIN);
    let resolved = step.resolved_unix_nano.unwrap();
    assert!(resolved >= (spike_start + 6) * MIN && resolved <= (spike_start + 12) * MIN);
    assert!(step.rate > 2.0 * step.baseline, "{step:?}");
    assert!(
        all.iter().all(|a| a.kind == AlertKind::Spike),
        "a six-minute burst is never a shift: {all:#?}"
    );
    assert!(all.iter().all(|a| &*a.step == "retriever"), "{all:#?}");

    // Replayed minute by minute, the alert fires on the evaluation of minute
    // spike_start + 1 at the latest: two minutes of event time.
    let (engine2, _) = self::engine(AlertsConfig::default());
    let fake2 = Fake::default();
    let mut rng = SmallRng::seed_from_u64(11);
    let mut fired_at = None;
    for m in T0..spike_start + 6 {
        traffic(&fake2, &engine2, &mut rng, m, 1, 300, |m| {
            if m >= spike_start {
                (0.15, 0.15)
            } else {
                (0.05, 0.05)
            }
        });
        // Minute m - 1 was just evaluated (settle 1).
        let firing = engine2.alerts(&AlertFilter {
            state: Some(AlertState::Firing),
            ..AlertFilter::default()
        });
        if fired_at.is_none() && !firing.is_empty() {
            fired_at = Some(m);
        }
    }
    let evaluated = fired_at.expect("fired") - 1;
    let delay_minutes = evaluated + 1 - spike_start;
    assert!(delay_minutes <= 2, "detected {delay_minutes} minutes in");

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains(
            "faultline_alert_firing{signal=\"failure\",step=\"retriever\",kind=\"spike\"} 0"
        ),
        "{text}"
    );
}

#[test]
fn a_2x_shift_that_lasts_is_labelled_sustained() {
    let (engine, _) = engine(AlertsConfig::default());
    let fake = Fake::default();
    let mut rng = SmallRng::seed_from_u64(5);
    let shift = T0 + 120;
    traffic(&fake, &engine, &mut rng, T0, 240, 300, |m| {
        if m >= shift {
            (0.10, 0.10)
        } else {
            (0.05, 0.05)
        }
    });
    let firing = engine.alerts(&AlertFilter {
        state: Some(AlertState::Firing),
        ..AlertFilter::default()
    });
    let sustained: Vec<_> = firing
        .iter()
        .filter(|a| a.kind == AlertKind::Sustained && a.cohort.is_none())
        .collect();
    assert!(!sustained.is_empty(), "{firing:#?}");
    assert!(
        firing.iter().all(|a| a.kind == AlertKind::Sustained),
        "once a shift fires, no spike of the same series stays firing: {firing:#?}"
    );
    let a = sustained[0];
    assert!(a.started_unix_nano >= shift * MIN - 5 * MIN, "{a:?}");
    assert!(a.rate > 1.5 * a.baseline, "{a:?}");
}

#[test]
fn a_shift_becomes_the_new_baseline_after_relearn_after() {
    let config = AlertsConfig {
        relearn_after_minutes: 60,
        ..AlertsConfig::default()
    };
    let (engine, _) = engine(config);
    let fake = Fake::default();
    let mut rng = SmallRng::seed_from_u64(9);
    let shift = T0 + 120;
    traffic(&fake, &engine, &mut rng, T0, 420, 300, |m| {
        if m >= shift {
            (0.12, 0.12)
        } else {
            (0.05, 0.05)
        }
    });
    let all = engine.alerts(&AlertFilter::default());
    let relearned = all
        .iter()
        .filter(|a| a.kind == AlertKind::Sustained && a.state == AlertState::Resolved)
        .count();
    assert!(relearned > 0, "{all:#?}");
    let firing = engine.alerts(&AlertFilter {
        state: Some(AlertState::Firing),
        ..AlertFilter::default()
    });
    assert!(
        firing.is_empty(),
        "the new level is normal now: {firing:#?}"
    );
}

#[test]
fn a_cohort_spike_alerts_for_that_cohort_only() {
    let (engine, _) = engine(AlertsConfig::default());
    let fake = Fake::default();
    let mut rng = SmallRng::seed_from_u64(3);
    let start = T0 + 120;
    // m2 (a third of the runs) goes from 5% to 30%: the step as a whole only doubles.
    traffic(&fake, &engine, &mut rng, T0, 130, 300, |m| {
        if m >= start {
            (0.05, 0.30)
        } else {
            (0.05, 0.05)
        }
    });
    let firing = engine.alerts(&AlertFilter {
        state: Some(AlertState::Firing),
        ..AlertFilter::default()
    });
    assert!(
        firing
            .iter()
            .any(|a| a.cohort == Some((Arc::from("model"), Arc::from("m2")))
                && a.kind == AlertKind::Spike),
        "{firing:#?}"
    );
    assert!(
        !firing
            .iter()
            .any(|a| a.cohort == Some((Arc::from("model"), Arc::from("m1")))),
        "{firing:#?}"
    );
}

#[test]
fn a_cohort_that_is_the_whole_step_raises_no_alert_of_its_own() {
    let (engine, _) = engine(AlertsConfig::default());
    let fake = Fake::default();
    let mut rng = SmallRng::seed_from_u64(13);
    for m in T0..T0 + 130 {
        let p = if m >= T0 + 120 { 0.2 } else { 0.05 };
        let f = binomial(&mut rng, 300, p);
        fake.put(
            m,
            vec![
                row("tool", None, 300, f, f),
                row("tool", Some(("service", "api")), 300, f, f),
            ],
        );
        engine.tick(&fake);
    }
    let firing = engine.alerts(&AlertFilter::default());
    assert!(!firing.is_empty());
    assert!(firing.iter().all(|a| a.cohort.is_none()), "{firing:#?}");
}

#[test]
fn ten_thousand_cohorts_spiking_at_once_are_grouped_bounded_and_counted() {
    let config = AlertsConfig {
        max_series: 2000,
        max_alerts: 300,
        warmup_minutes: 5,
        min_baseline_runs: 50.0,
        ..AlertsConfig::default()
    };
    let mut registry = Registry::default();
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let engine = AlertEngine::new(config, &mut registry, Some(tx), "http://f");
    let fake = Fake::default();
    let mut rng = SmallRng::seed_from_u64(1);
    for m in T0..T0 + 40 {
        let spiking = m >= T0 + 30;
        let mut rows = vec![row(
            "tool",
            None,
            10_000 * 20,
            if spiking { 60_000 } else { 4_000 },
            0,
        )];
        for c in 0..10_000 {
            let p = if spiking { 0.3 } else { 0.02 };
            let f = binomial(&mut rng, 20, p);
            rows.push(row("tool", Some(("user", &format!("u{c}"))), 20, f, 0));
        }
        fake.put(m, rows);
        engine.tick(&fake);
    }
    let stats = engine.stats();
    assert!(stats.series <= 2000, "{stats:?}");
    assert!(stats.series_refused > 0, "{stats:?}");
    let active = engine.alerts(&AlertFilter::default());
    assert!(active.len() <= 300);
    assert!(!active.is_empty());
    // Every firing failure alert of the step is in one incident.
    let incidents: std::collections::HashSet<_> = active
        .iter()
        .filter(|a| a.state == AlertState::Firing)
        .map(|a| (a.signal, a.kind, a.incident))
        .collect();
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    let mut batches = Vec::new();
    while let Ok(b) = rx.try_recv() {
        batches.push(b);
    }
    let notes: Vec<&Notification> = batches.iter().flatten().collect();
    assert!(!notes.is_empty());
    let distinct: std::collections::HashSet<u64> = notes.iter().map(|n| n.incident).collect();
    assert_eq!(distinct.len(), 1, "one incident, one notification stream");
    let last = notes.last().unwrap();
    assert!(last.annotations["cohorts"].contains("more"), "{last:?}");
    assert!(last.annotations["cohorts"].len() < 1000);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains("faultline_alerts_suppressed_total{reason=\"max_series\"}"),
        "{text}"
    );
}

#[test]
fn counts_that_arrive_late_still_land_in_the_short_windows() {
    let (engine, _) = engine(AlertsConfig::default());
    let fake = Fake::default();
    let mut rng = SmallRng::seed_from_u64(21);
    traffic(&fake, &engine, &mut rng, T0, 120, 300, |_| (0.05, 0.05));
    // Minute 120 is evaluated with its on-time runs only: nothing unusual.
    let m = T0 + 120;
    fake.put(m, vec![row("retriever", None, 300, 15, 9)]);
    fake.put(m + 1, vec![row("retriever", None, 300, 15, 9)]);
    engine.tick(&fake);
    assert!(engine.alerts(&AlertFilter::default()).is_empty());
    // Its late runs, all failed, arrive afterwards: the next evaluation reads the minute
    // again and sees them.
    fake.put(m, vec![row("retriever", None, 100, 100, 100)]);
    fake.put(m + 2, vec![row("retriever", None, 300, 15, 9)]);
    engine.tick(&fake);
    let all = engine.alerts(&AlertFilter::default());
    let a = all
        .iter()
        .find(|a| a.signal == Signal::RootCause && a.cohort.is_none())
        .unwrap_or_else(|| panic!("{all:#?}"));
    assert_eq!(a.started_unix_nano, m * MIN, "{a:?}");
    assert!(
        a.failures >= 109,
        "the late failures of minute {m} are counted: {a:?}"
    );
}

#[test]
fn a_full_delivery_queue_is_counted_and_resynced() {
    let config = AlertsConfig {
        warmup_minutes: 5,
        min_baseline_runs: 50.0,
        ..AlertsConfig::default()
    };
    let mut registry = Registry::default();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let engine = AlertEngine::new(config, &mut registry, Some(tx), "http://f");
    let fake = Fake::default();
    let mut rng = SmallRng::seed_from_u64(2);
    for m in T0..T0 + 40 {
        let mut rows = Vec::new();
        // The three steps start failing two minutes apart: three batches.
        for (i, step) in ["planner", "tool", "retriever"].into_iter().enumerate() {
            let p = if m >= T0 + 30 + 2 * i as u64 {
                0.4
            } else {
                0.02
            };
            let f = binomial(&mut rng, 200, p);
            rows.push(row(step, None, 200, f, f));
        }
        fake.put(m, rows);
        engine.tick(&fake);
    }
    assert!(engine.stats().batches_dropped > 0);
    let first = rx.try_recv().expect("one batch queued");
    assert!(!first.is_empty());
    // The next evaluation after room is made sends every open incident.
    fake.put(T0 + 40, vec![row("tool", None, 200, 80, 80)]);
    engine.tick(&fake);
    let resync = rx.try_recv().expect("resync batch");
    let incidents: std::collections::HashSet<_> =
        resync.iter().map(|n| n.labels["step"].clone()).collect();
    assert_eq!(incidents.len(), 3, "{resync:#?}");
}

#[test]
fn the_alertmanager_and_webhook_bodies_follow_their_contracts() {
    let mut labels = std::collections::BTreeMap::new();
    labels.insert(
        "alertname".to_owned(),
        "FaultlineStepRootCauseRate".to_owned(),
    );
    labels.insert("step".to_owned(), "retriever".to_owned());
    let note = Notification {
        incident: 4,
        labels,
        annotations: Default::default(),
        starts_unix_nano: 1_717_200_000_000_000_000,
        resolved_unix_nano: None,
        generator_url: "http://f/#/trajectories?step=retriever&outcome=failed".into(),
    };
    let now = 1_717_200_600_000_000_000;
    let body = alertmanager_body(std::slice::from_ref(&note), now, Duration::from_secs(300));
    assert_eq!(body[0]["startsAt"], "2024-06-01T00:00:00.000Z");
    assert_eq!(body[0]["endsAt"], "2024-06-01T00:15:00.000Z");
    assert_eq!(body[0]["labels"]["step"], "retriever");
    assert_eq!(
        body[0]["generatorURL"],
        "http://f/#/trajectories?step=retriever&outcome=failed"
    );
    // Resolved: ends at the resolution, never after now.
    let resolved = Notification {
        resolved_unix_nano: Some(now + 3_600_000_000_000),
        ..note.clone()
    };
    let body = alertmanager_body(&[resolved], now, Duration::from_secs(300));
    assert_eq!(body[0]["endsAt"], "2024-06-01T00:10:00.000Z");
    // A start in the future (skewed clock) is clamped before now.
    let future = Notification {
        starts_unix_nano: now + 1_000_000_000_000,
        ..note.clone()
    };
    let body = alertmanager_body(&[future], now, Duration::from_secs(300));
    assert_eq!(body[0]["startsAt"], "2024-06-01T00:09:59.000Z");
    let hook = webhook_body(&[note]);
    assert_eq!(hook["source"], "faultline");
    assert_eq!(hook["alerts"][0]["status"], "firing");
    assert_eq!(hook["alerts"][0]["incident"], 4);
    assert!(hook["alerts"][0]["resolved_unix_nano"].is_null());
}

#[test]
fn hostile_step_names_are_truncated_and_escaped_in_links() {
    let (engine, _) = engine(AlertsConfig::default());
    assert_eq!(
        engine.link("tool&x=<script>"),
        "http://faultline:8700/#/trajectories?step=tool%26x%3D%3Cscript%3E&outcome=failed"
    );
}

#[test]
fn config_is_validated() {
    let ok = AlertsConfig::from_raw(&RawAlertsConfig {
        alertmanager_url: Some("http://am:9093/".into()),
        warmup: Some("10m".into()),
        spike_window_minutes: Some(5),
        ..RawAlertsConfig::default()
    })
    .unwrap();
    assert_eq!(ok.alertmanager_url.as_deref(), Some("http://am:9093"));
    assert_eq!(ok.warmup_minutes, 10);
    assert_eq!(ok.spike_window_minutes, 5);
    let bad = |raw: RawAlertsConfig| AlertsConfig::from_raw(&raw).unwrap_err().key;
    assert_eq!(
        bad(RawAlertsConfig {
            alertmanager_url: Some("am:9093".into()),
            ..Default::default()
        }),
        "alertmanager_url"
    );
    assert_eq!(
        bad(RawAlertsConfig {
            spike_window_minutes: Some(0),
            ..Default::default()
        }),
        "spike_window_minutes"
    );
    assert_eq!(
        bad(RawAlertsConfig {
            spike_p_firing: Some(0.1),
            spike_p_pending: Some(0.01),
            ..Default::default()
        }),
        "spike_p_firing"
    );
    assert_eq!(
        bad(RawAlertsConfig {
            eval_interval: Some("soon".into()),
            ..Default::default()
        }),
        "eval_interval"
    );
    assert_eq!(
        bad(RawAlertsConfig {
            max_series: Some(0),
            ..Default::default()
        }),
        "max_series"
    );
    let toml_err = toml::from_str::<RawAlertsConfig>("alertmanager = \"x\"").unwrap_err();
    assert!(toml_err.to_string().contains("unknown field"));
}

/// One minute of retriever and generator counts at failure rate `p`.
fn minute_rows(rng: &mut SmallRng, runs: u64, p: f64) -> Vec<SeriesCounts> {
    let f = binomial(rng, runs, p);
    let r = binomial(rng, f, 0.6);
    let g = binomial(rng, runs, 0.03);
    vec![
        row("retriever", None, runs, f, r),
        row("generator", None, runs, g, g / 2),
    ]
}

#[test]
fn a_replay_in_seconds_judges_each_minute_complete_and_alerts_as_live_did() {
    let spike = T0 + 100;
    let rate = |m: u64| {
        if (spike..spike + 3).contains(&m) {
            0.2
        } else {
            0.05
        }
    };
    let mut rng = SmallRng::seed_from_u64(5);
    let counts: Vec<(u64, Vec<SeriesCounts>)> = (T0..T0 + 130)
        .map(|m| (m, minute_rows(&mut rng, 300, rate(m))))
        .collect();

    // Live: one tick per minute.
    let (live, _) = engine(AlertsConfig::default());
    let fake = Fake::default();
    for (m, rows) in &counts {
        fake.put(*m, rows.clone());
        live.tick(&fake);
    }
    let live_alerts = live.alerts(&AlertFilter::default());
    let live_spike = live_alerts
        .iter()
        .find(|a| &*a.step == "retriever" && a.kind == AlertKind::Spike)
        .unwrap_or_else(|| panic!("live traffic: no spike: {live_alerts:#?}"));

    // Replay: twenty minutes arrive per tick, and each burst's last ten minutes hold
    // only half of their runs when the tick comes (the rest is still in flight).
    let (replay, _) = engine(AlertsConfig::default());
    let fake = Fake::default();
    let halves = |rows: &[SeriesCounts]| -> Vec<SeriesCounts> {
        rows.iter()
            .map(|r| SeriesCounts {
                runs: r.runs / 2,
                failures: r.failures / 2,
                root_causes: r.root_causes / 2,
                ..r.clone()
            })
            .collect()
    };
    let mut done = 0;
    for chunk in counts.chunks(20) {
        for (i, (m, rows)) in chunk.iter().enumerate() {
            if i >= 10 {
                fake.put(*m, halves(rows));
            } else {
                fake.put(*m, rows.clone());
            }
        }
        replay.tick(&fake);
        for (m, rows) in &chunk[10..] {
            let rest: Vec<SeriesCounts> = rows
                .iter()
                .zip(halves(rows))
                .map(|(r, h)| SeriesCounts {
                    runs: r.runs - h.runs,
                    failures: r.failures - h.failures,
                    root_causes: r.root_causes - h.root_causes,
                    ..r.clone()
                })
                .collect();
            fake.put(*m, rest);
        }
        done += chunk.len();
    }
    assert_eq!(done, counts.len());
    // The traffic has stopped: the remaining minutes settle over the next ticks.
    for _ in 0..4 {
        replay.tick(&fake);
    }
    let replayed = replay.alerts(&AlertFilter::default());
    let replay_spike = replayed
        .iter()
        .find(|a| &*a.step == "retriever" && a.kind == AlertKind::Spike)
        .unwrap_or_else(|| panic!("replay: no spike: {replayed:#?}"));
    assert_eq!(
        replay_spike.started_unix_nano, live_spike.started_unix_nano,
        "live {live_spike:?} replay {replay_spike:?}"
    );
    assert!(replay_spike.started_unix_nano <= (spike + 2) * MIN);
    assert_eq!(replay.stats().last_minute, Some(T0 + 128));
}

#[test]
fn a_container_step_alerts_on_its_own_root_causes_only_and_one_incident_holds_both_signals() {
    let (engine, _) = engine(AlertsConfig::default());
    let fake = Fake::default();
    let mut rng = SmallRng::seed_from_u64(8);
    let spike = T0 + 90;
    for m in T0..T0 + 100 {
        let p = if (spike..spike + 4).contains(&m) {
            0.3
        } else {
            0.04
        };
        let f = binomial(&mut rng, 300, p);
        // The tool fails and is blamed; the agent around it fails with it (symptom)
        // and is blamed for almost nothing.
        let a = binomial(&mut rng, 300, 0.002);
        fake.put(
            m,
            vec![
                row("tool", None, 300, f, f),
                row("agent", None, 300, f + a, a),
            ],
        );
        engine.tick(&fake);
    }
    let all = engine.alerts(&AlertFilter::default());
    assert!(
        all.iter().all(|a| &*a.step != "agent"),
        "the agent's failures are its tool's: {all:#?}"
    );
    let tool: Vec<&Alert> = all.iter().filter(|a| &*a.step == "tool").collect();
    assert!(
        tool.iter().any(|a| a.signal == Signal::Failure)
            && tool.iter().any(|a| a.signal == Signal::RootCause),
        "{all:#?}"
    );
    let incidents: std::collections::HashSet<Option<u64>> =
        tool.iter().map(|a| a.incident).collect();
    assert_eq!(incidents.len(), 1, "one incident for one spike: {tool:#?}");
}

/// Minutes of retriever and generator counts: a spike of the retriever from minute
/// `T0 + 70` for three minutes, and a sustained 2x rise of the generator from `T0 + 80`.
fn spike_and_shift(rng: &mut SmallRng) -> Vec<(u64, Vec<SeriesCounts>)> {
    let (spike, shift) = (T0 + 70, T0 + 80);
    (T0..T0 + 120)
        .map(|m| {
            let p = if (spike..spike + 3).contains(&m) {
                0.2
            } else {
                0.05
            };
            let f = binomial(rng, 300, p);
            let r = binomial(rng, f, 0.6);
            let g = binomial(rng, 300, if m >= shift { 0.06 } else { 0.03 });
            let rows = vec![
                row("retriever", None, 300, f, r),
                row("generator", None, 300, g, g),
            ];
            (m, rows)
        })
        .collect()
}

/// The start of the first non-pending alert of `step` and `kind`, if any.
fn first_alert(alerts: &[Alert], step: &str, kind: AlertKind) -> Option<u64> {
    alerts
        .iter()
        .filter(|a| &*a.step == step && a.kind == kind && a.state != AlertState::Pending)
        .map(|a| a.started_unix_nano)
        .min()
}

#[test]
fn a_replay_drained_in_two_ticks_alerts_as_live_did() {
    let counts = spike_and_shift(&mut SmallRng::seed_from_u64(21));

    let (live, _) = engine(AlertsConfig::default());
    let fake = Fake::default();
    for (m, rows) in &counts {
        fake.put(*m, rows.clone());
        live.tick(&fake);
    }
    let live_alerts = live.alerts(&AlertFilter::default());
    let live_spike = first_alert(&live_alerts, "retriever", AlertKind::Spike)
        .unwrap_or_else(|| panic!("live: no spike: {live_alerts:#?}"));
    let live_shift = first_alert(&live_alerts, "generator", AlertKind::Sustained)
        .unwrap_or_else(|| panic!("live: no shift: {live_alerts:#?}"));

    // A collector drains two hours of event time in seconds: at the first tick the
    // counts reach minute 95 (its last minutes still being counted), at the next one
    // everything is in; then the engine ticks on with no new data.
    let (replay, _) = engine(AlertsConfig::default());
    let fake = Fake::default();
    for (m, rows) in &counts[..96] {
        fake.put(*m, rows.clone());
    }
    replay.tick(&fake);
    for (m, rows) in &counts[96..] {
        fake.put(*m, rows.clone());
    }
    for _ in 0..4 {
        replay.tick(&fake);
    }
    let replayed = replay.alerts(&AlertFilter::default());
    assert_eq!(
        first_alert(&replayed, "retriever", AlertKind::Spike),
        Some(live_spike),
        "{replayed:#?}"
    );
    assert_eq!(
        first_alert(&replayed, "generator", AlertKind::Sustained),
        Some(live_shift),
        "{replayed:#?}"
    );
    assert_eq!(replay.stats().last_minute, Some(T0 + 118));
}

#[test]
fn a_shift_of_a_small_rate_fires_within_forty_minutes_against_the_level_before_it() {
    // 170 runs a minute at 3.2%, nearly doubling after 80 minutes (a young baseline,
    // which learns fast): the minutes of the building shift must not teach the
    // baseline that they are normal, or the shift is absorbed before it fires.
    let mut fired = 0;
    for seed in 0..20 {
        let (e, _) = engine(AlertsConfig::default());
        let fake = Fake::default();
        let mut rng = SmallRng::seed_from_u64(seed);
        for m in T0..T0 + 120 {
            let p = if m >= T0 + 80 { 0.061 } else { 0.032 };
            let g = binomial(&mut rng, 170, p);
            fake.put(m, vec![row("generator", None, 170, g, g)]);
            e.tick(&fake);
        }
        let all = e.alerts(&AlertFilter::default());
        if all
            .iter()
            .any(|a| a.kind == AlertKind::Sustained && a.state == AlertState::Firing)
        {
            fired += 1;
        }
    }
    assert!(fired >= 17, "{fired} of 20 shifts fired");
}

#[test]
fn alerts_carry_their_steps_top_reason_from_the_reason_index() {
    // The lookup stands for the reason index: one reason per step, as the server's
    // `reason_lookup` gives it; asked with the spike window of at least five minutes.
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = asked.clone();
    let lookup: ReasonLookup = Arc::new(move |step: &str, minutes: u64| {
        seen.lock().unwrap().push((step.to_owned(), minutes));
        (step == "retriever").then(|| format!("Timeout after <*> ms calling {step}\u{7}"))
    });
    let mut registry = Registry::default();
    let engine = AlertEngine::new(
        AlertsConfig::default(),
        &mut registry,
        None,
        "http://faultline:8700",
    )
    .with_reasons(lookup);
    let fake = Fake::default();
    let mut rng = SmallRng::seed_from_u64(11);
    let spike_start = T0 + 120;
    let rate = move |m: u64| {
        if m >= spike_start {
            (0.15, 0.15)
        } else {
            (0.05, 0.05)
        }
    };
    traffic(&fake, &engine, &mut rng, T0, 125, 300, rate);
    let all = engine.alerts(&AlertFilter::default());
    assert!(
        all.iter().any(|a| a.state == AlertState::Firing),
        "{all:#?}"
    );
    for a in &all {
        // Control characters are stripped, as in the notifications' `top_reason`.
        assert_eq!(
            a.reason.as_deref(),
            Some("Timeout after <*> ms calling retriever"),
            "{a:?}"
        );
    }
    assert!(asked
        .lock()
        .unwrap()
        .iter()
        .all(|(s, m)| s == "retriever" && *m == 5));

    // Without a reason index, no reason.
    let (plain, _) = self::engine(AlertsConfig::default());
    let fake = Fake::default();
    let mut rng = SmallRng::seed_from_u64(11);
    traffic(&fake, &plain, &mut rng, T0, 125, 300, rate);
    let all = plain.alerts(&AlertFilter::default());
    assert!(!all.is_empty());
    assert!(all.iter().all(|a| a.reason.is_none()), "{all:#?}");
}

/// Three steps whose failure rate jumps from 2% to 40% two minutes apart: three
/// incidents' worth of firing alerts. Returns the engine and its registry.
fn three_failing_steps(config: AlertsConfig) -> (AlertEngine, Registry) {
    let (engine, registry) = engine(AlertsConfig {
        warmup_minutes: 5,
        min_baseline_runs: 50.0,
        ..config
    });
    let fake = Fake::default();
    let mut rng = SmallRng::seed_from_u64(2);
    for m in T0..T0 + 40 {
        let mut rows = Vec::new();
        for (i, step) in ["planner", "tool", "retriever"].into_iter().enumerate() {
            let p = if m >= T0 + 30 + 2 * i as u64 {
                0.4
            } else {
                0.02
            };
            let f = binomial(&mut rng, 200, p);
            rows.push(row(step, None, 200, f, f));
        }
        fake.put(m, rows);
        engine.tick(&fake);
    }
    (engine, registry)
}

/// The incidents of the firing alerts (`None`: an alert outside any incident).
fn firing_incidents(engine: &AlertEngine) -> Vec<Option<u64>> {
    engine
        .alerts(&AlertFilter::default())
        .iter()
        .filter(|a| a.state == AlertState::Firing)
        .map(|a| a.incident)
        .collect()
}

fn distinct(incidents: &[Option<u64>]) -> std::collections::HashSet<u64> {
    incidents.iter().flatten().copied().collect()
}

#[test]
fn incidents_stop_at_max_incidents_and_the_rest_are_counted() {
    // Unbounded enough: every firing alert is in an incident, one per step and kind.
    let (engine, _) = three_failing_steps(AlertsConfig::default());
    let all = firing_incidents(&engine);
    let n = distinct(&all).len();
    assert!(n >= 3, "one incident per failing step at least: {all:?}");
    assert!(!all.contains(&None), "{all:?}");
    assert_eq!(engine.stats().incidents_created, n as u64);
    assert_eq!(engine.stats().incidents_refused, 0);

    // One fewer allowed: the alerts of the last one fire outside any incident, counted.
    let (engine, registry) = three_failing_steps(AlertsConfig {
        max_incidents: n - 1,
        ..AlertsConfig::default()
    });
    let stats = engine.stats();
    let bounded = firing_incidents(&engine);
    assert_eq!(stats.incidents_created, (n - 1) as u64, "{stats:?}");
    assert_eq!(distinct(&bounded).len(), n - 1, "{bounded:?}");
    assert!(bounded.contains(&None), "{bounded:?}");
    assert_eq!(
        bounded.len(),
        all.len(),
        "the same alerts fire: {bounded:?}"
    );
    assert!(stats.incidents_refused > 0, "{stats:?}");
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let refused: f64 = text
        .lines()
        .find(|l| l.starts_with("faultline_alerts_suppressed_total{reason=\"max_incidents\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(refused, stats.incidents_refused as f64, "{text}");
}

/// The bodies a webhook receiver got, in order.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<serde_json::Value>>>);

impl Received {
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// The incident ids of request `i`.
    fn incidents(&self, i: usize) -> Vec<u64> {
        self.0.lock().unwrap()[i]["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .map(|a| a["incident"].as_u64().expect("id"))
            .collect()
    }

    async fn until(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.len() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of {n} requests arrived",
                self.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn note(incident: u64) -> Notification {
    Notification {
        incident,
        labels: [("step".to_string(), format!("step{incident}"))].into(),
        annotations: Default::default(),
        starts_unix_nano: 1_717_200_000_000_000_000,
        resolved_unix_nano: None,
        generator_url: "http://f".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_are_rate_limited_per_destination_and_flushed_at_shutdown() {
    let received = Received::default();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let received = received.clone();
            move |axum::Json(body): axum::Json<serde_json::Value>| {
                let received = received.clone();
                async move {
                    received.0.lock().unwrap().push(body);
                    "ok"
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    // Two a minute: a burst of two, then one every 30 s.
    let config = super::deliver::DeliveryConfig {
        alertmanager_url: None,
        webhook_url: Some(format!("http://{addr}/hook")),
        alertmanager_headers: Default::default(),
        webhook_headers: Default::default(),
        ca_file: None,
        max_per_minute: 2,
        resend_interval: Duration::from_secs(3600),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let metrics = super::deliver::DeliveryMetrics::register(&mut Registry::default());
    let task = tokio::spawn(super::deliver::run(config, rx, metrics, stop_rx));
    // Each incident is sent alone while tokens last: the next one is handed over only
    // after the previous request arrived.
    tx.send(vec![note(1)]).await.unwrap();
    received.until(1).await;
    tx.send(vec![note(2)]).await.unwrap();
    received.until(2).await;
    tx.send(vec![note(3)]).await.unwrap();
    tx.send(vec![note(4)]).await.unwrap();
    // The bucket is empty: nothing more for the next 30 s (watched for 3).
    let watch = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < watch {
        assert_eq!(received.len(), 2, "sent past the rate limit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // At shutdown what waits is sent at once, in one request.
    stop_tx.send(true).unwrap();
    received.until(3).await;
    task.await.unwrap();
    assert_eq!(received.len(), 3);
    assert_eq!(received.incidents(0), vec![1]);
    assert_eq!(received.incidents(1), vec![2]);
    let mut last = received.incidents(2);
    last.sort_unstable();
    assert_eq!(last, vec![3, 4]);
}

#[test]
fn each_cusum_threshold_grows_with_the_log_of_the_cusums_watching_its_step() {
    use super::engine::cusum_threshold;
    assert_eq!(cusum_threshold(15.0, None), 15.0);
    assert_eq!(cusum_threshold(15.0, Some(0)), 15.0);
    assert_eq!(cusum_threshold(15.0, Some(1)), 15.0);
    // A step with 40 cohorts and two signals: 82 CUSUMs, each e^ln(82) times rarer to
    // cross by chance, so the step's family is as quiet as one CUSUM at 15.
    assert!((cusum_threshold(15.0, Some(82)) - (15.0 + 82f64.ln())).abs() < 1e-12);
}
