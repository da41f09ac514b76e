//! The one error a load or a run ends with: a PROTOCOL §4 reason code (what the seller
//! reports with `reject_work`) and a message for people.

use bitwrk_protocol::ReasonCode;

/// Why a load or run did not produce outputs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct RunError {
    pub reason: ReasonCode,
    pub message: String,
}

impl RunError {
    pub fn new(reason: ReasonCode, message: impl Into<String>) -> RunError {
        RunError { reason, message: message.into() }
    }
    pub fn bad_input(message: impl Into<String>) -> RunError {
        RunError::new(ReasonCode::BadInput, message)
    }
    pub fn unsupported(message: impl Into<String>) -> RunError {
        RunError::new(ReasonCode::Unsupported, message)
    }
    pub fn internal(message: impl Into<String>) -> RunError {
        RunError::new(ReasonCode::Internal, message)
    }
}

/// A failure to set the sandbox up (engine, cache directory, ticker thread).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot configure wasmtime: {0}")]
    Engine(String),
    #[error("cannot use the compile cache directory {path}: {source}")]
    CacheDir { path: std::path::PathBuf, source: std::io::Error },
    #[error("cannot start the epoch ticker thread: {0}")]
    Ticker(std::io::Error),
}
