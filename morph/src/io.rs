//! Self-describing model directories (burn-style): `config.json` holds the
//! `MorphConfig`, vocabularies, training statistics (size histogram,
//! class frequencies, coordinate std) and the condition's normalisation;
//! `model.safetensors` holds the EMA weights. Both written atomically.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use datasets::molbatch::{MolRecord, MolSet, MolStats, MolVocab};
use serde::{Deserialize, Serialize};

use crate::config::MorphConfig;
use crate::error::{MorphError, Result};
use crate::model::{MorphNet, NetDims};

pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// Scalar condition and its normalisation `(v − mean) / std`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CondInfo {
    pub name: String,
    pub mean: f64,
    pub std: f64,
}

impl CondInfo {
    pub fn normalise(&self, v: f64) -> f64 {
        (v - self.mean) / self.std
    }
}

/// Everything besides the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    pub format: String,
    pub config: MorphConfig,
    pub vocab: MolVocab,
    pub stats: MolStats,
    pub condition: Option<CondInfo>,
    pub trained_steps: usize,
}

impl ModelMeta {
    pub fn new(config: MorphConfig, set: &MolSet, stats: &MolStats) -> Result<Self> {
        let condition = match &config.condition {
            None => None,
            Some(name) if name == "n_atoms" => {
                let ns: Vec<f64> = set.records.iter().map(|r| r.n_atoms() as f64).collect();
                let m = ns.iter().sum::<f64>() / ns.len().max(1) as f64;
                let s = (ns.iter().map(|v| (v - m).powi(2)).sum::<f64>() / ns.len().max(1) as f64)
                    .sqrt();
                Some(CondInfo {
                    name: name.clone(),
                    mean: m,
                    std: if s > 0.0 { s } else { 1.0 },
                })
            }
            Some(name) => {
                let (m, s) = stats.properties.get(name).copied().ok_or_else(|| {
                    MorphError::config(
                        "condition",
                        format!(
                            "property `{name}` is absent from the training data (have: {:?})",
                            stats.properties.keys().collect::<Vec<_>>()
                        ),
                    )
                })?;
                Some(CondInfo {
                    name: name.clone(),
                    mean: m,
                    std: if s > 0.0 { s } else { 1.0 },
                })
            }
        };
        Ok(Self {
            format: "cellmol-morph-1".into(),
            config,
            vocab: set.vocab.clone(),
            stats: stats.clone(),
            condition,
            trained_steps: 0,
        })
    }

    pub fn dims(&self) -> NetDims {
        let n = &self.config.net;
        NetDims {
            n_types: self.vocab.n_types(),
            n_charges: self.vocab.n_charges(),
            n_bonds: self.vocab.n_bonds(),
            hidden: n.hidden,
            n_layers: n.n_layers,
            n_mix: n.n_mix,
            coords_range: n.coords_range,
            agg_norm: n.agg_norm,
            bounded_mixture: n.bounded_mixture,
        }
    }

    /// Normalised condition value per record (`None` = unconditional / missing).
    pub fn cond_values(&self, recs: &[&MolRecord]) -> Vec<Option<f64>> {
        match &self.condition {
            None => vec![None; recs.len()],
            Some(c) if c.name == "n_atoms" => recs
                .iter()
                .map(|r| Some(c.normalise(r.n_atoms() as f64)))
                .collect(),
            Some(c) => recs
                .iter()
                .map(|r| r.properties.get(&c.name).map(|&v| c.normalise(v)))
                .collect(),
        }
    }
}

/// A loaded model.
pub struct ModelDir {
    pub meta: ModelMeta,
    pub net: MorphNet,
    pub path: PathBuf,
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|source| MorphError::Io {
        path: tmp.clone(),
        source,
    })?;
    std::fs::rename(&tmp, path).map_err(|source| MorphError::Io {
        path: path.to_path_buf(),
        source,
    })
}

impl ModelDir {
    pub fn save(dir: &Path, meta: &ModelMeta, weights: &HashMap<String, Tensor>) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|source| MorphError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let json = serde_json::to_vec_pretty(meta).map_err(|e| MorphError::File {
            path: dir.join(CONFIG_FILE),
            message: e.to_string(),
        })?;
        let wpath = dir.join(WEIGHTS_FILE);
        let tmp = dir.join(format!(".{WEIGHTS_FILE}.tmp{}", std::process::id()));
        candle_core::safetensors::save(weights, &tmp)?;
        std::fs::rename(&tmp, &wpath).map_err(|source| MorphError::Io {
            path: wpath.clone(),
            source,
        })?;
        write_atomic(&dir.join(CONFIG_FILE), &json)
    }

    pub fn load(dir: &Path, dev: &Device) -> Result<Self> {
        // A run stopped by a signal holds a checkpoint but no model: say so.
        if let datasets::train::RunState::Interrupted { step } =
            datasets::train::RunDir::new(dir).state()?
        {
            return Err(MorphError::File {
                path: dir.to_path_buf(),
                message: format!(
                    "training was interrupted at step {step} and never finished; resume it with `cellmol morph fit --resume`"
                ),
            });
        }
        let cpath = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&cpath).map_err(|source| MorphError::Io {
            path: cpath.clone(),
            source,
        })?;
        let meta: ModelMeta = serde_json::from_str(&text).map_err(|e| MorphError::File {
            path: cpath.clone(),
            message: format!("not a Morph model config: {e}"),
        })?;
        meta.config.validate()?;
        let wpath = dir.join(WEIGHTS_FILE);
        let tensors =
            candle_core::safetensors::load(&wpath, dev).map_err(|e| MorphError::File {
                path: wpath.clone(),
                message: e.to_string(),
            })?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, dev);
        let net = MorphNet::with_backbone(meta.dims(), meta.config.net.backbone_spec(), vb)
            .map_err(|e| MorphError::File {
                path: wpath,
                message: format!("weights do not match config.json: {e}"),
            })?;
        Ok(Self {
            meta,
            net,
            path: dir.to_path_buf(),
        })
    }
}
