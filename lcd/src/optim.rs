//! Adam / AdamW with global gradient-norm clipping and the learning-rate
//! schedules of the reference code: linear warm-up then cosine decay to 0
//! (stage 1: Adam β1 = 0, β2 = 0.99, clip 1.0; stage 2: AdamW, wd 0.3).
//! Decoupled weight decay as in Loshchilov & Hutter (2019).
use candle_core::{Tensor, Var};
use rayon::prelude::*;

use crate::cpu_fast::Host;

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
    /// Moments on the host for the fused CPU update (all parameters CPU
    /// f32); `m` / `v` above are then empty and built only for export.
    host: Option<Vec<HostMoments>>,
}

/// First (None when β1 = 0) and second moments of one parameter.
struct HostMoments {
    m: Option<Vec<f32>>,
    v: Vec<f32>,
}

/// Values per parallel task of the fused update and of the gradient norm.
const CHUNK: usize = 1 << 15;

/// A gradient as contiguous host f32 values.
fn host_values(g: &Tensor) -> Result<Vec<f32>> {
    Ok(g.flatten_all()?
        .to_dtype(candle_core::DType::F32)?
        .to_vec1::<f32>()?)
}

/// Σ g² in f64, fixed-order over chunks (independent of the thread count).
fn sum_sq(g: &[f32]) -> f64 {
    let parts: Vec<f64> = g
        .par_chunks(CHUNK)
        .map(|c| c.iter().map(|&x| f64::from(x) * f64::from(x)).sum())
        .collect();
    parts.iter().sum()
}

/// One parameter's fused AdamW update in place (candle in-place op on the
/// parameter's storage, moments borrowed mutably).
struct AdamUpdate<'a> {
    g: &'a [f32],
    mom: std::sync::Mutex<&'a mut HostMoments>,
    scale: f32,
    b1: f32,
    b2: f32,
    bc1: f32,
    bc2: f32,
    eps: f32,
    wd: f32,
    lr: f32,
}

impl candle_core::InplaceOp1 for AdamUpdate<'_> {
    fn name(&self) -> &'static str {
        "lcd-adamw"
    }
    fn cpu_fwd(
        &self,
        st: &mut candle_core::CpuStorage,
        l: &candle_core::Layout,
    ) -> candle_core::Result<()> {
        let candle_core::CpuStorage::F32(pv) = st else {
            candle_core::bail!("lcd-adamw: parameter is not f32");
        };
        let Some((a, b)) = l.contiguous_offsets() else {
            candle_core::bail!("lcd-adamw: parameter is not contiguous");
        };
        let p = &mut pv[a..b];
        let mut mom = self.mom.lock().unwrap_or_else(|e| e.into_inner());
        let HostMoments { m, v } = &mut **mom;
        if p.len() != self.g.len() || v.len() != p.len() {
            candle_core::bail!(
                "lcd-adamw: {} parameter values, {} gradient values, {} moments",
                p.len(),
                self.g.len(),
                v.len()
            );
        }
        let u = self;
        let step = |pc: &mut [f32], gc: &[f32], vc: &mut [f32], mut mc: Option<&mut [f32]>| {
            for j in 0..pc.len() {
                let g = gc[j] * u.scale;
                vc[j] = vc[j] * u.b2 + g * g * (1.0 - u.b2);
                let mhat = match mc.as_deref_mut() {
                    Some(mc) => {
                        mc[j] = mc[j] * u.b1 + g * (1.0 - u.b1);
                        mc[j] / u.bc1
                    }
                    None => g,
                };
                let upd = mhat / ((vc[j] / u.bc2).sqrt() + u.eps) + pc[j] * u.wd;
                pc[j] -= upd * u.lr;
            }
        };
        match m {
            Some(m) => p
                .par_chunks_mut(CHUNK)
                .zip(self.g.par_chunks(CHUNK))
                .zip(v.par_chunks_mut(CHUNK))
                .zip(m.par_chunks_mut(CHUNK))
                .for_each(|(((pc, gc), vc), mc)| step(pc, gc, vc, Some(mc))),
            None => p
                .par_chunks_mut(CHUNK)
                .zip(self.g.par_chunks(CHUNK))
                .zip(v.par_chunks_mut(CHUNK))
                .for_each(|((pc, gc), vc)| step(pc, gc, vc, None)),
        }
        Ok(())
    }
}

impl Adam {
    pub fn new(params: Vec<Var>, hp: AdamParams) -> Result<Self> {
        Self::build(params, hp, true)
    }

    /// `fused = false` keeps the tensor path on the CPU too (tests).
    fn build(params: Vec<Var>, hp: AdamParams, fused: bool) -> Result<Self> {
        let host_ok = fused
            && !params.is_empty()
            && params.iter().all(|p| {
                let t = p.as_tensor();
                t.device().is_cpu() && t.dtype() == candle_core::DType::F32 && t.is_contiguous()
            });
        if host_ok {
            let host = params
                .iter()
                .map(|p| {
                    let n = p.as_tensor().elem_count();
                    HostMoments {
                        m: (hp.beta1 > 0.0).then(|| vec![0f32; n]),
                        v: vec![0f32; n],
                    }
                })
                .collect();
            return Ok(Adam {
                params,
                m: Vec::new(),
                v: Vec::new(),
                t: 0,
                hp,
                host: Some(host),
            });
        }
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
            host: None,
        })
    }

    /// Clip factor for gradient norm `norm` and the bias corrections
    /// `1 − β1^t` (1 without a first moment) and `1 − β2^t` of this step.
    fn coefficients(&self, norm: f64) -> (f64, f64, f64) {
        let scale = match self.hp.clip {
            Some(c) if norm > c => c / norm,
            _ => 1.0,
        };
        let (b1, b2) = (self.hp.beta1, self.hp.beta2);
        let bc1 = if b1 > 0.0 { 1.0 - b1.powi(self.t) } else { 1.0 };
        (scale, bc1, 1.0 - b2.powi(self.t))
    }

    /// The fused CPU update: one parallel pass per parameter (moments on the
    /// host, parameter updated in place), same formulas as the tensor path.
    fn step_host(&mut self, grads: &[Option<Tensor>], lr: f64) -> Result<f64> {
        // gradients read in place (borrowed storage; copied only when not
        // contiguous f32)
        let gs: Vec<Option<Host<'_>>> = grads
            .iter()
            .map(|g| g.as_ref().map(Host::new).transpose())
            .collect::<Result<_>>()?;
        let norm = gs
            .iter()
            .flatten()
            .map(|g| sum_sq(g.s()))
            .sum::<f64>()
            .sqrt();
        let (scale, bc1, bc2) = self.coefficients(norm);
        let (b1, b2) = (self.hp.beta1, self.hp.beta2);
        let Some(host) = self.host.as_mut() else {
            return Ok(norm);
        };
        for ((p, g), mom) in self.params.iter().zip(&gs).zip(host.iter_mut()) {
            let Some(g) = g else { continue };
            let op = AdamUpdate {
                g: g.s(),
                mom: std::sync::Mutex::new(mom),
                scale: scale as f32,
                b1: b1 as f32,
                b2: b2 as f32,
                bc1: bc1 as f32,
                bc2: bc2 as f32,
                eps: self.hp.eps as f32,
                wd: self.hp.weight_decay as f32,
                lr: lr as f32,
            };
            p.as_tensor().inplace_op1(&op)?;
        }
        Ok(norm)
    }

    /// One update with `grads[i]` for `params[i]` (None = no gradient, e.g.
    /// an unused embedding). Returns the gradient norm before clipping.
    pub fn step(&mut self, grads: &[Option<Tensor>], lr: f64) -> Result<f64> {
        self.t += 1;
        if self.host.is_some() {
            return self.step_host(grads, lr);
        }
        let mut sq = Vec::new();
        for g in grads.iter().flatten() {
            sq.push(g.sqr()?.sum_all()?);
        }
        let norm = if sq.is_empty() {
            0.0
        } else {
            f64::from(Tensor::stack(&sq, 0)?.sum_all()?.to_scalar::<f32>()?).sqrt()
        };
        let (scale, bc1, bc2) = self.coefficients(norm);
        let (b1, b2) = (self.hp.beta1, self.hp.beta2);
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
        if let Some(host) = &self.host {
            for (i, (p, mom)) in self.params.iter().zip(host).enumerate() {
                let shape = p.as_tensor().shape();
                let dev = p.as_tensor().device();
                out.insert(
                    format!("{prefix}v.{i}"),
                    Tensor::from_slice(&mom.v, shape, dev)?,
                );
                if let Some(m) = &mom.m {
                    out.insert(format!("{prefix}m.{i}"), Tensor::from_slice(m, shape, dev)?);
                }
            }
        }
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
        let shape_err = |k: String, got: &[usize], want: &[usize]| {
            crate::LcdError::Data(format!(
                "checkpoint optimiser tensor {k} has shape {got:?}, expected {want:?}"
            ))
        };
        if let Some(host) = &mut self.host {
            for (i, (p, mom)) in self.params.iter().zip(host.iter_mut()).enumerate() {
                let want = p.as_tensor().dims();
                let v = get(format!("{prefix}v.{i}"))?;
                if v.dims() != want {
                    return Err(shape_err(format!("{prefix}v.{i}"), v.dims(), want));
                }
                mom.v = host_values(v)?;
                if mom.m.is_some() {
                    let m = get(format!("{prefix}m.{i}"))?;
                    if m.dims() != want {
                        return Err(shape_err(format!("{prefix}m.{i}"), m.dims(), want));
                    }
                    mom.m = Some(host_values(m)?);
                }
            }
        }
        for i in 0..self.v.len() {
            let v = get(format!("{prefix}v.{i}"))?;
            if v.dims() != self.v[i].dims() {
                return Err(shape_err(
                    format!("{prefix}v.{i}"),
                    v.dims(),
                    self.v[i].dims(),
                ));
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

    /// The fused host update against the tensor formulas: same values after
    /// steps with clipping, weight decay, β1 > 0 and β1 = 0, an unused
    /// parameter, and a checkpoint round trip into a fresh optimiser.
    #[test]
    fn fused_update_matches_tensor_path() -> Result<()> {
        let dev = Device::Cpu;
        for beta1 in [0.9, 0.0] {
            let hp = AdamParams {
                beta1,
                beta2: 0.99,
                eps: 1e-8,
                weight_decay: 0.3,
                clip: Some(1.0),
            };
            let init = || -> Result<Vec<Var>> {
                let a = Tensor::rand(-1f32, 1.0, (70_001,), &dev)?;
                let b = Tensor::rand(-1f32, 1.0, (3, 5), &dev)?;
                let c = Tensor::rand(-1f32, 1.0, (4,), &dev)?;
                Ok(vec![
                    Var::from_tensor(&a)?,
                    Var::from_tensor(&b)?,
                    Var::from_tensor(&c)?,
                ])
            };
            let fused_p = init()?;
            let plain_p: Vec<Var> = fused_p
                .iter()
                .map(|v| Var::from_tensor(&v.as_tensor().copy()?))
                .collect::<candle_core::Result<_>>()?;
            let mut fused = Adam::build(fused_p.clone(), hp, true)?;
            let mut plain = Adam::build(plain_p.clone(), hp, false)?;
            assert!(fused.host.is_some() && plain.host.is_none());
            let mut resumed: Option<Adam> = None;
            for step in 0..6 {
                let scale = if step % 2 == 0 { 0.001 } else { 3.0 }; // below / above the clip
                let grads: Vec<Option<Tensor>> = vec![
                    Some((Tensor::randn(0f32, 1.0, (70_001,), &dev)? * scale)?),
                    Some((Tensor::randn(0f32, 1.0, (3, 5), &dev)? * scale)?),
                    None,
                ];
                let nf = fused.step(&grads, 0.01)?;
                let np = plain.step(&grads, 0.01)?;
                assert!((nf - np).abs() <= 1e-4 * np.max(1.0), "norm {nf} vs {np}");
                if let Some(r) = resumed.as_mut() {
                    r.step(&grads, 0.01)?;
                }
                if step == 2 {
                    // checkpoint the fused optimiser into a fresh one on copies
                    let mut st = std::collections::HashMap::new();
                    fused.export("o.", &mut st)?;
                    let copies: Vec<Var> = fused_p
                        .iter()
                        .map(|v| Var::from_tensor(&v.as_tensor().copy()?))
                        .collect::<candle_core::Result<_>>()?;
                    let mut r = Adam::new(copies, hp)?;
                    r.import("o.", &st)?;
                    resumed = Some(r);
                }
            }
            let r = resumed
                .as_ref()
                .map(|r| r.params.clone())
                .unwrap_or_default();
            for (i, (f, p)) in fused_p.iter().zip(&plain_p).enumerate() {
                let d = (f.as_tensor() - p.as_tensor())?
                    .abs()?
                    .max_all()?
                    .to_scalar::<f32>()?;
                assert!(d < 1e-5, "beta1 {beta1}: parameter {i} differs by {d}");
                let dr = (f.as_tensor() - r[i].as_tensor())?
                    .abs()?
                    .max_all()?
                    .to_scalar::<f32>()?;
                assert_eq!(
                    dr, 0.0,
                    "beta1 {beta1}: resumed parameter {i} differs by {dr}"
                );
            }
            // the unused parameter did not move
            let c0 = plain_p[2].as_tensor();
            let d = (fused_p[2].as_tensor() - c0)?
                .abs()?
                .max_all()?
                .to_scalar::<f32>()?;
            assert_eq!(d, 0.0);
        }
        Ok(())
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
