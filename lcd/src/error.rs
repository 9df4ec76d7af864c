//! Errors of the lcd crate. Messages name the file, the parameter or the
//! perturbation label and what was expected.
use std::path::PathBuf;

pub type Result<T, E = LcdError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum LcdError {
    /// A configuration value outside its documented range.
    #[error("invalid config: {param} {message}, but is {value}")]
    Config {
        param: String,
        value: String,
        message: String,
    },
    /// The training data or screen is unusable (no controls, NaN counts, ...).
    #[error("data: {0}")]
    Data(String),
    /// A perturbation label cannot be predicted by this model.
    #[error("perturbation {label:?}: {message}")]
    Perturbation { label: String, message: String },
    /// A model directory is missing, incomplete or inconsistent.
    #[error("model directory {dir}: {message}")]
    ModelDir { dir: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error(transparent)]
    Datasets(#[from] datasets::DatasetsError),
    /// Training diverged (non-finite loss).
    #[error("training diverged at {stage} step {step}: loss is {loss}")]
    Diverged {
        stage: &'static str,
        step: usize,
        loss: f64,
    },
}

impl LcdError {
    pub(crate) fn config(param: &str, value: impl std::fmt::Display, message: &str) -> Self {
        LcdError::Config {
            param: param.into(),
            value: value.to_string(),
            message: message.into(),
        }
    }
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LcdError::Io {
            path: path.into(),
            source,
        }
    }
}
