//! Errors of the morph crate. Messages name the file, the field or value and
//! what was expected.
use std::path::PathBuf;

pub type Result<T, E = MorphError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum MorphError {
    #[error("invalid {param}: {message}")]
    InvalidConfig { param: String, message: String },
    #[error("{context}: {message}")]
    Data { context: String, message: String },
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tensor: {0}")]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Datasets(#[from] datasets::DatasetsError),
    #[error("flow expansion: {0}")]
    Expand(#[from] crate::expand::ExpandError),
}

impl MorphError {
    pub fn config(param: &str, message: impl Into<String>) -> Self {
        Self::InvalidConfig {
            param: param.to_string(),
            message: message.into(),
        }
    }
    pub fn data(context: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Data {
            context: context.into(),
            message: message.into(),
        }
    }
}
