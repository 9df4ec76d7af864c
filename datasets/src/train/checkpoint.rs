//! Run directories and atomic checkpoints.
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{DatasetsError, Result};

/// Written last into a finished model directory.
pub const COMPLETE_MARKER: &str = "COMPLETE";
const CHECKPOINT_DIR: &str = "checkpoint";
const STATE_FILE: &str = "state.json";

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DatasetsError + '_ {
    move |source| DatasetsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A training checkpoint: the step, the trainer's serialisable state (config,
/// RNG state, anything else) and named binary blobs (weights and optimiser
/// moments as safetensors bytes).
#[derive(Debug, Clone, Default)]
pub struct Checkpoint {
    pub step: u64,
    pub state: serde_json::Value,
    pub files: Vec<(String, Vec<u8>)>,
}

#[derive(Serialize, Deserialize)]
struct StateFile {
    step: u64,
    state: serde_json::Value,
    files: Vec<String>,
}

impl Checkpoint {
    pub fn file(&self, name: &str) -> Option<&[u8]> {
        self.files
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.as_slice())
    }
}

/// What a run directory holds.
#[derive(Debug)]
pub enum RunState {
    Fresh,
    Interrupted { step: u64 },
    Finished,
}

/// A model / run directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        RunDir { path: path.into() }
    }

    pub fn state(&self) -> Result<RunState> {
        if self.path.join(COMPLETE_MARKER).exists() {
            return Ok(RunState::Finished);
        }
        let state = self.path.join(CHECKPOINT_DIR).join(STATE_FILE);
        if state.exists() {
            let step = read_state(&state)?.step;
            return Ok(RunState::Interrupted { step });
        }
        Ok(RunState::Fresh)
    }

    /// Decide how a `fit` may use this directory. Returns the checkpoint to
    /// resume from, if any. Refuses to touch a finished model or an
    /// interrupted run unless told (`force` starts over, `resume` continues;
    /// `resume` on a fresh directory simply starts).
    pub fn prepare(&self, resume: bool, force: bool) -> Result<Option<Checkpoint>> {
        let dir = self.path.display();
        match self.state()? {
            RunState::Finished if force => self.clear()?,
            RunState::Finished => {
                return Err(DatasetsError::RunDir(format!(
                    "{dir} holds a finished model; pass --force to overwrite it or choose another -o"
                )))
            }
            RunState::Interrupted { .. } if resume => return self.load_checkpoint().map(Some),
            RunState::Interrupted { step } if !force => {
                return Err(DatasetsError::RunDir(format!(
                    "{dir} holds a run interrupted at step {step}; pass --resume to continue it or --force to start over"
                )))
            }
            RunState::Interrupted { .. } => self.clear()?,
            // `--resume` on a run that never started starts it: batch scripts
            // pass --resume on every (re)start of a task.
            RunState::Fresh => {
                if self.path.exists() && fs::read_dir(&self.path).map_err(io_err(&self.path))?.next().is_some() && !force {
                    return Err(DatasetsError::RunDir(format!(
                        "{dir} exists and is not a cellmol run directory; pass --force or choose another -o"
                    )));
                }
            }
        }
        fs::create_dir_all(&self.path).map_err(io_err(&self.path))?;
        Ok(None)
    }

    fn clear(&self) -> Result<()> {
        if self.path.exists() {
            fs::remove_dir_all(&self.path).map_err(io_err(&self.path))?;
        }
        Ok(())
    }

    /// Write a checkpoint atomically: into `checkpoint.tmp/`, then swap it in
    /// for `checkpoint/` with renames, so a kill at any moment leaves either
    /// the old or the new checkpoint complete.
    pub fn save_checkpoint(&self, ckpt: &Checkpoint) -> Result<()> {
        fs::create_dir_all(&self.path).map_err(io_err(&self.path))?;
        let tmp = self.path.join("checkpoint.tmp");
        let old = self.path.join("checkpoint.old");
        let dst = self.path.join(CHECKPOINT_DIR);
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
        }
        fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        for (name, bytes) in &ckpt.files {
            let p = tmp.join(name);
            fs::write(&p, bytes).map_err(io_err(&p))?;
        }
        let state = StateFile {
            step: ckpt.step,
            state: ckpt.state.clone(),
            files: ckpt.files.iter().map(|(n, _)| n.clone()).collect(),
        };
        let p = tmp.join(STATE_FILE);
        let json = serde_json::to_vec_pretty(&state)
            .map_err(|e| DatasetsError::RunDir(format!("{}: {e}", p.display())))?;
        fs::write(&p, json).map_err(io_err(&p))?;
        if dst.exists() {
            if old.exists() {
                fs::remove_dir_all(&old).map_err(io_err(&old))?;
            }
            fs::rename(&dst, &old).map_err(io_err(&dst))?;
        }
        fs::rename(&tmp, &dst).map_err(io_err(&tmp))?;
        if old.exists() {
            fs::remove_dir_all(&old).map_err(io_err(&old))?;
        }
        Ok(())
    }

    pub fn load_checkpoint(&self) -> Result<Checkpoint> {
        let mut dir = self.path.join(CHECKPOINT_DIR);
        if !dir.join(STATE_FILE).exists()
            && self.path.join("checkpoint.old").join(STATE_FILE).exists()
        {
            // killed between the two renames: the previous checkpoint is whole
            dir = self.path.join("checkpoint.old");
        }
        let state = read_state(&dir.join(STATE_FILE))?;
        let mut files = Vec::with_capacity(state.files.len());
        for name in state.files {
            let p = dir.join(&name);
            let bytes = fs::read(&p).map_err(io_err(&p))?;
            files.push((name, bytes));
        }
        Ok(Checkpoint {
            step: state.step,
            state: state.state,
            files,
        })
    }

    /// Write one final artefact atomically (temp file + rename).
    pub fn write_file(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let dst = self.path.join(name);
        let tmp = self.path.join(format!(".{name}.tmp"));
        fs::write(&tmp, bytes).map_err(io_err(&tmp))?;
        fs::rename(&tmp, &dst).map_err(io_err(&dst))
    }

    /// Mark the run finished (after every artefact is written) and drop the
    /// checkpoint.
    pub fn finish(&self) -> Result<()> {
        self.write_file(COMPLETE_MARKER, b"")?;
        let ck = self.path.join(CHECKPOINT_DIR);
        if ck.exists() {
            fs::remove_dir_all(&ck).map_err(io_err(&ck))?;
        }
        Ok(())
    }

    /// For loaders (`predict`): refuse directories that are not finished.
    pub fn require_finished(&self) -> Result<()> {
        match self.state()? {
            RunState::Finished => Ok(()),
            RunState::Interrupted { step } => Err(DatasetsError::RunDir(format!(
                "{}: training was interrupted at step {step} and never finished; resume it with `fit --resume`",
                self.path.display()
            ))),
            RunState::Fresh => Err(DatasetsError::RunDir(format!("{}: not a finished cellmol model directory (no {COMPLETE_MARKER} marker)", self.path.display()))),
        }
    }
}

fn read_state(path: &Path) -> Result<StateFile> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        DatasetsError::RunDir(format!("{}: corrupt checkpoint state: {e}", path.display()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ckpt(step: u64) -> Checkpoint {
        Checkpoint {
            step,
            state: serde_json::json!({"lr": 0.1}),
            files: vec![("w.bin".into(), vec![1, 2, step as u8])],
        }
    }

    #[test]
    fn lifecycle_fresh_interrupted_finished() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let run = RunDir::new(tmp.path().join("model"));
        assert!(matches!(run.state()?, RunState::Fresh));
        assert!(run.prepare(false, false)?.is_none());
        run.save_checkpoint(&ckpt(5))?;
        run.save_checkpoint(&ckpt(7))?;
        assert!(matches!(run.state()?, RunState::Interrupted { step: 7 }));
        // an interrupted run is neither silently resumed nor overwritten
        let err = run.prepare(false, false).unwrap_err().to_string();
        assert!(err.contains("interrupted at step 7"), "{err}");
        assert!(run.require_finished().is_err());
        let back = run.prepare(true, false)?.expect("checkpoint");
        assert_eq!(back.step, 7);
        assert_eq!(back.file("w.bin"), Some(&[1u8, 2, 7][..]));
        assert_eq!(back.state["lr"], 0.1);
        run.write_file("weights.bin", b"final")?;
        run.finish()?;
        assert!(matches!(run.state()?, RunState::Finished));
        run.require_finished()?;
        let err = run.prepare(false, false).unwrap_err().to_string();
        assert!(err.contains("finished model"), "{err}");
        assert!(run.prepare(false, true)?.is_none());
        assert!(!run.path.join("weights.bin").exists());
        Ok(())
    }

    #[test]
    fn refuses_foreign_non_empty_dir() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        fs::write(tmp.path().join("notes.txt"), "mine")?;
        let run = RunDir::new(tmp.path());
        assert!(run.prepare(false, false).is_err());
        assert!(tmp.path().join("notes.txt").exists());
        Ok(())
    }

    #[test]
    fn survives_kill_between_renames() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let run = RunDir::new(tmp.path());
        run.save_checkpoint(&ckpt(3))?;
        fs::rename(
            tmp.path().join("checkpoint"),
            tmp.path().join("checkpoint.old"),
        )?;
        assert_eq!(run.load_checkpoint()?.step, 3);
        Ok(())
    }
}
