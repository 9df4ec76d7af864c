//! Adapter from an AnnData screen (`.h5ad`: counts or expression in X,
//! condition labels in `obs["perturbation"]`, `"A+B"` for combinations,
//! `control`/`ctrl` for controls) to LCD's [`TrainingData`].
//!
//! [`ScreenData::load`] follows lcd.md's protocol through
//! `datasets::screen`: cell QC, conditions below `min_cells` left out, every
//! single (and the control) always in training, doubles dealt into K folds
//! after setting aside validation doubles, test doubles whose genes were not
//! all perturbed in training dropped, and at most `n_genes` genes (test
//! targets, training targets, then HVGs on control + training singles).
use std::collections::BTreeMap;
use std::path::Path;

use datasets::anndata::{Column, DenseArray, Matrix};
use datasets::AnnData;

use crate::data::{Environment, TrainingData};
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

/// Training, validation and test conditions (indices into `ScreenData::conditions`).
#[derive(Debug, Clone)]
pub struct Split {
    pub train: Vec<usize>,
    /// Validation doubles (held out of training and test; for tuning).
    pub val: Vec<usize>,
    pub test: Vec<usize>,
    /// Test/validation combinations dropped because a target was never perturbed in training.
    pub dropped: Vec<String>,
}

/// How `lcd fit` / `lcd evaluate` turn an `.h5ad` into training data
/// (lcd.md "Evaluation protocol"): cell QC, conditions with too few cells
/// left out, the fold split with validation doubles, and the gene selection
/// (test targets, training targets, then HVGs on control + training singles).
/// Stored in the model so `evaluate` rebuilds the same split.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScreenSpec {
    /// Keep at most this many genes (all when the screen has fewer).
    pub n_genes: usize,
    /// Conditions with fewer cells (after QC) are left out (lcd.md: 100).
    pub min_cells: usize,
    pub min_counts: Option<f64>,
    pub min_genes: Option<usize>,
    pub max_mito_fraction: Option<f64>,
    /// Folds the doubles are dealt into.
    pub n_folds: usize,
    /// Validation doubles (at most a fifth of all doubles).
    pub n_val: usize,
    /// Held-out fold (`None`: train on every condition).
    pub fold: Option<usize>,
}

impl Default for ScreenSpec {
    fn default() -> Self {
        ScreenSpec {
            n_genes: 1000,
            min_cells: 100,
            min_counts: None,
            min_genes: None,
            max_mito_fraction: None,
            n_folds: 10,
            n_val: 20,
            fold: None,
        }
    }
}

/// A screen read for LCD: the data, its split and what was left out.
pub struct LoadedScreen {
    pub data: ScreenData,
    pub split: Split,
    /// Conditions left out for having fewer than `min_cells` cells: (label, cells).
    pub too_few_cells: Vec<(String, usize)>,
    /// Cells removed by QC.
    pub qc_removed: usize,
    /// HVGs added after the perturbed genes (0 when all genes were kept).
    pub n_hvg: usize,
    /// Genes in the file.
    pub n_vars: usize,
}

impl ScreenSpec {
    pub fn validate(&self) -> Result<()> {
        if self.n_genes == 0 {
            return Err(LcdError::config("n_genes", 0, "should be ≥ 1"));
        }
        if let Some(k) = self.fold {
            if self.n_folds < 2 || k >= self.n_folds {
                return Err(LcdError::config(
                    "fold",
                    k,
                    &format!("should be in 0..{} (with ≥ 2 folds)", self.n_folds),
                ));
            }
        }
        if let Some(m) = self.max_mito_fraction {
            if !(0.0..=1.0).contains(&m) {
                return Err(LcdError::config(
                    "max_mito_fraction",
                    m,
                    "should be in [0, 1]",
                ));
            }
        }
        Ok(())
    }
}

impl ScreenData {
    /// Read `path` as `spec` says. `genes`: use exactly these genes (a
    /// trained model's list; an error names the missing ones) instead of the
    /// selection.
    pub fn load(path: &Path, spec: &ScreenSpec, genes: Option<&[String]>) -> Result<LoadedScreen> {
        use datasets::screen::{ConditionKind, QcOptions, Screen, ScreenOptions, SplitOptions};
        spec.validate()?;
        let file = path.display();
        let ad = datasets::anndata::read_h5ad(path)?;
        let opts = ScreenOptions {
            qc: QcOptions {
                min_counts: spec.min_counts,
                min_genes: spec.min_genes,
                max_mito_fraction: spec.max_mito_fraction,
                min_cells_per_condition: spec.min_cells,
            },
            ..Default::default()
        };
        let screen =
            Screen::from_anndata(&ad, opts).map_err(|e| LcdError::Data(format!("{file}: {e}")))?;
        if let Some(list) = genes {
            let missing: Vec<&String> = list
                .iter()
                .filter(|g| screen.var_index(g).is_none())
                .collect();
            if !missing.is_empty() {
                return Err(LcdError::Data(format!(
                    "{file}: gene list mismatch: {} of the model's {} genes are not in the screen (first: {:?})",
                    missing.len(),
                    list.len(),
                    missing.iter().take(5).collect::<Vec<_>>()
                )));
            }
        }
        let conds = screen.conditions();
        let report = screen.report();
        let ctrl = conds
            .iter()
            .position(|c| c.kind == ConditionKind::Control)
            .ok_or_else(|| {
                LcdError::Data(format!(
                    "{file}: the screen has no control cells (obs[\"{}\"] = control/ctrl)",
                    report.column
                ))
            })?;
        if conds[ctrl].excluded {
            return Err(LcdError::Data(format!(
                "{file}: the control has {} cells after QC, fewer than --min-cells {}",
                conds[ctrl].n_cells(),
                spec.min_cells
            )));
        }
        let ds_split = match spec.fold {
            Some(k) => screen
                .split(
                    k,
                    &SplitOptions {
                        n_folds: spec.n_folds,
                        n_val: spec.n_val,
                        seed: SPLIT_SEED,
                    },
                )
                .map_err(|e| LcdError::Data(format!("{file}: {e}")))?,
            None => datasets::screen::Split {
                fold: 0,
                train: (0..conds.len()).filter(|&i| !conds[i].excluded).collect(),
                val: vec![],
                test: vec![],
                dropped: vec![],
            },
        };
        if !ds_split.train.iter().any(|&i| i != ctrl) {
            return Err(LcdError::Data(format!(
                "{file}: no perturbation has ≥ {} cells after QC (lower --min-cells?); left out: {:?}",
                spec.min_cells,
                report.too_few_cells.iter().take(5).collect::<Vec<_>>()
            )));
        }
        // Genes: a given list, all genes, or the lcd.md selection (kept in file order).
        let n_vars = ad.n_vars();
        let mut n_hvg = 0;
        let gene_idx: Vec<usize> = match genes {
            Some(list) => list.iter().filter_map(|g| screen.var_index(g)).collect(),
            None if n_vars <= spec.n_genes => (0..n_vars).collect(),
            None => {
                let sel = screen
                    .select_genes(&ds_split, spec.n_genes)
                    .map_err(|e| LcdError::Data(format!("{file}: {e}")))?;
                n_hvg = sel.n_hvg;
                let mut g = sel.genes;
                g.sort_unstable();
                g
            }
        };
        let names = ad.var_names();
        let gene_names: Vec<String> = gene_idx.iter().map(|&g| names[g].clone()).collect();
        // Usable conditions, control first (Screen orders by number of targets).
        let keep: Vec<usize> = (0..conds.len()).filter(|&i| !conds[i].excluded).collect();
        let pos: std::collections::HashMap<usize, usize> =
            keep.iter().enumerate().map(|(p, &i)| (i, p)).collect();
        let mut conditions = Vec::with_capacity(keep.len());
        for &i in &keep {
            let c = &conds[i];
            let x = screen
                .dense_counts(&c.cells, &gene_idx)
                .map_err(|e| LcdError::Data(format!("{file}: {e}")))?;
            conditions.push(Environment {
                name: if c.targets.is_empty() {
                    "control".into()
                } else {
                    c.targets.join("+")
                },
                targets: c.targets.clone(),
                x,
            });
        }
        let map = |v: &[usize]| -> Vec<usize> { v.iter().map(|i| pos[i]).collect() };
        let split = Split {
            train: map(&ds_split.train),
            val: map(&ds_split.val),
            test: map(&ds_split.test),
            dropped: ds_split.dropped.iter().map(|d| d.label.clone()).collect(),
        };
        Ok(LoadedScreen {
            data: ScreenData {
                genes: gene_names,
                conditions,
            },
            split,
            too_few_cells: report.too_few_cells.clone(),
            qc_removed: report.qc_low_counts + report.qc_low_genes + report.qc_high_mito,
            n_hvg,
            n_vars,
        })
    }

    /// Every condition and gene of `path`, no QC (`plot expression`).
    pub fn read(path: &Path) -> Result<Self> {
        let spec = ScreenSpec {
            n_genes: usize::MAX,
            min_cells: 0,
            ..Default::default()
        };
        Ok(Self::load(path, &spec, None)?.data)
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
