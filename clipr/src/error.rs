//! Errors of the clipr crate. Messages name the file, the gene or the
//! parameter and what was expected.
use std::path::PathBuf;

pub type Result<T, E = CliprError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum CliprError {
    /// A parameter value outside its documented range.
    #[error("invalid {param}: {message}")]
    InvalidParam { param: String, message: String },
    /// Arrays whose shapes do not fit together.
    #[error("{context}: shape mismatch: expected {expected}, found {found}")]
    Shape {
        context: String,
        expected: String,
        found: String,
    },
    /// A gene name that is not in the model's gene list.
    #[error("gene {gene:?} is not among the {n_genes} genes of {context}")]
    UnknownGene {
        gene: String,
        n_genes: usize,
        context: String,
    },
    /// A linear-algebra step failed (singular or not positive definite).
    #[error("linear algebra in {context}: {message}")]
    Linalg { context: String, message: String },
    /// The fixed-point search did not converge.
    #[error("{context}: no fixed point after {steps} steps (max |f| = {residual:.3e}, tolerance {tol:.1e})")]
    NoConvergence {
        context: String,
        steps: usize,
        residual: f64,
        tol: f64,
    },
    /// Non-finite values where finite ones were expected.
    #[error("{context}: non-finite value ({what})")]
    NonFinite { context: String, what: String },
    /// Errors from the model backend (LCD / candle).
    #[error("model {context}: {message}")]
    Model { context: String, message: String },
    /// Errors from the datasets crate (h5ad I/O, simulators).
    #[error(transparent)]
    Datasets(#[from] datasets::DatasetsError),
    /// Errors from the lcd crate (model directories, tensors).
    #[error(transparent)]
    Lcd(#[from] lcd::LcdError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A malformed input table (effects.tsv, modules.tsv).
    #[error("{path}: line {line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// Export failures (plotting, formatting).
    #[error("writing {path}: {message}")]
    Export { path: PathBuf, message: String },
}

impl CliprError {
    pub(crate) fn linalg(context: &str, e: impl std::fmt::Display) -> Self {
        CliprError::Linalg {
            context: context.into(),
            message: e.to_string(),
        }
    }
    pub(crate) fn param(param: &str, message: impl Into<String>) -> Self {
        CliprError::InvalidParam {
            param: param.into(),
            message: message.into(),
        }
    }
}
