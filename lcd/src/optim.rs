//! Adam / AdamW with global gradient-norm clipping and the learning-rate
//! schedules of the reference code: linear warm-up then cosine decay to 0
//! (stage 1: Adam β1 = 0, β2 = 0.99, clip 1.0; stage 2: AdamW, wd 0.3).
//! Decoupled weight decay as in Loshchilov & Hutter (2019).
use candle_core::{Tensor, Var};

use crate::Result;

#[derive(Debug, Clone, Copy)]
pub struct AdamParams {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Global gradient-norm clip (None = no clipping).
    pub clip: Option<f64>,
}

/// Optimiser tensors of a checkpoint (see [`Adam::export`]).
pub type OptState = std::collections::HashMap<String, Tensor>;

pub struct Adam {
    params: Vec<Var>,
    m: Vec<Option<Tensor>>,
    v: Vec<Tensor>,
    t: i32,
    hp: AdamParams,
}

impl Adam {
    pub fn new(params: Vec<Var>, hp: AdamParams) -> Result<Self> {
        let v = params
            .iter()
            .map(|p| p.as_tensor().zeros_like())
            .collect::<candle_core::Result<Vec<_>>>()?;
        let m = params
            .iter()
            .map(|p| {
                if hp.beta1 > 0.0 {
                    p.as_tensor().zeros_like().map(Some)
                } else {
                    Ok(None)
                }
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Adam {
            params,
            m,
            v,
            t: 0,
            hp,
        })
    }

    /// One update with `grads[i]` for `params[i]` (None = no gradient, e.g.
    /// an unused embedding). Returns the gradient norm before clipping.
    pub fn step(&mut self, grads: &[Option<Tensor>], lr: f64) -> Result<f64> {
        self.t += 1;
        let mut sq = Vec::new();
        for g in grads.iter().flatten() {
            sq.push(g.sqr()?.sum_all()?);
        }
        let norm = if sq.is_empty() {
            0.0
        } else {
            f64::from(Tensor::stack(&sq, 0)?.sum_all()?.to_scalar::<f32>()?).sqrt()
        };
        let scale = match self.hp.clip {
            Some(c) if norm > c => c / norm,
            _ => 1.0,
        };
        let (b1, b2) = (self.hp.beta1, self.hp.beta2);
        let bc1 = if b1 > 0.0 { 1.0 - b1.powi(self.t) } else { 1.0 };
        let bc2 = 1.0 - b2.powi(self.t);
        for (i, g) in grads.iter().enumerate() {
            let Some(g) = g else { continue };
            // Detach: gradients may carry an op history; keeping it in the moments would chain every step's graph.
            let g = g.detach();
            let g = if scale < 1.0 {
                g.affine(scale, 0.0)?
            } else {
                g
            };
            let v = ((&self.v[i] * b2)? + (g.sqr()? * (1.0 - b2))?)?.detach();
            let mhat = match &mut self.m[i] {
                Some(m) => {
                    let nm = ((&*m * b1)? + (&g * (1.0 - b1))?)?.detach();
                    *m = nm.clone();
                    (nm / bc1)?
                }
                None => g,
            };
            let denom = ((&v / bc2)?.sqrt()? + self.hp.eps)?;
            let p = &self.params[i].as_tensor().detach();
            let mut upd = (mhat / denom)?;
            if self.hp.weight_decay > 0.0 {
                upd = (upd + (p * self.hp.weight_decay)?)?;
            }
            self.params[i].set(&(p - (upd * lr)?)?)?;
            self.v[i] = v;
        }
        Ok(norm)
    }
}

impl Adam {
    /// Optimiser state for a checkpoint: moments `{prefix}m.{i}` / `{prefix}v.{i}`
    /// (parameter order) and the step counter `{prefix}t` (an exact f64 scalar).
    pub fn export(
        &self,
        prefix: &str,
        out: &mut std::collections::HashMap<String, Tensor>,
    ) -> Result<()> {
        for (i, v) in self.v.iter().enumerate() {
            out.insert(format!("{prefix}v.{i}"), v.clone());
            if let Some(m) = &self.m[i] {
                out.insert(format!("{prefix}m.{i}"), m.clone());
            }
        }
        out.insert(
            format!("{prefix}t"),
            Tensor::new(&[f64::from(self.t)], &candle_core::Device::Cpu)?,
        );
        Ok(())
    }

    /// Restore the state written by [`Adam::export`] (shapes must match).
    pub fn import(
        &mut self,
        prefix: &str,
        map: &std::collections::HashMap<String, Tensor>,
    ) -> Result<()> {
        let get = |k: String| {
            map.get(&k).ok_or_else(|| {
                crate::LcdError::Data(format!("checkpoint lacks optimiser tensor {k:?}"))
            })
        };
        for i in 0..self.v.len() {
            let v = get(format!("{prefix}v.{i}"))?;
            if v.dims() != self.v[i].dims() {
                return Err(crate::LcdError::Data(format!(
                    "checkpoint optimiser tensor {prefix}v.{i} has shape {:?}, expected {:?}",
                    v.dims(),
                    self.v[i].dims()
                )));
            }
            self.v[i] = v.to_device(self.v[i].device())?;
            if self.m[i].is_some() {
                self.m[i] = Some(get(format!("{prefix}m.{i}"))?.to_device(self.v[i].device())?);
            }
        }
        self.t = get(format!("{prefix}t"))?
            .to_vec1::<f64>()?
            .first()
            .copied()
            .unwrap_or(0.0) as i32;
        Ok(())
    }
}

/// Linear warm-up over `warmup` steps to `peak`, then cosine decay to 0 at `total`.
pub fn warmup_cosine(step: usize, warmup: usize, total: usize, peak: f64) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let p = ((step - warmup) as f64 / span).min(1.0);
    peak * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn schedule_shape() {
        assert!((warmup_cosine(9, 10, 110, 1.0) - 1.0).abs() < 1e-12);
        assert!((warmup_cosine(60, 10, 110, 1.0) - 0.5).abs() < 1e-12);
        assert!(warmup_cosine(110, 10, 110, 1.0).abs() < 1e-12);
        assert!((warmup_cosine(0, 0, 100, 2.0) - 2.0).abs() < 1e-12);
    }

    #[test]
    fn adam_minimises_quadratic_and_clips() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::new(&[3f32, -2.0], &dev)?)?;
        let hp = AdamParams {
            beta1: 0.0,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            clip: Some(1.0),
        };
        let mut opt = Adam::new(vec![x.clone()], hp)?;
        for _ in 0..500 {
            let loss = x.as_tensor().sqr()?.sum_all()?;
            let g = loss.backward()?;
            let norm = opt.step(&[g.get(x.as_tensor()).cloned()], 0.02)?;
            assert!(norm.is_finite());
        }
        let v = x.as_tensor().to_vec1::<f32>()?;
        assert!(v.iter().all(|a| a.abs() < 0.05), "{v:?}");
        Ok(())
    }
}
