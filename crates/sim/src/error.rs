//! Why the simulator could not run or send.

use std::path::PathBuf;

/// Why `faultline simulate` failed.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error("invalid arguments: {0}")]
    InvalidArgs(String),
    #[error("refusing to send to non-loopback host {0:?} without --allow-remote")]
    RemoteRefused(String),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("send failed: {0}")]
    Send(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("JSON encoding failed: {0}")]
    Json(#[from] serde_json::Error),
}

impl SimulateError {
    /// The process exit code: 2 for invalid usage, 1 for a failure while running.
    pub fn exit_code(&self) -> u8 {
        match self {
            SimulateError::InvalidArgs(_) | SimulateError::RemoteRefused(_) => 2,
            _ => 1,
        }
    }
}
