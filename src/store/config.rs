//! The `[store]` table of the config file: retention by age and size, the sample of
//! successful trajectories kept in full, and the writer's queue.

use std::time::Duration;

use serde::Deserialize;

/// `[store]` as written. Every key is optional.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStoreConfig {
    /// Trajectories and per-minute counts older than this (by end time) are deleted.
    /// Default `7d`.
    pub retention: Option<String>,
    /// Upper bound of the database's used pages, in bytes; past it the oldest
    /// trajectories are deleted. Default 1 GiB.
    pub max_bytes: Option<u64>,
    /// Fraction of successful trajectories kept in full, chosen by a hash of the trace id
    /// (the same trace is always in or out). Failed and recovered ones are always kept.
    /// Default 0.05.
    pub success_sample: Option<f64>,
    /// Writes waiting for the writer thread; past it writes are dropped and counted in
    /// `faultline_store_dropped_total`. Default 10 000.
    pub queue: Option<usize>,
}

/// Validated `[store]` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    pub retention: Duration,
    pub max_bytes: u64,
    pub success_sample: f64,
    pub queue: usize,
    /// Writes per transaction, at most.
    pub max_batch: usize,
    /// How often retention runs.
    pub retention_interval: Duration,
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig {
            retention: Duration::from_secs(7 * 24 * 3600),
            max_bytes: 1 << 30,
            success_sample: 0.05,
            queue: 10_000,
            max_batch: 512,
            retention_interval: Duration::from_secs(60),
        }
    }
}

/// A bad `[store]` value, naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("store.{key}: {message}")]
pub struct StoreConfigError {
    pub key: &'static str,
    pub message: String,
}

impl StoreConfig {
    pub fn from_raw(raw: &RawStoreConfig) -> Result<StoreConfig, StoreConfigError> {
        let mut c = StoreConfig::default();
        if let Some(r) = &raw.retention {
            let d = humantime::parse_duration(r.trim()).map_err(|e| StoreConfigError {
                key: "retention",
                message: format!("`{r}` is not a duration such as 7d or 12h ({e})"),
            })?;
            if d < Duration::from_secs(60) {
                return Err(StoreConfigError {
                    key: "retention",
                    message: "must be at least 1m".into(),
                });
            }
            c.retention = d;
        }
        if let Some(b) = raw.max_bytes {
            if b < 1 << 20 {
                return Err(StoreConfigError {
                    key: "max_bytes",
                    message: "must be at least 1048576 (1 MiB)".into(),
                });
            }
            c.max_bytes = b;
        }
        if let Some(s) = raw.success_sample {
            if !(0.0..=1.0).contains(&s) {
                return Err(StoreConfigError {
                    key: "success_sample",
                    message: format!("must be between 0 and 1, not {s}"),
                });
            }
            c.success_sample = s;
        }
        if let Some(q) = raw.queue {
            if q == 0 {
                return Err(StoreConfigError {
                    key: "queue",
                    message: "must be greater than zero".into(),
                });
            }
            c.queue = q;
        }
        Ok(c)
    }
}
