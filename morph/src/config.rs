//! `MorphConfig`: every hyper-parameter of the network, the interpolant, the
//! training loop and the sampler (`design/morph.md`). Loaded from TOML, CLI
//! flags override fields, `validate()` names the bad value. The device is not
//! a config field.
use serde::{Deserialize, Serialize};

use crate::error::{MorphError, Result};
use crate::semla::{BackboneSpec, SemlaDims};

/// Equivariant backbone of the network (`net.backbone`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackboneKind {
    /// EGNN (EDM variant), `morph::egnn`.
    #[default]
    Egnn,
    /// Semla-style equivariant transformer, `morph::semla`.
    Semla,
}

/// Network size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetConfig {
    /// `"egnn"` or `"semla"`; configs written before this field existed load
    /// as `"egnn"`.
    #[serde(default)]
    pub backbone: BackboneKind,
    /// Hidden width of node features, ≥ 8.
    pub hidden: usize,
    /// Number of EGNN layers, ≥ 1.
    pub n_layers: usize,
    /// Gaussian-mixture components of the insertion head, ≥ 1.
    pub n_mix: usize,
    /// tanh range of coordinate updates (EDM uses 15).
    pub coords_range: f64,
    /// Messages are summed and divided by this factor (> 0).
    pub agg_norm: f64,
    /// Heads v2: `tanh`-bounded mixture-mean weights and ln(1 + d²) distance
    /// features in the messages and pair heads (true for new
    /// models; configs written before this field existed load as `false`).
    #[serde(default)]
    pub bounded_mixture: bool,
    /// Semla only: invariant attention heads, ≥ 1, must divide `hidden`.
    pub n_heads: usize,
    /// Semla only: equivariant vector channels per atom, ≥ 1.
    pub n_vec: usize,
}

impl NetConfig {
    /// The backbone the network is built with.
    pub fn backbone_spec(&self) -> BackboneSpec {
        match self.backbone {
            BackboneKind::Egnn => BackboneSpec::Egnn,
            BackboneKind::Semla => BackboneSpec::Semla(SemlaDims {
                n_heads: self.n_heads,
                n_vec: self.n_vec,
            }),
        }
    }
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            hidden: 256,
            n_layers: 9,
            n_mix: 10,
            coords_range: 15.0,
            agg_norm: 10.0,
            bounded_mixture: true,
            backbone: BackboneKind::Egnn,
            n_heads: 8,
            n_vec: 16,
        }
    }
}

/// Interpolant and matching (training targets).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlowConfig {
    pub c_move: f64,
    pub c_sub: f64,
    pub c_ins: f64,
    pub c_del: f64,
    /// Schedule exponent for insertion/deletion (κ(t) = 3t^{2p} − 2t^{3p}).
    pub p_indel: f64,
    /// Schedule exponent for type/charge/bond substitution.
    pub p_sub: f64,
    /// Std of the position noise on x_t (normalised units).
    pub pos_noise: f64,
    /// Std of the noise around x1 where inserted atoms start.
    pub ins_noise: f64,
    /// Prior atom count is drawn from U[max(n_min − extra, 3), n_max + extra].
    pub prior_extra: usize,
    /// Probability that a training molecule carries a scaffold: a random
    /// connected subset of its atoms (1 to half of them) pinned in the
    /// matching and kept clean (data positions, types, charges, bonds) at
    /// every t, as `morph sample --scaffold` keeps them. 0 = off.
    pub scaffold_frac: f64,
}

impl Default for FlowConfig {
    fn default() -> Self {
        Self {
            c_move: 1.0,
            c_sub: 0.0,
            c_ins: 1e8,
            c_del: 0.0,
            p_indel: 0.8,
            p_sub: 1.5,
            pos_noise: 0.2,
            ins_noise: 0.25,
            prior_extra: 5,
            scaffold_frac: 0.0,
        }
    }
}

/// Optimisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub batch_size: usize,
    /// Peak AdamW learning rate.
    pub lr: f64,
    pub weight_decay: f64,
    /// Linear warm-up steps, then cosine decay to `lr_min_frac · lr`.
    pub warmup_steps: usize,
    pub lr_min_frac: f64,
    /// Total optimisation steps (the cosine horizon).
    pub steps: usize,
    /// Stop early after this many minutes of wall time (0 = no limit).
    pub max_minutes: f64,
    /// EMA decay of the weights written to the model directory, in [0, 1).
    pub ema_decay: f64,
    /// Global gradient-norm clip (0 = off).
    pub grad_clip: f64,
    /// Probability of dropping the condition (classifier-free guidance).
    pub cond_drop: f64,
    /// Fraction of molecules held out for validation loss.
    pub val_frac: f64,
    /// Write a checkpoint every this many steps (0 = only at the end).
    pub checkpoint_every: usize,
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            batch_size: 64,
            lr: 5e-4,
            weight_decay: 1e-12,
            warmup_steps: 500,
            lr_min_frac: 0.05,
            steps: 200_000,
            max_minutes: 0.0,
            ema_decay: 0.999,
            grad_clip: 1.0,
            cond_drop: 0.1,
            val_frac: 0.05,
            checkpoint_every: 5000,
            seed: 0,
        }
    }
}

/// Sampling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SampleConfig {
    /// Integration steps on `t_k = 1 − logspace(0, −3, steps)`.
    pub steps: usize,
    /// Size cap = training n_max + this.
    pub max_extra: usize,
    /// Minimum atoms kept.
    pub min_atoms: usize,
    /// Molecules integrated together.
    pub batch_size: usize,
}

impl Default for SampleConfig {
    fn default() -> Self {
        Self {
            steps: 100,
            max_extra: 10,
            min_atoms: 2,
            batch_size: 100,
        }
    }
}

/// Everything of a Morph run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct MorphConfig {
    pub net: NetConfig,
    pub flow: FlowConfig,
    pub train: TrainConfig,
    pub sample: SampleConfig,
    /// Scalar property to condition on (SDF data field, e.g. `gap`), or none.
    pub condition: Option<String>,
}

impl MorphConfig {
    /// Named presets: `quick` (CPU, minutes) and `paper` (GPU, EDM-sized EGNN).
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "paper" => Ok(Self::default()),
            "quick" => Ok(Self {
                net: NetConfig {
                    hidden: 64,
                    n_layers: 4,
                    n_mix: 10,
                    ..NetConfig::default()
                },
                train: TrainConfig {
                    batch_size: 32,
                    lr: 1e-3,
                    warmup_steps: 100,
                    // 0.25 s/step on one core (H = 64 × 4 layers, batch 32,
                    // QM9): 5 000 steps is about 21 minutes, inside the
                    // 30-minute CPU budget; max_minutes guards slower machines.
                    steps: 5000,
                    max_minutes: 25.0,
                    ema_decay: 0.99,
                    checkpoint_every: 1000,
                    ..TrainConfig::default()
                },
                ..Self::default()
            }),
            "tiny" => Ok(Self {
                net: NetConfig {
                    hidden: 16,
                    n_layers: 2,
                    n_mix: 3,
                    ..NetConfig::default()
                },
                train: TrainConfig {
                    batch_size: 4,
                    lr: 1e-3,
                    warmup_steps: 2,
                    steps: 10,
                    ema_decay: 0.9,
                    checkpoint_every: 0,
                    ..TrainConfig::default()
                },
                sample: SampleConfig {
                    steps: 10,
                    ..SampleConfig::default()
                },
                ..Self::default()
            }),
            other => Err(MorphError::config(
                "preset",
                format!("expected quick, paper or tiny, but is `{other}`"),
            )),
        }
    }

    pub fn from_toml(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| MorphError::config("config TOML", e.to_string()))
    }

    /// Parse TOML laid over `base` (a preset): keys the file sets replace
    /// the preset's, everything else keeps the preset's value.
    pub fn from_toml_over(text: &str, base: &MorphConfig) -> Result<Self> {
        datasets::train::toml_over(base, text).map_err(|e| MorphError::config("config TOML", e))
    }

    pub fn validate(&self) -> Result<()> {
        let n = &self.net;
        let chk = |ok: bool, p: &str, m: String| {
            if ok {
                Ok(())
            } else {
                Err(MorphError::config(p, m))
            }
        };
        chk(
            n.hidden >= 8,
            "net.hidden",
            format!("should be >= 8, but is {}", n.hidden),
        )?;
        chk(
            n.n_layers >= 1,
            "net.n_layers",
            format!("should be >= 1, but is {}", n.n_layers),
        )?;
        chk(
            n.n_mix >= 1,
            "net.n_mix",
            format!("should be >= 1, but is {}", n.n_mix),
        )?;
        chk(
            n.coords_range > 0.0,
            "net.coords_range",
            format!("should be > 0, but is {}", n.coords_range),
        )?;
        chk(
            n.agg_norm > 0.0,
            "net.agg_norm",
            format!("should be > 0, but is {}", n.agg_norm),
        )?;
        if n.backbone == BackboneKind::Semla {
            chk(
                n.n_heads >= 1 && n.hidden % n.n_heads.max(1) == 0,
                "net.n_heads",
                format!(
                    "should be >= 1 and divide net.hidden = {} (backbone = \"semla\"), but is {}",
                    n.hidden, n.n_heads
                ),
            )?;
            chk(
                n.n_vec >= 1,
                "net.n_vec",
                format!("should be >= 1 (backbone = \"semla\"), but is {}", n.n_vec),
            )?;
        }
        let f = &self.flow;
        for (name, v) in [
            ("flow.c_move", f.c_move),
            ("flow.c_sub", f.c_sub),
            ("flow.c_ins", f.c_ins),
            ("flow.c_del", f.c_del),
        ] {
            chk(
                v >= 0.0 && v.is_finite(),
                name,
                format!("should be a finite cost >= 0, but is {v}"),
            )?;
        }
        chk(
            f.p_indel > 0.0,
            "flow.p_indel",
            format!("should be > 0, but is {}", f.p_indel),
        )?;
        chk(
            f.p_sub > 0.0,
            "flow.p_sub",
            format!("should be > 0, but is {}", f.p_sub),
        )?;
        chk(
            f.pos_noise >= 0.0,
            "flow.pos_noise",
            format!("should be >= 0, but is {}", f.pos_noise),
        )?;
        chk(
            (0.0..=1.0).contains(&f.scaffold_frac),
            "flow.scaffold_frac",
            format!("should be in [0, 1], but is {}", f.scaffold_frac),
        )?;
        chk(
            f.ins_noise >= 0.0,
            "flow.ins_noise",
            format!("should be >= 0, but is {}", f.ins_noise),
        )?;
        let t = &self.train;
        chk(
            t.batch_size >= 1,
            "train.batch_size",
            format!("should be >= 1, but is {}", t.batch_size),
        )?;
        chk(
            t.lr > 0.0,
            "train.lr",
            format!("should be > 0, but is {}", t.lr),
        )?;
        chk(
            t.steps >= 1,
            "train.steps",
            format!("should be >= 1, but is {}", t.steps),
        )?;
        chk(
            (0.0..1.0).contains(&t.ema_decay),
            "train.ema_decay",
            format!("should be in [0, 1), but is {}", t.ema_decay),
        )?;
        chk(
            (0.0..1.0).contains(&t.cond_drop),
            "train.cond_drop",
            format!("should be in [0, 1), but is {}", t.cond_drop),
        )?;
        chk(
            (0.0..1.0).contains(&t.val_frac),
            "train.val_frac",
            format!("should be in [0, 1), but is {}", t.val_frac),
        )?;
        chk(
            (0.0..=1.0).contains(&t.lr_min_frac),
            "train.lr_min_frac",
            format!("should be in [0, 1], but is {}", t.lr_min_frac),
        )?;
        chk(
            t.grad_clip >= 0.0,
            "train.grad_clip",
            format!("should be >= 0, but is {}", t.grad_clip),
        )?;
        chk(
            t.max_minutes >= 0.0,
            "train.max_minutes",
            format!("should be >= 0, but is {}", t.max_minutes),
        )?;
        let s = &self.sample;
        chk(
            s.steps >= 2,
            "sample.steps",
            format!("should be >= 2, but is {}", s.steps),
        )?;
        chk(
            s.min_atoms >= 1,
            "sample.min_atoms",
            format!("should be >= 1, but is {}", s.min_atoms),
        )?;
        chk(
            s.batch_size >= 1,
            "sample.batch_size",
            format!("should be >= 1, but is {}", s.batch_size),
        )?;
        Ok(())
    }
}

/// `κ(t) = 3t^{2p} − 2t^{3p}` (smooth monotone schedule on [0, 1]).
pub fn kappa(t: f64, p: f64) -> f64 {
    let t = t.clamp(0.0, 1.0);
    3.0 * t.powf(2.0 * p) - 2.0 * t.powf(3.0 * p)
}

/// Hazard rate `λ(t) = κ'(t) / (1 − κ(t))`.
pub fn hazard(t: f64, p: f64) -> f64 {
    let t = t.clamp(1e-9, 1.0 - 1e-9);
    let d = 6.0 * p * t.powf(2.0 * p - 1.0) - 6.0 * p * t.powf(3.0 * p - 1.0);
    d / (1.0 - kappa(t, p)).max(1e-9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_validate_and_roundtrip() {
        for p in ["quick", "paper", "tiny"] {
            let c = MorphConfig::preset(p).unwrap();
            c.validate().unwrap();
            let s = toml::to_string(&c).unwrap();
            assert_eq!(MorphConfig::from_toml(&s).unwrap(), c);
        }
        let mut c = MorphConfig::default();
        c.train.ema_decay = 1.3;
        assert!(c.validate().unwrap_err().to_string().contains("1.3"));
        assert!(MorphConfig::preset("huge").is_err());
    }

    #[test]
    fn config_file_is_laid_over_the_preset() {
        let quick = MorphConfig::preset("quick").unwrap();
        let c = MorphConfig::from_toml_over("[train]\nsteps = 30\n", &quick).unwrap();
        assert_eq!(c.train.steps, 30);
        // everything the file leaves out keeps the preset's value, not the paper default
        assert_eq!(c.net, quick.net);
        assert_eq!(c.train.batch_size, quick.train.batch_size);
        assert_ne!(c.net, MorphConfig::default().net);
        let e = MorphConfig::from_toml_over("[net]\nhiden = 3\n", &quick).unwrap_err();
        assert!(e.to_string().contains("hiden"), "{e}");
    }

    #[test]
    fn backbone_key_defaults_parses_and_validates() {
        // configs written before `net.backbone` existed load as EGNN
        let old =
            "[net]\nhidden = 32\nn_layers = 2\nn_mix = 3\ncoords_range = 15.0\nagg_norm = 10.0\n";
        let c = MorphConfig::from_toml(old).unwrap();
        assert_eq!(c.net.backbone, BackboneKind::Egnn);
        assert_eq!(c.net.backbone_spec(), BackboneSpec::Egnn);
        let json = r#"{"net": {"hidden": 32, "n_layers": 2, "n_mix": 3, "coords_range": 15.0, "agg_norm": 10.0}}"#;
        let c: MorphConfig = serde_json::from_str(json).unwrap();
        assert_eq!(c.net.backbone, BackboneKind::Egnn);
        // laid over a preset
        let tiny = MorphConfig::preset("tiny").unwrap();
        let c = MorphConfig::from_toml_over("[net]\nbackbone = \"semla\"\nn_heads = 4\n", &tiny)
            .unwrap();
        c.validate().unwrap();
        assert_eq!(c.net.hidden, tiny.net.hidden);
        assert_eq!(
            c.net.backbone_spec(),
            BackboneSpec::Semla(SemlaDims {
                n_heads: 4,
                n_vec: tiny.net.n_vec
            })
        );
        let s = toml::to_string(&c).unwrap();
        assert!(s.contains("backbone = \"semla\""), "{s}");
        assert_eq!(MorphConfig::from_toml(&s).unwrap(), c);
        // heads must divide the width, only checked for Semla
        let mut bad = c.clone();
        bad.net.n_heads = 3;
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("net.n_heads") && e.contains("16"), "{e}");
        bad.net.backbone = BackboneKind::Egnn;
        bad.validate().unwrap();
        let mut bad = c.clone();
        bad.net.n_vec = 0;
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("net.n_vec"), "{e}");
        let e = MorphConfig::from_toml_over("[net]\nbackbone = \"transformer\"\n", &tiny)
            .unwrap_err()
            .to_string();
        assert!(e.contains("transformer") && e.contains("semla"), "{e}");
    }

    #[test]
    fn schedule_and_hazard() {
        for p in [0.8, 1.5] {
            assert!(kappa(0.0, p).abs() < 1e-12 && (kappa(1.0, p) - 1.0).abs() < 1e-12);
            // λ = κ'/(1-κ) against a finite difference.
            let t = 0.37;
            let h = 1e-6;
            let d = (kappa(t + h, p) - kappa(t - h, p)) / (2.0 * h);
            assert!((hazard(t, p) - d / (1.0 - kappa(t, p))).abs() < 1e-5);
        }
    }
}
