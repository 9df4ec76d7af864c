//! The crate's single error type. Every parse error names the source (file
//! path or `<stream>`), the record index (0-based) and the 1-based line.
use std::path::PathBuf;

/// Errors from molecule I/O, conversion and chemistry.
#[derive(Debug, thiserror::Error)]
pub enum MolError {
    /// I/O failure on a file.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A record could not be parsed.
    #[error("{source_name}: record {record} (line {line}): {what}")]
    Parse {
        /// File path or `<stream>`.
        source_name: String,
        /// 0-based record index within the file.
        record: usize,
        /// 1-based line number within the file.
        line: usize,
        /// What was wrong / what was expected.
        what: String,
    },
    /// The input has no records at all.
    #[error("{source_name}: empty input (no records)")]
    Empty { source_name: String },
    /// A molecule violates an invariant (e.g. positions shape vs atoms).
    #[error("invalid molecule{}: {what}", title_suffix(.title))]
    Invalid { title: String, what: String },
    /// Bad configuration value.
    #[error("invalid config: {field} = {value}: {why}")]
    Config {
        field: String,
        value: String,
        why: String,
    },
    /// QM9 import problem.
    #[error("QM9 import {path}: row {row}: {what}")]
    Qm9 {
        path: PathBuf,
        row: usize,
        what: String,
    },
}

fn title_suffix(t: &str) -> String {
    if t.is_empty() {
        String::new()
    } else {
        format!(" '{t}'")
    }
}

impl MolError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        MolError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias.
pub type Result<T, E = MolError> = std::result::Result<T, E>;
