//! Machine-readable training metrics: one JSON object per line.
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::{DatasetsError, Result};

/// Appends JSON lines (`{"step": .., "loss": .., ...}`) and flushes each one,
/// so `tail -f` and a crash both see every line written so far.
pub struct MetricsLog {
    path: PathBuf,
    out: BufWriter<File>,
}

impl MetricsLog {
    /// Open `path`; `append` keeps earlier lines (a resumed run), otherwise the
    /// file is truncated.
    pub fn open(path: &Path, append: bool) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(path)
            .map_err(|source| DatasetsError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(MetricsLog {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
        })
    }

    pub fn log(&mut self, record: &serde_json::Value) -> Result<()> {
        let io = |source| DatasetsError::Io {
            path: self.path.clone(),
            source,
        };
        serde_json::to_writer(&mut self.out, record).map_err(|e| DatasetsError::Io {
            path: self.path.clone(),
            source: e.into(),
        })?;
        self.out.write_all(b"\n").map_err(io)?;
        self.out.flush().map_err(|source| DatasetsError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

/// Read a metrics log back (for plots and resumed runs); bad lines are errors
/// naming the line number.
pub fn read_metrics(path: &Path) -> Result<Vec<serde_json::Value>> {
    let text = std::fs::read_to_string(path).map_err(|source| DatasetsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| {
                DatasetsError::RunDir(format!(
                    "{}:{}: not a JSON line: {e}",
                    path.display(),
                    i + 1
                ))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_and_read_back() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let p = tmp.path().join("metrics.jsonl");
        let mut log = MetricsLog::open(&p, false)?;
        log.log(&serde_json::json!({"step": 1, "loss": 2.5}))?;
        drop(log);
        let mut log = MetricsLog::open(&p, true)?;
        log.log(&serde_json::json!({"step": 2, "loss": 1.5}))?;
        let rows = read_metrics(&p)?;
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1]["loss"], 1.5);
        std::fs::write(&p, "{\"step\": 1}\nnot json\n")?;
        let err = read_metrics(&p).unwrap_err().to_string();
        assert!(err.contains(":2:"), "{err}");
        Ok(())
    }
}
