//! Model directories. A finished directory holds
//! `config.toml` (the [`LcdConfig`] used), `model.json` (genes, perturbation
//! vocabulary, normalisation statistics, π, u, noise levels, seed),
//! `weights.safetensors` (`score.*` = stage 2, `stage1.*` = generators and π)
//! and `curves.jsonl` (training curves). It is written into a temporary
//! sibling directory and renamed into place, `model.json` last, so an
//! interrupted fit never leaves a directory that loads.
use std::path::{Path, PathBuf};

use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::config::LcdConfig;
use crate::model::LcdModel;
use crate::params::Params;
use crate::stage2::ScoreNet;
use crate::{LcdError, Result};

pub const META: &str = "model.json";
pub const WEIGHTS: &str = "weights.safetensors";
pub const CONFIG: &str = "config.toml";
pub const CURVES: &str = "curves.jsonl";

#[derive(Debug, Serialize, Deserialize)]
pub struct ModelMeta {
    pub format: String,
    pub noise_model: bool,
    pub genes: Vec<String>,
    pub vocabulary: Vec<String>,
    pub train_conditions: Vec<String>,
    pub mean_ctrl: Vec<f32>,
    pub std_all: Vec<f32>,
    pub pi: Vec<f32>,
    pub u: Vec<f32>,
    pub sigmas: Vec<f64>,
    pub hidden: usize,
    pub seed: u64,
    /// Free-form provenance (screen path, fold, ...).
    pub info: serde_json::Value,
}

const FORMAT: &str = "cellmol-lcd-1";

fn mdir(dir: &Path, message: impl Into<String>) -> LcdError {
    LcdError::ModelDir { dir: dir.into(), message: message.into() }
}

/// Whether `dir` holds a finished model.
pub fn is_finished(dir: &Path) -> bool {
    dir.join(META).is_file()
}

/// Refuse to overwrite a finished model (unless `force`), and refuse a path
/// that exists but is not a model directory.
pub fn check_output(dir: &Path, force: bool) -> Result<()> {
    if dir.exists() {
        if is_finished(dir) && !force {
            return Err(mdir(dir, "already holds a trained model (use --force to replace it)"));
        }
        if !dir.is_dir() {
            return Err(mdir(dir, "exists and is not a directory"));
        }
        let non_empty = std::fs::read_dir(dir).map(|mut r| r.next().is_some()).unwrap_or(true);
        if !is_finished(dir) && non_empty && !force {
            return Err(mdir(dir, "exists, is not empty and is not a finished model (use --force to replace it)"));
        }
    }
    Ok(())
}

impl LcdModel {
    /// Write the model directory atomically (see module docs).
    pub fn save(&self, dir: &Path, force: bool, info: serde_json::Value) -> Result<()> {
        check_output(dir, force)?;
        let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| LcdError::io(parent, e))?;
        let name = dir.file_name().ok_or_else(|| mdir(dir, "has no file name"))?.to_string_lossy().to_string();
        let tmp: PathBuf = parent.join(format!(".{name}.tmp-{}", std::process::id()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| LcdError::io(&tmp, e))?;
        }
        std::fs::create_dir_all(&tmp).map_err(|e| LcdError::io(&tmp, e))?;
        let result = self.write_into(&tmp, info);
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        if dir.exists() {
            let old = parent.join(format!(".{name}.old-{}", std::process::id()));
            std::fs::rename(dir, &old).map_err(|e| LcdError::io(dir, e))?;
            std::fs::rename(&tmp, dir).map_err(|e| LcdError::io(dir, e))?;
            let _ = std::fs::remove_dir_all(&old);
        } else {
            std::fs::rename(&tmp, dir).map_err(|e| LcdError::io(dir, e))?;
        }
        Ok(())
    }

    fn write_into(&self, dir: &Path, info: serde_json::Value) -> Result<()> {
        let w = |name: &str, bytes: &[u8]| -> Result<()> {
            std::fs::write(dir.join(name), bytes).map_err(|e| LcdError::io(dir.join(name), e))
        };
        w(CONFIG, self.cfg.to_toml().as_bytes())?;
        let mut curves = String::new();
        for c in &self.curves {
            curves.push_str(&serde_json::to_string(c).unwrap_or_default());
            curves.push('\n');
        }
        w(CURVES, curves.as_bytes())?;
        // Weights: stage 2 and (optionally) stage 1 in one safetensors file.
        let mut map = std::collections::HashMap::new();
        for (name, var) in self.net.params.names().iter().zip(self.net.params.vars()) {
            map.insert(format!("score.{name}"), var.as_tensor().clone());
        }
        if let Some(s1) = &self.stage1 {
            for (name, var) in s1.params.names().iter().zip(s1.params.vars()) {
                map.insert(format!("stage1.{name}"), var.as_tensor().clone());
            }
        }
        candle_core::safetensors::save(&map, dir.join(WEIGHTS))?;
        let meta = ModelMeta {
            format: FORMAT.into(),
            noise_model: self.cfg.noise_model,
            genes: self.genes.clone(),
            vocabulary: self.vocabulary.clone(),
            train_conditions: self.train_conditions.clone(),
            mean_ctrl: self.mean_ctrl.clone(),
            std_all: self.std_all.clone(),
            pi: self.pi.clone(),
            u: self.u.clone(),
            sigmas: self.net.sigmas.clone(),
            hidden: self.net.hidden,
            seed: self.seed,
            info,
        };
        let text = serde_json::to_string_pretty(&meta).map_err(|e| mdir(dir, e.to_string()))?;
        w(META, text.as_bytes())
    }

    /// Load a finished model directory onto `dev`.
    pub fn load(dir: &Path, dev: &Device) -> Result<(Self, serde_json::Value)> {
        if !dir.is_dir() {
            return Err(mdir(dir, "does not exist or is not a directory"));
        }
        let meta_path = dir.join(META);
        if !meta_path.is_file() {
            return Err(mdir(dir, format!("has no {META}: not a model directory or an interrupted fit")));
        }
        let text = std::fs::read_to_string(&meta_path).map_err(|e| LcdError::io(&meta_path, e))?;
        let meta: ModelMeta =
            serde_json::from_str(&text).map_err(|e| LcdError::Parse { path: meta_path.clone(), message: e.to_string() })?;
        if meta.format != FORMAT {
            return Err(mdir(dir, format!("format {:?}, expected {FORMAT:?}", meta.format)));
        }
        let cfg_path = dir.join(CONFIG);
        let cfg_text = std::fs::read_to_string(&cfg_path).map_err(|e| LcdError::io(&cfg_path, e))?;
        let cfg = LcdConfig::from_toml(&cfg_text, &cfg_path)?;
        let wpath = dir.join(WEIGHTS);
        if !wpath.is_file() {
            return Err(mdir(dir, format!("has no {WEIGHTS}")));
        }
        let params = Params::load(&wpath, "score.", dev)?;
        let d = meta.genes.len();
        let consistent = meta.mean_ctrl.len() == d
            && meta.std_all.len() == d
            && (!meta.noise_model || (meta.pi.len() == d && meta.u.len() == d));
        if !consistent {
            return Err(mdir(dir, "normalisation statistics do not match the gene list"));
        }
        let net = ScoreNet::from_params(params, d, meta.hidden, meta.vocabulary.len(), meta.sigmas.clone(), dev)?;
        let curves = std::fs::read_to_string(dir.join(CURVES))
            .map(|t| t.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
            .unwrap_or_default();
        let model = LcdModel {
            cfg,
            genes: meta.genes,
            vocabulary: meta.vocabulary,
            train_conditions: meta.train_conditions,
            mean_ctrl: meta.mean_ctrl,
            std_all: meta.std_all,
            pi: meta.pi,
            u: meta.u,
            net,
            stage1: None,
            curves,
            seed: meta.seed,
            device: dev.clone(),
        };
        Ok((model, meta.info))
    }
}
