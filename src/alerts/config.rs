//! The `[alerts]` config table and its validated form.
//!
//! Every key is optional. Durations are humantime strings (`90s`, `2h`); the detection
//! thresholds are documented in `README.md` beside this file.

use std::time::Duration;

use serde::Deserialize;

/// `[alerts]` as written in the config file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlertsConfig {
    /// Built-in detection on or off. Default `true`.
    pub enabled: Option<bool>,
    /// Alertmanager base URL (`http://alertmanager:9093`); alerts are posted to
    /// `{url}/api/v2/alerts`. Default: none.
    pub alertmanager_url: Option<String>,
    /// A generic JSON webhook, posted the same incidents. Default: none.
    pub webhook_url: Option<String>,
    /// Headers of every post to Alertmanager, such as `Authorization = "Bearer …"`.
    pub alertmanager_headers: Option<std::collections::BTreeMap<String, String>>,
    /// Headers of every post to the webhook.
    pub webhook_headers: Option<std::collections::BTreeMap<String, String>>,
    /// CA certificates (PEM) trusted for https URLs, besides the system's.
    pub ca_file: Option<std::path::PathBuf>,
    /// Base URL of faultline's web page, for links in alerts. Default: the API address.
    pub external_url: Option<String>,
    /// How often (wall clock) newly closed event minutes are looked for. Default `5s`.
    pub eval_interval: Option<String>,
    /// Half-life of the learned baseline, in event time. Default `2h`.
    pub baseline_half_life: Option<String>,
    /// Event time a series must be observed before it can alert. Default `30m`.
    pub warmup: Option<String>,
    /// Runs (decayed) the baseline must hold before a series can alert. Default 200.
    pub min_baseline_runs: Option<u64>,
    /// Longest spike window, in minutes (windows of 1..=N minutes are tested). Default 3.
    pub spike_window_minutes: Option<u64>,
    /// A spike must be at least this many times the baseline rate. Default 2.0.
    pub spike_min_ratio: Option<f64>,
    /// A spike needs at least this many failures in its window. Default 5.
    pub min_failures: Option<u64>,
    /// One-sided binomial p-value (Bonferroni over the windows) that makes a spike
    /// pending; two pending evaluations in a row fire it. Default 1e-7.
    pub spike_p_pending: Option<f64>,
    /// p-value that fires a spike at once. Default 1e-8.
    pub spike_p_firing: Option<f64>,
    /// Rate ratio the CUSUM of a sustained shift is tuned to detect. Default 1.75.
    pub shift_ratio: Option<f64>,
    /// CUSUM decision threshold (log-likelihood ratio) of one series; each series'
    /// CUSUM adds ln of the number of CUSUMs watching its step. Default 15.
    pub cusum_threshold: Option<f64>,
    /// Fewest minutes of elevated rate before a shift can fire (caps the CUSUM step at
    /// threshold / this). Default 15.
    pub sustained_min_minutes: Option<u64>,
    /// A firing sustained shift older than this becomes the new baseline and resolves.
    /// Default `6h`.
    pub relearn_after: Option<String>,
    /// Calm evaluations in a row before a spike resolves. Default 3.
    pub resolve_minutes: Option<u64>,
    /// Series (step, or step × one cohort value) tracked. Default 5000.
    pub max_series: Option<usize>,
    /// Alerts (pending or firing) held at once; more are counted and not created.
    /// Default 1000.
    pub max_alerts: Option<usize>,
    /// Incidents (groups of alerts notified together) held at once. Default 256.
    pub max_incidents: Option<usize>,
    /// Notifications (HTTP posts) per minute per destination; updates coalesce while
    /// waiting. Default 30.
    pub max_notifications_per_minute: Option<u32>,
    /// Firing incidents are re-sent this often so Alertmanager keeps them. Default `1m`.
    pub resend_interval: Option<String>,
}

/// Validated `[alerts]` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertsConfig {
    pub enabled: bool,
    pub alertmanager_url: Option<String>,
    pub webhook_url: Option<String>,
    pub alertmanager_headers: crate::security::SecretHeaders,
    pub webhook_headers: crate::security::SecretHeaders,
    /// Extra CA certificates for https URLs (checked to load).
    pub ca_file: Option<std::path::PathBuf>,
    pub external_url: Option<String>,
    pub eval_interval: Duration,
    pub baseline_half_life_minutes: f64,
    pub warmup_minutes: u64,
    pub min_baseline_runs: f64,
    pub spike_window_minutes: usize,
    pub spike_min_ratio: f64,
    pub min_failures: u64,
    pub spike_p_pending: f64,
    pub spike_p_firing: f64,
    pub shift_ratio: f64,
    pub cusum_threshold: f64,
    pub sustained_min_minutes: u64,
    pub relearn_after_minutes: u64,
    pub resolve_minutes: u32,
    /// A firing spike is calm when its window rate is under this times the baseline.
    pub resolve_ratio: f64,
    /// A firing shift resolves when the last [`SUSTAINED_RESOLVE_WINDOW`] minutes are
    /// under this times the baseline.
    pub sustained_resolve_ratio: f64,
    /// A cohort holding at least this share of its step's runs is the step itself and
    /// raises no alert of its own.
    pub cohort_max_share: f64,
    /// Evaluations that confirm a pending spike.
    pub confirm_evaluations: u32,
    /// Event minutes behind the newest one before a minute is evaluated.
    pub settle_minutes: u64,
    pub max_series: usize,
    pub max_alerts: usize,
    pub max_incidents: usize,
    /// Resolved alerts kept for `GET /api/v1/alerts`.
    pub max_recent: usize,
    pub max_notifications_per_minute: u32,
    pub resend_interval: Duration,
    /// Most minutes evaluated in one tick (catch-up after a replay); older ones are skipped.
    pub max_catch_up_minutes: u64,
}

/// Minutes of the window that decides whether a sustained shift is over.
pub const SUSTAINED_RESOLVE_WINDOW: usize = 10;
/// Longest spike window accepted.
pub const MAX_SPIKE_WINDOW: u64 = 10;

/// A bad `[alerts]` value, naming the key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("`{key}`: {message}")]
pub struct AlertsConfigError {
    pub key: &'static str,
    pub message: String,
}

impl Default for AlertsConfig {
    fn default() -> AlertsConfig {
        AlertsConfig {
            enabled: true,
            alertmanager_url: None,
            webhook_url: None,
            alertmanager_headers: crate::security::SecretHeaders::default(),
            webhook_headers: crate::security::SecretHeaders::default(),
            ca_file: None,
            external_url: None,
            eval_interval: Duration::from_secs(5),
            baseline_half_life_minutes: 120.0,
            warmup_minutes: 30,
            min_baseline_runs: 200.0,
            spike_window_minutes: 3,
            spike_min_ratio: 2.0,
            min_failures: 5,
            spike_p_pending: 1e-7,
            spike_p_firing: 1e-8,
            shift_ratio: 1.75,
            cusum_threshold: 15.0,
            sustained_min_minutes: 15,
            relearn_after_minutes: 360,
            resolve_minutes: 3,
            resolve_ratio: 1.5,
            sustained_resolve_ratio: 1.25,
            cohort_max_share: 0.95,
            confirm_evaluations: 2,
            settle_minutes: 1,
            max_series: 5000,
            max_alerts: 1000,
            max_incidents: 256,
            max_recent: 256,
            max_notifications_per_minute: 30,
            resend_interval: Duration::from_secs(60),
            max_catch_up_minutes: 2 * 24 * 60,
        }
    }
}

fn err(key: &'static str, message: impl Into<String>) -> AlertsConfigError {
    AlertsConfigError {
        key,
        message: message.into(),
    }
}

fn duration(key: &'static str, v: &Option<String>) -> Result<Option<Duration>, AlertsConfigError> {
    match v {
        None => Ok(None),
        Some(text) => {
            let d = humantime::parse_duration(text.trim()).map_err(|e| {
                err(
                    key,
                    format!("`{text}` is not a duration such as 5s or 2h ({e})"),
                )
            })?;
            if d.is_zero() {
                return Err(err(key, "must be greater than zero"));
            }
            Ok(Some(d))
        }
    }
}

fn url(key: &'static str, v: &Option<String>) -> Result<Option<String>, AlertsConfigError> {
    match v {
        None => Ok(None),
        Some(text) => {
            let trimmed = text.trim().trim_end_matches('/');
            let ok = (trimmed.starts_with("http://") || trimmed.starts_with("https://"))
                && trimmed.len() > "https://".len()
                && trimmed.parse::<http::Uri>().is_ok();
            if !ok {
                return Err(err(
                    key,
                    format!("`{text}` is not an http:// or https:// URL"),
                ));
            }
            Ok(Some(trimmed.to_owned()))
        }
    }
}

fn headers(
    key: &'static str,
    v: &Option<std::collections::BTreeMap<String, String>>,
) -> Result<crate::security::SecretHeaders, AlertsConfigError> {
    match v {
        None => Ok(crate::security::SecretHeaders::default()),
        Some(map) => {
            crate::push::config::check_headers(map.iter().map(|(n, v)| (n.clone(), v.clone())))
                .map(crate::security::SecretHeaders)
                .map_err(|m| err(key, m))
        }
    }
}

fn probability(key: &'static str, v: Option<f64>, default: f64) -> Result<f64, AlertsConfigError> {
    let p = v.unwrap_or(default);
    if !(p > 0.0 && p < 1.0) {
        return Err(err(
            key,
            "must be a probability between 0 and 1 (exclusive)",
        ));
    }
    Ok(p)
}

impl AlertsConfig {
    pub fn from_raw(raw: &RawAlertsConfig) -> Result<AlertsConfig, AlertsConfigError> {
        let d = AlertsConfig::default();
        let minutes = |key, v: &Option<String>, default: u64| -> Result<u64, AlertsConfigError> {
            Ok(match duration(key, v)? {
                None => default,
                Some(x) => (x.as_secs() / 60).max(1),
            })
        };
        let positive = |key: &'static str, v: Option<f64>, default: f64, min: f64| {
            let x = v.unwrap_or(default);
            if !x.is_finite() || x < min {
                return Err(err(key, format!("must be a number of at least {min}")));
            }
            Ok(x)
        };
        let count = |key: &'static str, v: Option<usize>, default: usize| {
            let x = v.unwrap_or(default);
            if x == 0 {
                return Err(err(key, "must be greater than zero"));
            }
            Ok(x)
        };
        let spike_window = raw
            .spike_window_minutes
            .unwrap_or(d.spike_window_minutes as u64);
        if !(1..=MAX_SPIKE_WINDOW).contains(&spike_window) {
            return Err(err(
                "spike_window_minutes",
                format!("must be from 1 to {MAX_SPIKE_WINDOW}"),
            ));
        }
        let spike_p_pending =
            probability("spike_p_pending", raw.spike_p_pending, d.spike_p_pending)?;
        let spike_p_firing = probability("spike_p_firing", raw.spike_p_firing, d.spike_p_firing)?;
        if spike_p_firing > spike_p_pending {
            return Err(err(
                "spike_p_firing",
                "must not be larger than spike_p_pending",
            ));
        }
        let sustained_min_minutes = raw.sustained_min_minutes.unwrap_or(d.sustained_min_minutes);
        if sustained_min_minutes == 0 {
            return Err(err("sustained_min_minutes", "must be greater than zero"));
        }
        let resolve_minutes = raw.resolve_minutes.unwrap_or(d.resolve_minutes as u64);
        if !(1..=60).contains(&resolve_minutes) {
            return Err(err("resolve_minutes", "must be from 1 to 60"));
        }
        let per_minute = raw
            .max_notifications_per_minute
            .unwrap_or(d.max_notifications_per_minute);
        if per_minute == 0 {
            return Err(err(
                "max_notifications_per_minute",
                "must be greater than zero",
            ));
        }
        Ok(AlertsConfig {
            enabled: raw.enabled.unwrap_or(true),
            alertmanager_url: url("alertmanager_url", &raw.alertmanager_url)?,
            webhook_url: url("webhook_url", &raw.webhook_url)?,
            alertmanager_headers: headers("alertmanager_headers", &raw.alertmanager_headers)?,
            webhook_headers: headers("webhook_headers", &raw.webhook_headers)?,
            ca_file: match &raw.ca_file {
                Some(path) => {
                    crate::security::tls::read_ca_file(path)
                        .map_err(|e| err("ca_file", e.to_string()))?;
                    Some(path.clone())
                }
                None => None,
            },
            external_url: url("external_url", &raw.external_url)?,
            eval_interval: duration("eval_interval", &raw.eval_interval)?
                .unwrap_or(d.eval_interval),
            baseline_half_life_minutes: minutes(
                "baseline_half_life",
                &raw.baseline_half_life,
                d.baseline_half_life_minutes as u64,
            )? as f64,
            warmup_minutes: minutes("warmup", &raw.warmup, d.warmup_minutes)?,
            min_baseline_runs: raw.min_baseline_runs.unwrap_or(d.min_baseline_runs as u64) as f64,
            spike_window_minutes: spike_window as usize,
            spike_min_ratio: positive(
                "spike_min_ratio",
                raw.spike_min_ratio,
                d.spike_min_ratio,
                1.0,
            )?,
            min_failures: raw.min_failures.unwrap_or(d.min_failures).max(1),
            spike_p_pending,
            spike_p_firing,
            shift_ratio: positive("shift_ratio", raw.shift_ratio, d.shift_ratio, 1.01)?,
            cusum_threshold: positive(
                "cusum_threshold",
                raw.cusum_threshold,
                d.cusum_threshold,
                1.0,
            )?,
            sustained_min_minutes,
            relearn_after_minutes: minutes(
                "relearn_after",
                &raw.relearn_after,
                d.relearn_after_minutes,
            )?,
            resolve_minutes: resolve_minutes as u32,
            max_series: count("max_series", raw.max_series, d.max_series)?,
            max_alerts: count("max_alerts", raw.max_alerts, d.max_alerts)?,
            max_incidents: count("max_incidents", raw.max_incidents, d.max_incidents)?,
            max_notifications_per_minute: per_minute,
            resend_interval: duration("resend_interval", &raw.resend_interval)?
                .unwrap_or(d.resend_interval),
            ..d
        })
    }
}
