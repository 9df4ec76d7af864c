//! Errors of the datasets crate. Every message names the file, the HDF5 path
//! (or obs column / label) and what was expected.
use std::path::PathBuf;

pub type Result<T, E = DatasetsError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum DatasetsError {
    #[error("{file}: {path}: {message}")]
    H5 {
        file: PathBuf,
        path: String,
        message: String,
    },
    #[error("{file}: {path}: expected {expected}, found {found}")]
    Format {
        file: PathBuf,
        path: String,
        expected: String,
        found: String,
    },
    #[error("{context}: shape mismatch: expected {expected}, found {found}")]
    Shape {
        context: String,
        expected: String,
        found: String,
    },
    #[error("invalid {param}: {message}")]
    InvalidConfig { param: String, message: String },
    #[error("screen: {0}")]
    Screen(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    RunDir(String),
    #[error("{dir}: stopped by signal {signal} at step {step}; checkpoint written, continue with --resume")]
    Interrupted {
        dir: PathBuf,
        step: u64,
        signal: i32,
    },
}
