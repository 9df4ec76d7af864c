//! A named, ordered parameter store (deterministic init from the seeded host
//! RNG, safetensors I/O) and the dense layers built on it. Weights are stored
//! `[in, out]` (optionally with a leading environment axis) so `x · W + b`
//! needs no transpose.
use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{Device, Tensor, Var};
use rand::Rng;
use rand_distr::StandardNormal;

use crate::{LcdError, Result};

/// Cloning shares the variables (a clone sees every update).
#[derive(Default, Clone)]
pub struct Params {
    vars: BTreeMap<String, Var>,
}

impl Params {
    pub fn new() -> Self {
        Params::default()
    }
    /// Gaussian init with standard deviation `std`.
    pub fn normal<R: Rng>(
        &mut self,
        name: &str,
        shape: &[usize],
        std: f64,
        rng: &mut R,
        dev: &Device,
    ) -> Result<()> {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| (rng.sample::<f64, _>(StandardNormal) * std) as f32)
            .collect();
        self.insert(name, Tensor::from_vec(v, shape, dev)?)
    }
    pub fn zeros(&mut self, name: &str, shape: &[usize], dev: &Device) -> Result<()> {
        self.insert(name, Tensor::zeros(shape, candle_core::DType::F32, dev)?)
    }
    pub fn insert(&mut self, name: &str, t: Tensor) -> Result<()> {
        self.vars.insert(name.to_string(), Var::from_tensor(&t)?);
        Ok(())
    }
    pub fn get(&self, name: &str) -> Result<Tensor> {
        self.vars
            .get(name)
            .map(|v| v.as_tensor().clone())
            .ok_or_else(|| LcdError::Data(format!("missing parameter {name:?}")))
    }
    /// Variables in name order (the optimiser's order).
    pub fn vars(&self) -> Vec<Var> {
        self.vars.values().cloned().collect()
    }
    pub fn names(&self) -> Vec<String> {
        self.vars.keys().cloned().collect()
    }
    /// Detached snapshot (no autograd graph is built through it).
    pub fn detached(&self) -> Weights {
        Weights(
            self.vars
                .iter()
                .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
                .collect(),
        )
    }
    /// Live view (builds the graph for backward).
    pub fn live(&self) -> Weights {
        Weights(
            self.vars
                .iter()
                .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
                .collect(),
        )
    }
    /// All tensors, named `{prefix}{name}` (for checkpoints).
    pub fn export(&self, prefix: &str, out: &mut std::collections::HashMap<String, Tensor>) {
        for (k, v) in &self.vars {
            out.insert(format!("{prefix}{k}"), v.as_tensor().clone());
        }
    }
    /// Overwrite every variable's value with `map["{prefix}{name}"]` (shapes must match).
    pub fn assign(
        &self,
        prefix: &str,
        map: &std::collections::HashMap<String, Tensor>,
    ) -> Result<()> {
        for (k, v) in &self.vars {
            let key = format!("{prefix}{k}");
            let t = map
                .get(&key)
                .ok_or_else(|| LcdError::Data(format!("checkpoint lacks parameter {key:?}")))?;
            if t.dims() != v.as_tensor().dims() {
                return Err(LcdError::Data(format!(
                    "checkpoint parameter {key:?} has shape {:?}, expected {:?}",
                    t.dims(),
                    v.as_tensor().dims()
                )));
            }
            v.set(&t.to_device(v.as_tensor().device())?)?;
        }
        Ok(())
    }
    pub fn save(&self, path: &Path, prefix: &str) -> Result<()> {
        let map: std::collections::HashMap<String, Tensor> = self
            .vars
            .iter()
            .map(|(k, v)| (format!("{prefix}{k}"), v.as_tensor().clone()))
            .collect();
        candle_core::safetensors::save(&map, path)?;
        Ok(())
    }
    /// All tensors of `file` whose name starts with `prefix` (prefix removed).
    pub fn load(path: &Path, prefix: &str, dev: &Device) -> Result<Self> {
        let map = candle_core::safetensors::load(path, dev).map_err(|e| LcdError::Parse {
            path: path.into(),
            message: e.to_string(),
        })?;
        let mut p = Params::new();
        for (k, t) in map {
            if let Some(rest) = k.strip_prefix(prefix) {
                p.insert(rest, t)?;
            }
        }
        Ok(p)
    }
}

/// A name → tensor view of [`Params`].
pub struct Weights(pub BTreeMap<String, Tensor>);

impl Weights {
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.0
            .get(name)
            .ok_or_else(|| LcdError::Data(format!("missing parameter {name:?}")))
    }
    /// `x · W + b` with `W = name.w`, `b = name.b` (broadcast over leading
    /// axes); 2-D products go through [`crate::blas::matmul`] (OpenBLAS on
    /// the CPU for f32, candle's matmul elsewhere).
    pub fn dense(&self, name: &str, x: &Tensor) -> Result<Tensor> {
        let w = self.get(&format!("{name}.w"))?;
        let b = self.get(&format!("{name}.b"))?;
        let y = if x.rank() == 2 && w.rank() == 2 {
            crate::blas::matmul(x, w)?
        } else {
            x.broadcast_matmul(w)?
        };
        Ok(y.broadcast_add(b)?)
    }
    /// Same for environment-stacked weights `[Q, in, out]`, restricted to the
    /// environments `idx` (None = all); `x`: `[E, n, in]`.
    pub fn dense_env(&self, name: &str, x: &Tensor, idx: Option<&Tensor>) -> Result<Tensor> {
        let w = self.get(&format!("{name}.w"))?;
        let b = self.get(&format!("{name}.b"))?;
        let (w, b) = match idx {
            Some(i) => (w.index_select(i, 0)?, b.index_select(i, 0)?),
            None => (w.clone(), b.clone()),
        };
        Ok(x.matmul(&w)?.broadcast_add(&b)?)
    }
}
