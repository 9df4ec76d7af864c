//! `LcdConfig`: every hyper-parameter of the two stages and the sampler.
//! `Default` (= the `paper` preset) holds the published settings of Lorch et
//! al. (2026), read from their reference code (see `shared/design/lcd.md`);
//! `quick` is a small preset that trains d = 50–100 screens on 2 CPU cores in
//! minutes. Configs are TOML; `validate()` names the bad value.
use serde::{Deserialize, Serialize};

use crate::{LcdError, Result};

/// Stage 1: per-environment generators and the ZIP measurement model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Stage1Config {
    /// Optimisation steps (paper 250 000), ≥ 1.
    pub steps: usize,
    /// Cells per environment and step, B (paper 64), ≥ 1.
    pub batch_cells: usize,
    /// Monte-Carlo latent draws per environment and step, M (paper 20 000), ≥ 1.
    pub mc_samples: usize,
    /// Draws per chunk of the B × M × d likelihood (bounds memory), ≥ 1.
    pub mc_chunk: usize,
    /// High temperature T_hi of the tempered marginal likelihood (20; 100 for very sparse data), ≥ 1.
    pub t_hi: f64,
    /// Peak Adam learning rate (3e-4), > 0.
    pub lr: f64,
    /// Linear warm-up steps (5 000).
    pub warmup: usize,
    /// Global gradient-norm clip (1.0), > 0.
    pub grad_clip: f64,
    /// Adam β2 (0.99; β1 is 0), in (0, 1).
    pub beta2: f64,
    /// Latent noise dimension and generator width (64), ≥ 1.
    pub width: usize,
    /// Residual blocks before the projection to d (4).
    pub res_blocks: usize,
    /// Residual blocks after the projection (2), each Dense(res_hidden) → SiLU → Dense(d).
    pub out_blocks: usize,
    /// Hidden width of the output residual blocks (256), ≥ 1.
    pub res_hidden: usize,
    /// Environments updated per step (0 = all; the paper uses 1).
    pub envs_per_step: usize,
    /// Latent states drawn per training environment for stage 2 (10 000), ≥ 2.
    pub latent_per_env: usize,
    /// Checkpoint interval for stage 1 (overrides the top-level `checkpoint_every`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_every: Option<usize>,
}

/// Stage 2: the score network and denoising score matching.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Stage2Config {
    /// Hidden width H (1024; 2048 for ~1000 perturbations), ≥ 1.
    pub hidden: usize,
    /// Optimisation steps (50 000), ≥ 1.
    pub steps: usize,
    /// States per batch, all from one environment (8192), ≥ 1.
    pub batch: usize,
    /// Peak AdamW learning rate, cosine-decayed to 0 (1e-3), > 0.
    pub lr: f64,
    /// Decoupled weight decay (0.3), ≥ 0.
    pub weight_decay: f64,
    /// Largest noise level σ_1 (10), > sigma_min.
    pub sigma_max: f64,
    /// Smallest noise level σ_L (0.01), > 0.
    pub sigma_min: f64,
    /// Number of geometric noise levels L (30), ≥ 2.
    pub n_levels: usize,
    /// Extra, linear path from the condition embedding `e` besides the
    /// paper's per-layer `Dense_l(e)` (`"none"` = the paper network; see
    /// [`ConditionPath`]).
    pub condition_path: ConditionPath,
    /// Checkpoint interval for stage 2 (overrides the top-level `checkpoint_every`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_every: Option<usize>,
}

/// How the condition embedding `e = Σ_{j∈S} e_j` reaches the drift besides
/// the paper's `Dense_l(e)` in each hidden layer. Both extra paths are linear
/// in `e` (hence additive over the targets of a combination), start at zero
/// (so the network at initialisation equals the paper network) and are not
/// weight-decayed (decay would shrink predicted effects towards control).
///
/// Rationale: for a shift intervention on a linear SDE the stationary law of
/// condition q is the control law translated by `m_q`, affine in the
/// indicator sum; its noised score is `f_q(x, σ) = f_0(x − m_q, σ)`. With
/// `e` only inside the tanh layers the response to `e_A + e_B` is not the
/// sum of the responses, and held-out doubles miss the additive shift.
///
/// Measured (quick preset, `linear` simulator d = 50, `--no-noise-model`,
/// held-out doubles, fold 0; energy distance LCD / `additive`): `none`
/// 2.6×, `shift` 2.5×, `output` 4.9×, `shift_only` 1.09× (folds 0–2:
/// 1.09×, 2.04×, 0.77×; mean 1.22×). With the per-layer `Dense_l(e)` still
/// present (`shift`) the network keeps routing effects through the tanh
/// layers and composition is barely better; decaying the embedding table as
/// well to penalise that route made it worse (3.6×). `shift_only` on the
/// `nonlinear` counts simulator (fold 0): 0.096 vs `additive` 0.162.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConditionPath {
    /// The paper network (Lorch et al. 2026).
    #[default]
    None,
    /// Translate the input by a learned `m(e) = e · W_shift` (`[H, d]`, no
    /// bias, zero-init): `f(x, σ, e) = f_net(x − m(e), σ, e)`. Exact
    /// composition for shift families of distributions.
    Shift,
    /// Only the input translation: no per-layer `Dense_l(e)`, so the
    /// condition acts on the drift purely as a translation (the exact model
    /// class for shift interventions on a linear SDE; cannot represent
    /// condition-dependent changes of shape).
    #[serde(rename = "shift_only")]
    ShiftOnly,
    /// Add `e · W_out` (`[H, d]`, no bias, zero-init) to the network output
    /// `F` (the same term at every noise level).
    Output,
}

/// Annealed Langevin sampling and decoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplerConfig {
    /// Euler–Maruyama steps per noise level K (500), ≥ 1.
    pub steps_per_level: usize,
    /// Step-size base: ε_i = step_base · (σ_i/σ_min)² (1e-6), > 0.
    pub step_base: f64,
    /// Chains per condition (1 000), ≥ 1.
    pub chains: usize,
    /// ZIP decodes per chain end point (5), ≥ 1.
    pub decodes_per_chain: usize,
}

/// Evaluation settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    /// At most this many cells per side for energy distance / MMD (subsampled), ≥ 2.
    pub max_cells: usize,
    /// Number of top differentially expressed genes (20), ≥ 1.
    pub n_de: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LcdConfig {
    /// `true`: two-stage model on raw counts; `false` (`--no-noise-model`):
    /// stage 2 directly on the expression in X (already normalised/continuous).
    pub noise_model: bool,
    pub stage1: Stage1Config,
    pub stage2: Stage2Config,
    pub sampler: SamplerConfig,
    pub eval: EvalConfig,
    /// Write a resumable checkpoint every this many optimisation steps, counted
    /// within each stage (500); 0 = only when a stop signal arrives. Applies to
    /// both stages unless `[stage1]` / `[stage2]` set their own
    /// `checkpoint_every`; `cellmol lcd fit --resume` continues from the latest
    /// checkpoint.
    pub checkpoint_every: usize,
}

impl Default for Stage1Config {
    fn default() -> Self {
        Stage1Config {
            steps: 250_000,
            batch_cells: 64,
            mc_samples: 20_000,
            mc_chunk: 5_000,
            t_hi: 20.0,
            lr: 3e-4,
            warmup: 5_000,
            grad_clip: 1.0,
            beta2: 0.99,
            width: 64,
            res_blocks: 4,
            out_blocks: 2,
            res_hidden: 256,
            envs_per_step: 1,
            latent_per_env: 10_000,
            checkpoint_every: None,
        }
    }
}
impl Default for Stage2Config {
    fn default() -> Self {
        Stage2Config {
            hidden: 1024,
            steps: 50_000,
            batch: 8192,
            lr: 1e-3,
            weight_decay: 0.3,
            sigma_max: 10.0,
            sigma_min: 0.01,
            n_levels: 30,
            condition_path: ConditionPath::None,
            checkpoint_every: None,
        }
    }
}
impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            steps_per_level: 500,
            step_base: 1e-6,
            chains: 1000,
            decodes_per_chain: 5,
        }
    }
}
impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            max_cells: 1000,
            n_de: 20,
        }
    }
}
impl Default for LcdConfig {
    fn default() -> Self {
        LcdConfig {
            noise_model: true,
            stage1: Stage1Config::default(),
            stage2: Stage2Config::default(),
            sampler: SamplerConfig::default(),
            eval: EvalConfig::default(),
            checkpoint_every: 500,
        }
    }
}

impl LcdConfig {
    /// The published settings (same as `Default`).
    pub fn paper() -> Self {
        Self::default()
    }
    /// Small settings for tests and laptops: d = 50–100 in minutes on 2 cores.
    pub fn quick() -> Self {
        LcdConfig {
            noise_model: true,
            stage1: Stage1Config {
                // 600 steps at lr 1e-3 left the per-environment generators
                // short of the perturbation effects (a training single kept
                // ~57 % of its shift) and LCD behind `additive`; 3 000 steps
                // at 3e-3 put it ahead (nonlinear d = 50 counts, fold 0:
                // energy distance 0.296 → 0.082, additive 0.162).
                steps: 3000,
                batch_cells: 32,
                mc_samples: 256,
                mc_chunk: 256,
                t_hi: 20.0,
                lr: 3e-3,
                warmup: 150,
                grad_clip: 1.0,
                beta2: 0.99,
                width: 64,
                res_blocks: 2,
                out_blocks: 1,
                res_hidden: 128,
                envs_per_step: 8,
                latent_per_env: 1000,
                checkpoint_every: None,
            },
            stage2: Stage2Config {
                hidden: 256,
                // 3 000 steps left held-out doubles at 16× additive's energy
                // distance on the linear simulator; 20 000 brought it to 2.7×
                // (a few minutes on 2 cores at d = 50).
                steps: 20_000,
                batch: 512,
                lr: 1e-3,
                weight_decay: 0.3,
                sigma_max: 10.0,
                sigma_min: 0.01,
                n_levels: 30,
                condition_path: ConditionPath::None,
                checkpoint_every: None,
            },
            // 200 chains (and 400 cells per side in the metrics) left the
            // energy distance of one held-out double varying from −0.005 to
            // 0.067 between chain draws of the same model (linear d = 50,
            // 200 test cells), more than the LCD–additive gap it measures;
            // 1 000 chains and 1 000 cells per side (the paper's protocol)
            // cost ~2 min of sampling per fold on one core.
            sampler: SamplerConfig {
                steps_per_level: 50,
                step_base: 1e-5,
                chains: 1000,
                decodes_per_chain: 5,
            },
            eval: EvalConfig {
                max_cells: 1000,
                n_de: 20,
            },
            checkpoint_every: 500,
        }
    }
    /// `quick` or `paper`.
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "quick" => Ok(Self::quick()),
            "paper" => Ok(Self::paper()),
            other => Err(LcdError::config(
                "preset",
                other,
                "should be `quick` or `paper`",
            )),
        }
    }
    pub fn from_toml(text: &str, path: &std::path::Path) -> Result<Self> {
        let cfg: LcdConfig = toml::from_str(text).map_err(|e| LcdError::Parse {
            path: path.into(),
            message: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }
    /// Parse TOML laid over `base` (a preset): keys the file sets replace
    /// the preset's, everything else keeps the preset's value.
    pub fn from_toml_over(text: &str, path: &std::path::Path, base: &LcdConfig) -> Result<Self> {
        let cfg: LcdConfig =
            datasets::train::toml_over(base, text).map_err(|message| LcdError::Parse {
                path: path.into(),
                message,
            })?;
        cfg.validate()?;
        Ok(cfg)
    }
    /// Checkpoint interval of stage 1 and stage 2 (0 = only on a stop request).
    pub fn checkpoint_intervals(&self) -> (usize, usize) {
        (
            self.stage1
                .checkpoint_every
                .unwrap_or(self.checkpoint_every),
            self.stage2
                .checkpoint_every
                .unwrap_or(self.checkpoint_every),
        )
    }
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// Check every documented range; the error names the field and value.
    pub fn validate(&self) -> Result<()> {
        fn pos_usize(name: &str, v: usize, min: usize) -> Result<()> {
            if v < min {
                return Err(LcdError::config(name, v, &format!("should be ≥ {min}")));
            }
            Ok(())
        }
        fn pos_f(name: &str, v: f64) -> Result<()> {
            if !(v.is_finite() && v > 0.0) {
                return Err(LcdError::config(name, v, "should be a finite number > 0"));
            }
            Ok(())
        }
        let s1 = &self.stage1;
        pos_usize("stage1.steps", s1.steps, 1)?;
        pos_usize("stage1.batch_cells", s1.batch_cells, 1)?;
        pos_usize("stage1.mc_samples", s1.mc_samples, 1)?;
        pos_usize("stage1.mc_chunk", s1.mc_chunk, 1)?;
        pos_usize("stage1.width", s1.width, 1)?;
        pos_usize("stage1.res_hidden", s1.res_hidden, 1)?;
        pos_usize("stage1.latent_per_env", s1.latent_per_env, 2)?;
        if !(s1.t_hi.is_finite() && s1.t_hi >= 1.0) {
            return Err(LcdError::config("stage1.t_hi", s1.t_hi, "should be ≥ 1"));
        }
        pos_f("stage1.lr", s1.lr)?;
        pos_f("stage1.grad_clip", s1.grad_clip)?;
        if !(s1.beta2 > 0.0 && s1.beta2 < 1.0) {
            return Err(LcdError::config(
                "stage1.beta2",
                s1.beta2,
                "should be in (0, 1)",
            ));
        }
        let s2 = &self.stage2;
        pos_usize("stage2.hidden", s2.hidden, 1)?;
        pos_usize("stage2.steps", s2.steps, 1)?;
        pos_usize("stage2.batch", s2.batch, 1)?;
        pos_usize("stage2.n_levels", s2.n_levels, 2)?;
        pos_f("stage2.lr", s2.lr)?;
        pos_f("stage2.sigma_min", s2.sigma_min)?;
        pos_f("stage2.sigma_max", s2.sigma_max)?;
        if s2.sigma_max <= s2.sigma_min {
            return Err(LcdError::config(
                "stage2.sigma_max",
                s2.sigma_max,
                "should be > stage2.sigma_min",
            ));
        }
        if !(s2.weight_decay.is_finite() && s2.weight_decay >= 0.0) {
            return Err(LcdError::config(
                "stage2.weight_decay",
                s2.weight_decay,
                "should be ≥ 0",
            ));
        }
        let sm = &self.sampler;
        pos_usize("sampler.steps_per_level", sm.steps_per_level, 1)?;
        pos_usize("sampler.chains", sm.chains, 1)?;
        pos_usize("sampler.decodes_per_chain", sm.decodes_per_chain, 1)?;
        pos_f("sampler.step_base", sm.step_base)?;
        pos_usize("eval.max_cells", self.eval.max_cells, 2)?;
        pos_usize("eval.n_de", self.eval.n_de, 1)?;
        Ok(())
    }

    /// Geometric noise levels σ_1 > … > σ_L.
    pub fn sigmas(&self) -> Vec<f64> {
        let s = &self.stage2;
        let l = s.n_levels;
        (0..l)
            .map(|i| {
                (s.sigma_max.ln()
                    + (s.sigma_min.ln() - s.sigma_max.ln()) * i as f64 / (l - 1) as f64)
                    .exp()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_validate_and_round_trip() -> Result<()> {
        for c in [LcdConfig::paper(), LcdConfig::quick()] {
            c.validate()?;
            let back = LcdConfig::from_toml(&c.to_toml(), std::path::Path::new("x.toml"))?;
            assert_eq!(back, c);
        }
        let s = LcdConfig::paper().sigmas();
        assert_eq!(s.len(), 30);
        assert!((s[0] - 10.0).abs() < 1e-9 && (s[29] - 0.01).abs() < 1e-12);
        Ok(())
    }

    #[test]
    fn bad_values_are_named() {
        let mut c = LcdConfig::quick();
        c.stage2.sigma_min = -1.0;
        let e = c
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("stage2.sigma_min") && e.contains("-1"), "{e}");
        let e = LcdConfig::from_toml("[stage1]\nsteps = 0\n", std::path::Path::new("a.toml"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("stage1.steps"), "{e}");
        let e = LcdConfig::from_toml("[stage1]\nstepz = 3\n", std::path::Path::new("a.toml"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("a.toml") && e.contains("stepz"), "{e}");
        let e = LcdConfig::from_toml_over(
            "[stage1]\nstepz = 3\n",
            std::path::Path::new("b.toml"),
            &LcdConfig::quick(),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(e.contains("b.toml") && e.contains("stepz"), "{e}");
    }

    #[test]
    fn condition_path_parses_round_trips_and_defaults_to_the_paper() -> Result<()> {
        let p = std::path::Path::new("d.toml");
        assert_eq!(
            LcdConfig::paper().stage2.condition_path,
            ConditionPath::None
        );
        for (text, want) in [
            ("none", ConditionPath::None),
            ("shift", ConditionPath::Shift),
            ("output", ConditionPath::Output),
        ] {
            let c = LcdConfig::from_toml_over(
                &format!("[stage2]\ncondition_path = \"{text}\"\n"),
                p,
                &LcdConfig::paper(),
            )?;
            assert_eq!(c.stage2.condition_path, want);
            assert!(c
                .to_toml()
                .contains(&format!("condition_path = \"{text}\"")));
            assert_eq!(LcdConfig::from_toml(&c.to_toml(), p)?, c);
        }
        // A file without the key (older model directories) gets the paper network.
        let c = LcdConfig::from_toml("[stage2]\nhidden = 8\n", p)?;
        assert_eq!(c.stage2.condition_path, ConditionPath::None);
        let e = LcdConfig::from_toml("[stage2]\ncondition_path = \"sideways\"\n", p)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("d.toml") && e.contains("sideways") && e.contains("shift"),
            "{e}"
        );
        Ok(())
    }

    #[test]
    fn toml_over_a_preset_and_checkpoint_intervals() -> Result<()> {
        let p = std::path::Path::new("c.toml");
        let c = LcdConfig::from_toml_over(
            "checkpoint_every = 7\n[stage2]\nsteps = 4000\ncheckpoint_every = 100\n",
            p,
            &LcdConfig::quick(),
        )?;
        let mut want = LcdConfig::quick();
        want.checkpoint_every = 7;
        want.stage2.steps = 4000;
        want.stage2.checkpoint_every = Some(100);
        assert_eq!(c, want);
        assert_eq!(c.checkpoint_intervals(), (7, 100));
        assert_eq!(LcdConfig::from_toml(&c.to_toml(), p)?, c);
        assert_eq!(
            LcdConfig::from_toml_over("", p, &LcdConfig::paper())?,
            LcdConfig::paper()
        );
        Ok(())
    }
}
