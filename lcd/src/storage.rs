//! Model directories. A finished directory holds
//! `config.toml` (the [`LcdConfig`] used), `model.json` (genes, perturbation
//! vocabulary, normalisation statistics, π, u, noise levels, seed),
//! `weights.safetensors` (`score.*` = stage 2, `stage1.*` = generators and π),
//! `curves.jsonl` (training curves, JSON lines) and, written last, the
//! `COMPLETE` marker of the shared run-directory mechanism
//! ([`datasets::train::RunDir`]): each file is written atomically (temp +
//! rename) and a directory without the marker (an interrupted fit, which
//! holds `checkpoint/` instead) never loads.
use std::path::Path;

use datasets::train::{RunDir, COMPLETE_MARKER};

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
    LcdError::ModelDir {
        dir: dir.into(),
        message: message.into(),
    }
}

/// Whether `dir` holds a finished model.
pub fn is_finished(dir: &Path) -> bool {
    dir.join(COMPLETE_MARKER).is_file()
}

impl LcdModel {
    /// Write a finished model directory (refusing to replace one unless
    /// `force`; see [`RunDir::prepare`]).
    pub fn save(&self, dir: &Path, force: bool, info: serde_json::Value) -> Result<()> {
        let run = RunDir::new(dir);
        run.prepare(false, force)?;
        self.save_run(&run, info, true)
    }

    /// Write the model into a prepared run directory and mark it finished
    /// (dropping its checkpoint). `write_curves = false` keeps the metrics log
    /// that [`LcdModel::fit_run`] appended during training.
    pub fn save_run(
        &self,
        run: &RunDir,
        info: serde_json::Value,
        write_curves: bool,
    ) -> Result<()> {
        std::fs::create_dir_all(&run.path).map_err(|e| LcdError::io(&run.path, e))?;
        self.write_into(run, info, write_curves)?;
        run.finish()?;
        Ok(())
    }

    fn write_into(&self, run: &RunDir, info: serde_json::Value, write_curves: bool) -> Result<()> {
        let dir = run.path.as_path();
        let w = |name: &str, bytes: &[u8]| -> Result<()> { Ok(run.write_file(name, bytes)?) };
        w(CONFIG, self.cfg.to_toml().as_bytes())?;
        if write_curves {
            let mut curves = String::new();
            for c in &self.curves {
                curves.push_str(&serde_json::to_string(c).unwrap_or_default());
                curves.push('\n');
            }
            w(CURVES, curves.as_bytes())?;
        }
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
        let tmp = dir.join(format!(".{WEIGHTS}.tmp"));
        candle_core::safetensors::save(&map, &tmp)?;
        std::fs::rename(&tmp, dir.join(WEIGHTS)).map_err(|e| LcdError::io(dir.join(WEIGHTS), e))?;
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
        RunDir::new(dir).require_finished()?;
        let meta_path = dir.join(META);
        if !meta_path.is_file() {
            return Err(mdir(
                dir,
                format!("has no {META}: not an LCD model directory"),
            ));
        }
        let text = std::fs::read_to_string(&meta_path).map_err(|e| LcdError::io(&meta_path, e))?;
        let meta: ModelMeta = serde_json::from_str(&text).map_err(|e| LcdError::Parse {
            path: meta_path.clone(),
            message: e.to_string(),
        })?;
        if meta.format != FORMAT {
            return Err(mdir(
                dir,
                format!("format {:?}, expected {FORMAT:?}", meta.format),
            ));
        }
        let cfg_path = dir.join(CONFIG);
        let cfg_text =
            std::fs::read_to_string(&cfg_path).map_err(|e| LcdError::io(&cfg_path, e))?;
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
            return Err(mdir(
                dir,
                "normalisation statistics do not match the gene list",
            ));
        }
        let net = ScoreNet::from_params(
            params,
            d,
            meta.hidden,
            meta.vocabulary.len(),
            meta.sigmas.clone(),
            dev,
        )?;
        // Directories written before `stage2.condition_path` existed have
        // neither the field (serde default: the paper network) nor the weights.
        let path = net.condition_path().map_err(|e| mdir(dir, e.to_string()))?;
        if path != cfg.stage2.condition_path {
            return Err(mdir(
                dir,
                format!(
                    "{CONFIG} says stage2.condition_path = {:?} but {WEIGHTS} holds a {:?} network",
                    cfg.stage2.condition_path, path
                ),
            ));
        }
        let curves = std::fs::read_to_string(dir.join(CURVES))
            .map(|t| {
                t.lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect()
            })
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
