//! The `[wal]` table of the config file and its flags: whether the write-ahead log is
//! on, when it is fsynced, how large a segment grows and how much disk it may use.

use std::time::Duration;

use serde::Deserialize;

/// `[wal]` as written. Every key is optional.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWalConfig {
    /// Append every accepted request to the log before acknowledging it. Default true.
    pub enabled: Option<bool>,
    /// `batch` (fsync before each acknowledgement, shared by the requests written
    /// together) or `interval` (fsync every `fsync_interval`). Default `batch`.
    pub fsync: Option<String>,
    /// Time between fsyncs with `fsync = "interval"`. Default `1s`.
    pub fsync_interval: Option<String>,
    /// A segment file is closed and a new one started past this size. Default 64 MiB.
    pub segment_bytes: Option<u64>,
    /// The most the segments may take on disk; a request that would take the log past
    /// it is refused, retryably. Default 4 GiB.
    pub max_bytes: Option<u64>,
}

/// Values from `--wal-*` flags and `FAULTLINE_WAL_*` variables.
#[derive(Debug, Default, Clone)]
pub struct WalOverrides {
    pub enabled: Option<bool>,
    pub fsync: Option<String>,
    pub fsync_interval: Option<String>,
    pub segment_bytes: Option<u64>,
    pub max_bytes: Option<u64>,
}

/// When appended records reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// fsync (fdatasync) before any request written is acknowledged; requests written
    /// together share one fsync.
    Batch,
    /// fsync every `fsync_interval`; an acknowledged request is in the operating
    /// system's cache (it survives the process being killed, not a power loss within the
    /// interval).
    Interval(Duration),
}

impl FsyncPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            FsyncPolicy::Batch => "batch",
            FsyncPolicy::Interval(_) => "interval",
        }
    }
}

/// Validated `[wal]` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct WalConfig {
    pub enabled: bool,
    pub fsync: FsyncPolicy,
    pub segment_bytes: u64,
    /// Disk use cap of the segments (at least `segment_bytes`).
    pub max_bytes: u64,
}

pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
pub const MIN_SEGMENT_BYTES: u64 = 64 * 1024;
pub const DEFAULT_MAX_BYTES: u64 = 4 * 1024 * 1024 * 1024;
pub const DEFAULT_FSYNC_INTERVAL: Duration = Duration::from_secs(1);

impl Default for WalConfig {
    fn default() -> WalConfig {
        WalConfig {
            enabled: true,
            fsync: FsyncPolicy::Batch,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// A bad `[wal]` value, naming the key and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("wal.{key}: {message}")]
pub struct WalConfigError {
    pub key: &'static str,
    pub message: String,
    pub from_file: bool,
}

impl WalConfig {
    /// Flags and environment over the file over the defaults.
    pub fn resolve(
        raw: Option<&RawWalConfig>,
        over: &WalOverrides,
    ) -> Result<WalConfig, WalConfigError> {
        let empty = RawWalConfig::default();
        let raw = raw.unwrap_or(&empty);
        let mut c = WalConfig::default();
        if let Some(enabled) = over.enabled.or(raw.enabled) {
            c.enabled = enabled;
        }
        let pick = |o: &Option<String>, f: &Option<String>| match (o, f) {
            (Some(v), _) => Some((v.clone(), false)),
            (None, Some(v)) => Some((v.clone(), true)),
            (None, None) => None,
        };
        let interval = match pick(&over.fsync_interval, &raw.fsync_interval) {
            None => DEFAULT_FSYNC_INTERVAL,
            Some((v, from_file)) => {
                let d = humantime::parse_duration(v.trim()).map_err(|e| WalConfigError {
                    key: "fsync_interval",
                    message: format!("`{v}` is not a duration such as 100ms or 1s ({e})"),
                    from_file,
                })?;
                if d.is_zero() {
                    return Err(WalConfigError {
                        key: "fsync_interval",
                        message: "must be greater than zero".into(),
                        from_file,
                    });
                }
                d
            }
        };
        if let Some((v, from_file)) = pick(&over.fsync, &raw.fsync) {
            c.fsync = match v.trim() {
                "batch" => FsyncPolicy::Batch,
                "interval" => FsyncPolicy::Interval(interval),
                other => {
                    return Err(WalConfigError {
                        key: "fsync",
                        message: format!("`{other}` is not `batch` or `interval`"),
                        from_file,
                    })
                }
            };
        }
        let pick_u64 = |o: Option<u64>, f: Option<u64>| match (o, f) {
            (Some(b), _) => Some((b, false)),
            (None, Some(b)) => Some((b, true)),
            (None, None) => None,
        };
        let segment_bytes = pick_u64(over.segment_bytes, raw.segment_bytes);
        if let Some((b, from_file)) = segment_bytes {
            if b < MIN_SEGMENT_BYTES {
                return Err(WalConfigError {
                    key: "segment_bytes",
                    message: format!("{b} is below the minimum of {MIN_SEGMENT_BYTES} bytes"),
                    from_file,
                });
            }
            c.segment_bytes = b;
        }
        match pick_u64(over.max_bytes, raw.max_bytes) {
            Some((b, from_file)) => {
                if b < MIN_SEGMENT_BYTES {
                    return Err(WalConfigError {
                        key: "max_bytes",
                        message: format!("{b} is below the minimum of {MIN_SEGMENT_BYTES} bytes"),
                        from_file,
                    });
                }
                // A cap below the default segment size makes segments that small.
                if segment_bytes.is_none() {
                    c.segment_bytes = c.segment_bytes.min(b);
                }
                if b < c.segment_bytes {
                    return Err(WalConfigError {
                        key: "max_bytes",
                        message: format!(
                            "{b} is below segment_bytes ({}): the log needs room for at least one segment",
                            c.segment_bytes
                        ),
                        from_file,
                    });
                }
                c.max_bytes = b;
            }
            // A segment size set above the default cap raises the cap with it.
            None => c.max_bytes = c.max_bytes.max(c.segment_bytes),
        }
        Ok(c)
    }
}
