//! Running a simulation into an [`AnnData`] and rebuilding the true system
//! from one (`uns["simulation"]`).
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use ndarray::{concatenate, Array1, Array2, ArrayView1, ArrayView2, Axis, Ix1, Ix2};
use rayon::prelude::*;

use super::counts::ZipParams;
use super::linear::LinearSystem;
use super::nonlinear::NonlinearSystem;
use super::system::Drift;
use super::{design, gene_name, stream_rng, SimKind, SimulationConfig};
use crate::anndata::{
    AnnData, Column, DataFrame, DenseArray, Matrix, Scalar, SparseData, SparseFormat, SparseIndex,
    SparseMatrix, Value,
};
use crate::error::{DatasetsError, Result};

/// The true dynamics behind a simulated screen.
#[derive(Debug, Clone, PartialEq)]
pub enum TrueSystem {
    Linear(LinearSystem),
    Nonlinear(NonlinearSystem),
}

impl TrueSystem {
    fn inner(&self) -> &dyn Drift {
        match self {
            TrueSystem::Linear(s) => s,
            TrueSystem::Nonlinear(s) => s,
        }
    }

    /// Rebuild from `uns["simulation"]` of a simulated AnnData.
    pub fn from_anndata(adata: &AnnData) -> Result<Self> {
        let sim = match adata.uns.get("simulation") {
            Some(Value::Dict(m)) => m,
            _ => {
                return Err(uns_err(
                    "uns/simulation",
                    "a dict written by `cellmol simulate screen`",
                    "nothing",
                ))
            }
        };
        let kind = match sim.get("kind") {
            Some(Value::Scalar(Scalar::String(s))) => s.clone(),
            _ => {
                return Err(uns_err(
                    "uns/simulation/kind",
                    "a string (linear|nonlinear)",
                    "no string",
                ))
            }
        };
        let b = uns_vec(sim, "b")?;
        let shifts = uns_vec(sim, "shift")?;
        let d = b.len();
        let check = |m: &Array2<f64>, name: &str| -> Result<()> {
            if m.dim() != (d, d) || shifts.len() != d {
                return Err(DatasetsError::Shape {
                    context: format!("uns/simulation/{name}"),
                    expected: format!("({d}, {d}) with shift of length {d}"),
                    found: format!("{:?}, shift of length {}", m.dim(), shifts.len()),
                });
            }
            Ok(())
        };
        match kind.as_str() {
            "linear" => {
                let a = uns_mat(sim, "A")?;
                check(&a, "A")?;
                Ok(TrueSystem::Linear(LinearSystem { a, b, shifts }))
            }
            "nonlinear" => {
                let w = uns_mat(sim, "W")?;
                check(&w, "W")?;
                Ok(TrueSystem::Nonlinear(NonlinearSystem::new(w, b, shifts)))
            }
            other => Err(uns_err("uns/simulation/kind", "linear or nonlinear", other)),
        }
    }
}

impl Drift for TrueSystem {
    fn n_genes(&self) -> usize {
        self.inner().n_genes()
    }
    fn shifts(&self) -> &Array1<f64> {
        self.inner().shifts()
    }
    fn base_drift(&self, x: ArrayView2<f64>) -> Array2<f64> {
        self.inner().base_drift(x)
    }
    fn jacobian(&self, x: ArrayView1<f64>) -> Array2<f64> {
        self.inner().jacobian(x)
    }
    fn fixed_point(&self, targets: &[usize]) -> Result<Array1<f64>> {
        self.inner().fixed_point(targets)
    }
}

fn uns_err(path: &str, expected: &str, found: &str) -> DatasetsError {
    DatasetsError::Format {
        file: "<in-memory AnnData>".into(),
        path: path.into(),
        expected: expected.into(),
        found: found.into(),
    }
}

fn uns_array(sim: &BTreeMap<String, Value>, key: &str) -> Result<ndarray::ArrayD<f64>> {
    match sim.get(key) {
        Some(Value::Array(a)) => a.to_f64().ok_or_else(|| {
            uns_err(
                &format!("uns/simulation/{key}"),
                "a numeric array",
                "strings",
            )
        }),
        _ => Err(uns_err(
            &format!("uns/simulation/{key}"),
            "a numeric array",
            "nothing",
        )),
    }
}

fn uns_vec(sim: &BTreeMap<String, Value>, key: &str) -> Result<Array1<f64>> {
    let a = uns_array(sim, key)?;
    let shape = format!("{:?}", a.shape());
    a.into_dimensionality::<Ix1>()
        .map_err(|_| uns_err(&format!("uns/simulation/{key}"), "a 1-D array", &shape))
}

fn uns_mat(sim: &BTreeMap<String, Value>, key: &str) -> Result<Array2<f64>> {
    let a = uns_array(sim, key)?;
    let shape = format!("{:?}", a.shape());
    a.into_dimensionality::<Ix2>()
        .map_err(|_| uns_err(&format!("uns/simulation/{key}"), "a 2-D array", &shape))
}

/// A simulated screen: the AnnData plus the truth and a few diagnostics.
#[derive(Debug, Clone)]
pub struct SimulatedScreen {
    pub adata: AnnData,
    pub system: TrueSystem,
    /// Linear only: ‖A Σ + Σ Aᵀ + I‖_F of the stationary covariance used.
    pub lyapunov_residual: Option<f64>,
    /// Condition labels in obs order (control, singles, doubles).
    pub conditions: Vec<String>,
}

fn f64_array(a: ndarray::ArrayD<f64>) -> Value {
    Value::Array(DenseArray::F64(a))
}

/// Simulate a screen. `progress(done, total)` is called after each condition.
pub fn simulate_screen(
    cfg: &SimulationConfig,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<SimulatedScreen> {
    cfg.validate()?;
    let d = cfg.genes;
    let mut rng = stream_rng(cfg.seed, 0);
    let shift = (cfg.shift_min, cfg.shift_max);
    let bias = cfg.bias_range();
    let (system, lyap) = match cfg.kind {
        SimKind::Linear => {
            let s = LinearSystem::random(d, cfg.graph, cfg.degree, bias, shift, &mut rng)?;
            let (sigma, res) = s.stationary_covariance()?;
            let chol = LinearSystem::cholesky(&sigma)?;
            (TrueSystem::Linear(s), Some((chol, res)))
        }
        SimKind::Nonlinear => (
            TrueSystem::Nonlinear(NonlinearSystem::random(
                d,
                cfg.graph,
                cfg.degree,
                bias,
                shift,
                cfg.contraction,
                &mut rng,
            )),
            None,
        ),
    };
    let (perturbed, conds) = design(cfg, &mut rng);
    let means = match &system {
        TrueSystem::Linear(s) => Some(
            s.stationary_means(
                &conds
                    .iter()
                    .map(|c| c.targets.as_slice())
                    .collect::<Vec<_>>(),
            )?,
        ),
        TrueSystem::Nonlinear(_) => None,
    };
    let zip = cfg.counts.then(|| ZipParams::random(d, &mut rng));
    let n = cfg.cells_per_condition;
    let done = AtomicUsize::new(0);
    let total = conds.len();
    // Per condition: latent [n, d] and optional counts [n, d].
    let blocks: Vec<(Array2<f64>, Option<Array2<u32>>)> = conds
        .par_iter()
        .enumerate()
        .map(|(q, c)| -> Result<_> {
            let mut crng = stream_rng(cfg.seed, q as u64 + 1);
            let latent = match (&system, &lyap, &means) {
                (TrueSystem::Nonlinear(s), _, _) => {
                    s.sample(&c.targets, n, cfg.dt, cfg.burn_in, &mut crng)?
                }
                (TrueSystem::Linear(_), Some((chol, _)), Some(mu)) => {
                    LinearSystem::sample(mu[q].view(), chol, n, &mut crng)
                }
                (TrueSystem::Linear(_), _, _) => {
                    unreachable!("linear systems always carry a Cholesky factor and means")
                }
            };
            let counts = zip.as_ref().map(|z| z.sample(latent.view(), &mut crng));
            progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
            Ok((latent, counts))
        })
        .collect::<Result<_>>()?;

    let latent_views: Vec<_> = blocks.iter().map(|(l, _)| l.view()).collect();
    let latent = concatenate(Axis(0), &latent_views).map_err(|e| DatasetsError::Shape {
        context: "concatenating conditions".into(),
        expected: format!("[_, {d}] blocks"),
        found: e.to_string(),
    })?; // [n_obs, d]
    let n_obs = latent.nrows();

    // obs
    let mut obs = DataFrame::new((0..n_obs).map(|i| format!("cell{i}")).collect());
    let labels: Vec<Option<&str>> = conds
        .iter()
        .flat_map(|c| std::iter::repeat_n(Some(c.label.as_str()), n))
        .collect();
    obs.set_column("perturbation", Column::categorical_from_labels(&labels));
    let n_targets: Vec<i64> = conds
        .iter()
        .flat_map(|c| std::iter::repeat_n(c.targets.len() as i64, n))
        .collect();
    obs.set_column(
        "n_targets",
        Column::Array(DenseArray::I64(Array1::from(n_targets).into_dyn())),
    );
    // var
    let mut var = DataFrame::new((0..d).map(gene_name).collect());
    let is_pert: Vec<bool> = (0..d)
        .map(|g| perturbed.binary_search(&g).is_ok())
        .collect();
    var.set_column(
        "perturbed",
        Column::Array(DenseArray::Bool(Array1::from(is_pert).into_dyn())),
    );

    let mut adata = AnnData {
        obs,
        var,
        ..Default::default()
    };
    let latent_f32 = Matrix::Dense(DenseArray::F32(latent.mapv(|v| v as f32).into_dyn()));
    if let Some(_z) = &zip {
        let count_views: Vec<_> = blocks
            .iter()
            .filter_map(|(_, c)| c.as_ref().map(|c| c.view()))
            .collect();
        adata.x = Some(Matrix::Sparse(counts_to_csr(&count_views, d)));
        adata.layers.insert("latent".into(), latent_f32);
    } else {
        adata.x = Some(latent_f32);
    }
    let effects = system.true_effects()?;
    adata.varp.insert(
        "true_effects".into(),
        Matrix::Dense(DenseArray::F64(effects.into_dyn())),
    );

    // uns["simulation"]
    let mut sim: BTreeMap<String, Value> = BTreeMap::new();
    let s = |v: &str| Value::Scalar(Scalar::String(v.into()));
    let i = |v: usize| Value::Scalar(Scalar::I64(v as i64));
    let f = |v: f64| Value::Scalar(Scalar::F64(v));
    sim.insert("kind".into(), s(cfg.kind.name()));
    sim.insert("graph".into(), s(cfg.graph.name()));
    sim.insert("seed".into(), Value::Scalar(Scalar::I64(cfg.seed as i64)));
    sim.insert("d".into(), i(d));
    sim.insert("p".into(), i(cfg.perturbed));
    sim.insert("n_doubles".into(), i(cfg.doubles));
    sim.insert("cells_per_condition".into(), i(n));
    sim.insert("degree".into(), f(cfg.degree));
    sim.insert("bias_range".into(), f(bias));
    sim.insert("shift_min".into(), f(cfg.shift_min));
    sim.insert("shift_max".into(), f(cfg.shift_max));
    sim.insert("counts".into(), Value::Scalar(Scalar::Bool(cfg.counts)));
    sim.insert("b".into(), f64_array(system.inner_b().clone().into_dyn()));
    sim.insert(
        "shift".into(),
        f64_array(system.shifts().clone().into_dyn()),
    );
    sim.insert(
        "perturbed_genes".into(),
        Value::Array(DenseArray::strings(
            perturbed.iter().map(|&g| gene_name(g)).collect(),
        )),
    );
    sim.insert(
        "true_effects_orientation".into(),
        s("varp/true_effects[i, j] = direct effect of gene i on gene j (A^T for linear, Jacobian^T at the control fixed point for nonlinear)"),
    );
    match &system {
        TrueSystem::Linear(l) => {
            sim.insert("A".into(), f64_array(l.a.clone().into_dyn()));
            sim.insert("drift".into(), s("f(x) = A x + b + c_q, dx = f dt + dW"));
            if let Some((_, res)) = &lyap {
                sim.insert("lyapunov_residual".into(), f(*res));
            }
        }
        TrueSystem::Nonlinear(nl) => {
            sim.insert("W".into(), f64_array(nl.w.clone().into_dyn()));
            sim.insert(
                "drift".into(),
                s("f(x) = -x + tanh(W x + b) + c_q (W row = target), dx = f dt + dW"),
            );
            sim.insert("contraction".into(), f(cfg.contraction));
            sim.insert("dt".into(), f(cfg.dt));
            sim.insert("burn_in".into(), f(cfg.burn_in));
        }
    }
    if let Some(z) = &zip {
        sim.insert("zip_pi".into(), f64_array(z.pi.clone().into_dyn()));
        sim.insert("zip_u".into(), f64_array(z.u.clone().into_dyn()));
    }
    adata.uns.insert("simulation".into(), Value::Dict(sim));
    Ok(SimulatedScreen {
        adata,
        system,
        lyapunov_residual: lyap.map(|(_, r)| r),
        conditions: conds.into_iter().map(|c| c.label).collect(),
    })
}

impl TrueSystem {
    fn inner_b(&self) -> &Array1<f64> {
        match self {
            TrueSystem::Linear(s) => &s.b,
            TrueSystem::Nonlinear(s) => &s.b,
        }
    }
}

/// Stack count blocks `[n_q, d]` into one CSR matrix (f32 data, i32 indices,
/// i64 indptr only when nnz overflows i32).
fn counts_to_csr(blocks: &[ArrayView2<u32>], d: usize) -> SparseMatrix {
    let n_obs: usize = blocks.iter().map(|b| b.nrows()).sum();
    let mut data = Vec::new();
    let mut indices = Vec::new();
    let mut indptr: Vec<i64> = Vec::with_capacity(n_obs + 1);
    indptr.push(0);
    for b in blocks {
        for row in b.rows() {
            for (g, &v) in row.iter().enumerate() {
                if v != 0 {
                    data.push(v as f32);
                    indices.push(g as i32);
                }
            }
            indptr.push(data.len() as i64);
        }
    }
    let indptr = if data.len() <= i32::MAX as usize {
        SparseIndex::I32(indptr.into_iter().map(|v| v as i32).collect())
    } else {
        SparseIndex::I64(indptr)
    };
    SparseMatrix {
        format: SparseFormat::Csr,
        shape: (n_obs, d),
        data: SparseData::F32(data),
        indices: SparseIndex::I32(indices),
        indptr,
    }
}
