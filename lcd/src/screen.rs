//! Adapter from an AnnData screen (`.h5ad`: counts or expression in X,
//! condition labels in `obs["perturbation"]`, `"A+B"` for combinations,
//! `control`/`ctrl` for controls) to LCD's [`TrainingData`], and the fold
//! split of lcd.md: every single (and the control) always in training;
//! doubles (and higher) shuffled with a fixed split seed and dealt into K
//! folds; a fold's combinations are its test set; a test combination whose
//! genes are not all singly perturbed in training is dropped.
use std::collections::BTreeMap;
use std::path::Path;

use datasets::anndata::{Column, DenseArray, Matrix, SparseFormat};
use datasets::AnnData;
use ndarray::Array2;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::data::{is_control, parse_condition, Environment, TrainingData};
use crate::{LcdError, Result};

/// Seed of the fold shuffle (fixed so `fit` and `evaluate` agree).
pub const SPLIT_SEED: u64 = 0x5eed;

/// All cells of a screen grouped by condition.
#[derive(Debug, Clone)]
pub struct ScreenData {
    pub genes: Vec<String>,
    /// Control first, then other conditions in label order.
    pub conditions: Vec<Environment>,
}

/// Training and test conditions (indices into `ScreenData::conditions`).
#[derive(Debug, Clone)]
pub struct Split {
    pub train: Vec<usize>,
    pub test: Vec<usize>,
    /// Test combinations dropped because a target was never singly perturbed.
    pub dropped: Vec<String>,
}

fn x_dense(x: &Matrix, file: &Path) -> Result<Array2<f32>> {
    let (n, d) = x.shape2();
    match x {
        Matrix::Dense(a) => {
            let v = a
                .to_f64()
                .ok_or_else(|| LcdError::Data(format!("{}: X holds strings", file.display())))?;
            let v: Vec<f32> = v.iter().map(|&f| f as f32).collect();
            Array2::from_shape_vec((n, d), v)
                .map_err(|e| LcdError::Data(format!("{}: X: {e}", file.display())))
        }
        Matrix::Sparse(s) => {
            let mut out = Array2::<f32>::zeros((n, d));
            let outer = match s.format {
                SparseFormat::Csr => n,
                SparseFormat::Csc => d,
            };
            if s.indptr.len() != outer + 1 {
                return Err(LcdError::Data(format!(
                    "{}: X/indptr has {} entries, expected {}",
                    file.display(),
                    s.indptr.len(),
                    outer + 1
                )));
            }
            for o in 0..outer {
                let (a, b) = (s.indptr.get(o), s.indptr.get(o + 1));
                if a < 0 || b < a || b as usize > s.nnz() {
                    return Err(LcdError::Data(format!(
                        "{}: X/indptr[{o}] out of range",
                        file.display()
                    )));
                }
                for k in a as usize..b as usize {
                    let i = s.indices.get(k);
                    let inner = if s.format == SparseFormat::Csr { d } else { n };
                    if i < 0 || i as usize >= inner {
                        return Err(LcdError::Data(format!(
                            "{}: X/indices[{k}] = {i} out of range",
                            file.display()
                        )));
                    }
                    let v = s.data.get_f64(k) as f32;
                    match s.format {
                        SparseFormat::Csr => out[[o, i as usize]] = v,
                        SparseFormat::Csc => out[[i as usize, o]] = v,
                    }
                }
            }
            Ok(out)
        }
    }
}

fn label_column(ad: &AnnData, file: &Path) -> Result<Vec<String>> {
    let col: &Column = ["perturbation", "condition", "guide_identity", "gene"]
        .iter()
        .find_map(|c| ad.obs.column(c))
        .ok_or_else(|| {
            LcdError::Data(format!(
                "{}: obs has no \"perturbation\" column",
                file.display()
            ))
        })?;
    col.labels()
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            l.ok_or_else(|| {
                LcdError::Data(format!(
                    "{}: obs[\"perturbation\"][{i}] is missing",
                    file.display()
                ))
            })
        })
        .collect()
}

impl ScreenData {
    pub fn read(path: &Path) -> Result<Self> {
        let ad = datasets::anndata::read_h5ad(path)?;
        Self::from_anndata(&ad, path)
    }

    pub fn from_anndata(ad: &AnnData, file: &Path) -> Result<Self> {
        let x =
            ad.x.as_ref()
                .ok_or_else(|| LcdError::Data(format!("{}: no X matrix", file.display())))?;
        let x = x_dense(x, file)?;
        let genes = ad.var_names().to_vec();
        if x.ncols() != genes.len() || x.nrows() != ad.n_obs() {
            return Err(LcdError::Data(format!(
                "{}: X is {:?}, obs × var is {} × {}",
                file.display(),
                x.dim(),
                ad.n_obs(),
                genes.len()
            )));
        }
        let labels = label_column(ad, file)?;
        let mut groups: BTreeMap<(bool, String), (Vec<String>, Vec<usize>)> = BTreeMap::new();
        for (i, l) in labels.iter().enumerate() {
            let targets = parse_condition(l)?;
            let ctrl = targets.is_empty() || is_control(l);
            let key = if ctrl {
                (false, "control".to_string())
            } else {
                (true, targets.join("+"))
            };
            groups
                .entry(key)
                .or_insert_with(|| (targets, Vec::new()))
                .1
                .push(i);
        }
        if !groups.contains_key(&(false, "control".to_string())) {
            return Err(LcdError::Data(format!(
                "{}: the screen has no control cells (obs[\"perturbation\"] = control/ctrl)",
                file.display()
            )));
        }
        let conditions = groups
            .into_iter()
            .map(|((_, name), (targets, rows))| Environment {
                name,
                targets,
                x: x.select(ndarray::Axis(0), &rows),
            })
            .collect();
        Ok(ScreenData { genes, conditions })
    }

    /// Fold `fold` of `n_folds` (None = train on everything, empty test set).
    pub fn split(&self, n_folds: usize, fold: Option<usize>) -> Result<Split> {
        let combos: Vec<usize> = (0..self.conditions.len())
            .filter(|&i| self.conditions[i].targets.len() >= 2)
            .collect();
        let Some(k) = fold else {
            return Ok(Split {
                train: (0..self.conditions.len()).collect(),
                test: vec![],
                dropped: vec![],
            });
        };
        if n_folds < 2 || k >= n_folds {
            return Err(LcdError::config(
                "fold",
                k,
                &format!("should be in 0..{n_folds} (with ≥ 2 folds)"),
            ));
        }
        let mut order = combos.clone();
        order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(SPLIT_SEED));
        let test_set: Vec<usize> = order
            .iter()
            .enumerate()
            .filter(|(p, _)| p % n_folds == k)
            .map(|(_, &i)| i)
            .collect();
        let train: Vec<usize> = (0..self.conditions.len())
            .filter(|i| !test_set.contains(i))
            .collect();
        let singles: std::collections::BTreeSet<&String> = train
            .iter()
            .filter(|&&i| self.conditions[i].targets.len() == 1)
            .map(|&i| &self.conditions[i].targets[0])
            .collect();
        let mut test = Vec::new();
        let mut dropped = Vec::new();
        for i in test_set {
            if self.conditions[i]
                .targets
                .iter()
                .all(|t| singles.contains(t))
            {
                test.push(i);
            } else {
                dropped.push(self.conditions[i].name.clone());
            }
        }
        Ok(Split {
            train,
            test,
            dropped,
        })
    }

    /// Training data of a split (control first).
    pub fn training_data(&self, split: &Split) -> TrainingData {
        TrainingData {
            genes: self.genes.clone(),
            envs: split
                .train
                .iter()
                .map(|&i| self.conditions[i].clone())
                .collect(),
        }
    }

    /// Restrict/reorder the genes to `genes` (a model's gene list); error if
    /// any is missing.
    pub fn select_genes(&self, genes: &[String]) -> Result<Self> {
        let pos: std::collections::HashMap<&str, usize> = self
            .genes
            .iter()
            .enumerate()
            .map(|(i, g)| (g.as_str(), i))
            .collect();
        let missing: Vec<&String> = genes
            .iter()
            .filter(|g| !pos.contains_key(g.as_str()))
            .collect();
        if !missing.is_empty() {
            return Err(LcdError::Data(format!(
                "gene list mismatch: {} of the model's {} genes are not in the screen (first: {:?})",
                missing.len(),
                genes.len(),
                missing.iter().take(5).collect::<Vec<_>>()
            )));
        }
        let idx: Vec<usize> = genes.iter().map(|g| pos[g.as_str()]).collect();
        Ok(ScreenData {
            genes: genes.to_vec(),
            conditions: self
                .conditions
                .iter()
                .map(|c| Environment {
                    name: c.name.clone(),
                    targets: c.targets.clone(),
                    x: c.x.select(ndarray::Axis(1), &idx),
                })
                .collect(),
        })
    }
}

/// Build an AnnData of predictions: `X` = cells (counts or expression),
/// `layers["latent"]` = the latent state of each cell's chain,
/// `obs["perturbation"]` = condition label, `uns["lcd"]` = notes.
pub fn prediction_anndata(
    genes: &[String],
    preds: &[crate::model::ConditionPrediction],
    notes: BTreeMap<String, datasets::anndata::Value>,
) -> Result<AnnData> {
    use datasets::anndata::{DataFrame, Value};
    let d = genes.len();
    let n: usize = preds.iter().map(|p| p.cells.nrows()).sum();
    let mut x = Vec::with_capacity(n * d);
    let mut lat = Vec::with_capacity(n * d);
    let mut labels = Vec::with_capacity(n);
    for p in preds {
        // Cells are `decodes` blocks of the chains: cell i decodes chain i mod chains.
        let chains = p.latent.nrows().max(1);
        x.extend(p.cells.iter().cloned());
        for i in 0..p.cells.nrows() {
            lat.extend(p.latent.row(i % chains).iter().cloned());
        }
        labels.extend(std::iter::repeat_n(Some(p.label.clone()), p.cells.nrows()));
    }
    let shape = ndarray::IxDyn(&[n, d]);
    let xa = ndarray::ArrayD::from_shape_vec(shape.clone(), x)
        .map_err(|e| LcdError::Data(e.to_string()))?;
    let la =
        ndarray::ArrayD::from_shape_vec(shape, lat).map_err(|e| LcdError::Data(e.to_string()))?;
    let mut obs = DataFrame::new((0..n).map(|i| format!("pred{i}")).collect());
    obs.set_column("perturbation", Column::categorical_from_labels(&labels));
    let var = DataFrame::new(genes.to_vec());
    let mut ad = AnnData {
        x: Some(Matrix::Dense(DenseArray::F32(xa))),
        obs,
        var,
        ..Default::default()
    };
    ad.layers
        .insert("latent".into(), Matrix::Dense(DenseArray::F32(la)));
    ad.uns.insert("lcd".into(), Value::Dict(notes));
    Ok(ad)
}
