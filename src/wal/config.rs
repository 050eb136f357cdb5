//! The `[wal]` table of the config file and its flags: whether the write-ahead log is
//! on, when it is fsynced, and how large a segment grows.

use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};

/// `[wal]`: each key is also a flag `--wal-<key>` and a variable `FAULTLINE_WAL_<KEY>`
/// (see `config.rs`). Every key is optional.
#[derive(Debug, Default, Clone, Args, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawWalConfig {
    /// Append every accepted request to the write-ahead log under the data directory
    /// before acknowledging it, and replay it at startup: true or false. File: [wal]
    /// enabled.
    #[arg(
        id = "wal_enabled",
        long = "wal-enabled",
        env = "FAULTLINE_WAL_ENABLED",
        value_name = "BOOL"
    )]
    pub enabled: Option<bool>,
    /// When the write-ahead log is fsynced: batch (before each acknowledgement, shared by
    /// the requests written together) or interval (every --wal-fsync-interval; an
    /// acknowledged request survives a crash of the process, not of the machine within
    /// the interval). File: [wal] fsync.
    #[arg(
        id = "wal_fsync",
        long = "wal-fsync",
        env = "FAULTLINE_WAL_FSYNC",
        value_name = "POLICY"
    )]
    pub fsync: Option<String>,
    /// Time between write-ahead log fsyncs with --wal-fsync interval. File: [wal]
    /// fsync_interval.
    #[arg(
        id = "wal_fsync_interval",
        long = "wal-fsync-interval",
        env = "FAULTLINE_WAL_FSYNC_INTERVAL",
        value_name = "DURATION"
    )]
    pub fsync_interval: Option<String>,
    /// A write-ahead log segment file is closed and a new one started past this size
    /// (at least 65536). File: [wal] segment_bytes.
    #[arg(
        id = "wal_segment_bytes",
        long = "wal-segment-bytes",
        env = "FAULTLINE_WAL_SEGMENT_BYTES",
        value_name = "BYTES"
    )]
    pub segment_bytes: Option<u64>,
    /// The most the write-ahead log's segments may take on disk (at least
    /// --wal-segment-bytes); a request that would take it past this is refused
    /// retryably (503 + Retry-After / UNAVAILABLE). File: [wal] max_bytes [default:
    /// 4294967296, or the segment size if larger].
    #[arg(
        id = "wal_max_bytes",
        long = "wal-max-bytes",
        env = "FAULTLINE_WAL_MAX_BYTES",
        value_name = "BYTES"
    )]
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
/// The cap when none is set (raised to the segment size when that is larger).
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

/// A bad `[wal]` value, naming the key (where it came from is known to the caller, which
/// merged the sources).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("wal.{key}: {message}")]
pub struct WalConfigError {
    pub key: &'static str,
    pub message: String,
}

impl WalConfig {
    /// Validates the merged `[wal]` (flags, environment and file already merged by
    /// `config.rs`); an absent key takes its default.
    pub fn resolve(raw: Option<&RawWalConfig>) -> Result<WalConfig, WalConfigError> {
        let empty = RawWalConfig::default();
        let raw = raw.unwrap_or(&empty);
        let mut c = WalConfig::default();
        if let Some(enabled) = raw.enabled {
            c.enabled = enabled;
        }
        let interval = match &raw.fsync_interval {
            None => DEFAULT_FSYNC_INTERVAL,
            Some(v) => {
                let d = humantime::parse_duration(v.trim()).map_err(|e| WalConfigError {
                    key: "fsync_interval",
                    message: format!("`{v}` is not a duration such as 100ms or 1s ({e})"),
                })?;
                if d.is_zero() {
                    return Err(WalConfigError {
                        key: "fsync_interval",
                        message: "must be greater than zero".into(),
                    });
                }
                d
            }
        };
        if let Some(v) = &raw.fsync {
            c.fsync = match v.trim() {
                "batch" => FsyncPolicy::Batch,
                "interval" => FsyncPolicy::Interval(interval),
                other => {
                    return Err(WalConfigError {
                        key: "fsync",
                        message: format!("`{other}` is not `batch` or `interval`"),
                    })
                }
            };
        }
        if let Some(b) = raw.segment_bytes {
            if b < MIN_SEGMENT_BYTES {
                return Err(WalConfigError {
                    key: "segment_bytes",
                    message: format!("{b} is below the minimum of {MIN_SEGMENT_BYTES} bytes"),
                });
            }
            c.segment_bytes = b;
        }
        match raw.max_bytes {
            Some(b) if b < c.segment_bytes => {
                return Err(WalConfigError {
                    key: "max_bytes",
                    message: format!(
                    "{b} is below segment_bytes ({}): the log needs room for at least one segment",
                    c.segment_bytes
                ),
                })
            }
            Some(b) => c.max_bytes = b,
            // A segment size set above the default cap raises the cap with it.
            None => c.max_bytes = DEFAULT_MAX_BYTES.max(c.segment_bytes),
        }
        Ok(c)
    }
}
