//! Perturbation screens: a [`Screen`] view over an [`AnnData`]
//! (design/data.md "Perturbation screens", design/lcd.md "Evaluation
//! protocol").
//!
//! ```text
//! let screen = Screen::from_anndata(&adata, ScreenOptions::default())?;
//! for c in screen.conditions() { c.label, c.targets, c.target_vars, c.cells, c.kind }
//! let split = screen.split(fold, &SplitOptions::default())?;   // train / val / test condition ids
//! let genes = screen.select_genes(&split, 1000)?;               // test-perturbed, train-perturbed, HVGs
//! let x = screen.dense_counts(&cells, &genes.genes)?;           // [cells, genes] f32, raw
//! let y = screen.normalized(&cells, &genes.genes)?;             // log1p(1e4 · x / library size)
//! println!("{}", screen.report());                              // odd labels, QC, exclusions
//! ```
//!
//! - Perturbation column: `options.perturbation_column`, else the first of
//!   `perturbation`, `condition`, `perturbation_name`, `guide_ids`, `gene`.
//! - Control labels: `control`, `ctrl`, `non-targeting`, empty
//!   (case-insensitive, configurable); a control part inside a combination
//!   is dropped (`TP53+ctrl` = `TP53`).
//! - Separator: given, or detected among `+ | , _` (see [`labels`]).
//! - Conditions are keyed by their target *set*: `A+B` and `B+A` merge
//!   (reported as aliases). Cells with a missing label are reported.
//! - Targets not in `var_names` keep `None` as var index and are reported
//!   with their cell counts; the condition stays (a model can still embed
//!   the gene by name).
//! - Cell QC (min counts, min genes, max mito fraction) removes cells from
//!   their conditions; conditions with fewer than `min_cells_per_condition`
//!   cells are marked `excluded` (left out of splits) and reported.
//! - Counts come from `X` or `options.layer`, dense or CSR/CSC of any dtype.
pub mod labels;
mod matrix;
pub mod preprocess;
pub mod split;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use ndarray::Array2;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub use preprocess::{
    is_mito, normalize_log1p, seurat_dispersion, top_dispersed, CellStats, GeneSelection, QcOptions,
};
pub use split::{make_split, DroppedDouble, Split, SplitOptions};

use crate::anndata::AnnData;
use crate::error::{DatasetsError, Result};
use matrix::Rows;

/// Options of the screen view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScreenOptions {
    /// obs column with perturbation labels (auto-detected when `None`).
    pub perturbation_column: Option<String>,
    /// Labels meaning "no perturbation" (case-insensitive).
    pub control_labels: Vec<String>,
    /// Combination separator (detected when `None`).
    pub separator: Option<char>,
    /// Read counts from this layer instead of `X`.
    pub layer: Option<String>,
    pub qc: QcOptions,
}

impl Default for ScreenOptions {
    fn default() -> Self {
        Self {
            perturbation_column: None,
            control_labels: labels::CONTROL_LABELS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            separator: None,
            layer: None,
            qc: QcOptions::default(),
        }
    }
}

/// Number of targets of a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum ConditionKind {
    Control,
    Single,
    Double,
    Higher,
}

impl ConditionKind {
    pub fn from_order(n: usize) -> Self {
        match n {
            0 => ConditionKind::Control,
            1 => ConditionKind::Single,
            2 => ConditionKind::Double,
            _ => ConditionKind::Higher,
        }
    }
}

/// One condition of the screen.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// First label seen for this target set.
    pub label: String,
    /// Other labels with the same target set.
    pub aliases: Vec<String>,
    /// Target gene names, sorted.
    pub targets: Vec<String>,
    /// var index of each target (`None`: not among var_names).
    pub target_vars: Vec<Option<usize>>,
    /// obs indices of the cells that passed QC.
    pub cells: Vec<usize>,
    pub kind: ConditionKind,
    /// Too few cells: left out of splits.
    pub excluded: bool,
}

impl Condition {
    pub fn n_cells(&self) -> usize {
        self.cells.len()
    }
}

/// Everything odd found while building the view.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ScreenReport {
    pub column: String,
    pub separator: char,
    pub n_cells: usize,
    /// Cells whose label is missing (NaN / code −1).
    pub missing_label_cells: usize,
    /// Target name → cells, for targets not among var_names.
    pub unknown_targets: BTreeMap<String, usize>,
    /// (label, cells) of conditions below `min_cells_per_condition`.
    pub too_few_cells: Vec<(String, usize)>,
    /// alias → canonical label, for labels naming the same target set.
    pub merged_labels: Vec<(String, String)>,
    pub qc_low_counts: usize,
    pub qc_low_genes: usize,
    pub qc_high_mito: usize,
    pub n_mito_genes: usize,
    /// A mito filter was asked for but the screen has no `MT-` genes.
    pub mito_filter_skipped: bool,
}

impl fmt::Display for ScreenReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "screen: column {:?}, separator {:?}, {} cells",
            self.column, self.separator, self.n_cells
        )?;
        if self.missing_label_cells > 0 {
            writeln!(f, "  {} cells without a label", self.missing_label_cells)?;
        }
        if !self.unknown_targets.is_empty() {
            let list: Vec<String> = self
                .unknown_targets
                .iter()
                .map(|(g, n)| format!("{g} ({n} cells)"))
                .collect();
            writeln!(
                f,
                "  {} targets not in var_names: {}",
                list.len(),
                list.join(", ")
            )?;
        }
        if !self.too_few_cells.is_empty() {
            let list: Vec<String> = self
                .too_few_cells
                .iter()
                .map(|(l, n)| format!("{l} ({n})"))
                .collect();
            writeln!(
                f,
                "  {} conditions with too few cells, excluded from splits: {}",
                list.len(),
                list.join(", ")
            )?;
        }
        for (a, c) in &self.merged_labels {
            writeln!(f, "  label {a:?} merged into {c:?} (same targets)")?;
        }
        writeln!(
            f,
            "  QC removed: {} low counts, {} low genes, {} high mito",
            self.qc_low_counts, self.qc_low_genes, self.qc_high_mito
        )?;
        if self.mito_filter_skipped {
            writeln!(f, "  mito filter skipped: no MT- genes")?;
        }
        Ok(())
    }
}

/// A perturbation screen over a borrowed AnnData.
pub struct Screen<'a> {
    adata: &'a AnnData,
    rows: Rows<'a>,
    conditions: Vec<Condition>,
    report: ScreenReport,
    stats: Vec<CellStats>,
    var_lookup: HashMap<&'a str, usize>,
}

fn screen_err(msg: String) -> DatasetsError {
    DatasetsError::Screen(msg)
}

impl<'a> Screen<'a> {
    /// Build the view: parse labels, run cell QC, group conditions.
    pub fn from_anndata(adata: &'a AnnData, opts: ScreenOptions) -> Result<Self> {
        let column = match &opts.perturbation_column {
            Some(c) => c.clone(),
            None => labels::detect_column(adata).ok_or_else(|| {
                let have: Vec<&str> = adata.obs.columns.iter().map(|(n, _)| n.as_str()).collect();
                screen_err(format!(
                    "no perturbation column: expected one of {:?}, obs has {:?}",
                    labels::PERTURBATION_COLUMNS,
                    have
                ))
            })?,
        };
        let col = adata
            .obs
            .column(&column)
            .ok_or_else(|| screen_err(format!("obs has no column {column:?}")))?;
        let cell_labels = col.labels();
        if cell_labels.len() != adata.n_obs() {
            return Err(DatasetsError::Shape {
                context: format!("obs/{column}"),
                expected: format!("{} rows", adata.n_obs()),
                found: format!("{}", cell_labels.len()),
            });
        }
        let x = match &opts.layer {
            None => adata
                .x
                .as_ref()
                .ok_or_else(|| screen_err("the AnnData has no X".into()))?,
            Some(l) => adata
                .layers
                .get(l)
                .ok_or_else(|| screen_err(format!("no layer {l:?}")))?,
        };
        let (nr, nc) = x.shape2();
        if (nr, nc) != (adata.n_obs(), adata.n_vars()) {
            return Err(DatasetsError::Shape {
                context: "counts matrix".into(),
                expected: format!("({}, {})", adata.n_obs(), adata.n_vars()),
                found: format!("({nr}, {nc})"),
            });
        }
        let rows = Rows::new(x)?;
        let var_lookup: HashMap<&str, usize> = adata
            .var_names()
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let var_set: HashSet<&str> = var_lookup.keys().copied().collect();
        let controls = &opts.control_labels;
        let distinct: Vec<&str> = {
            let mut seen = HashSet::new();
            cell_labels
                .iter()
                .flatten()
                .map(String::as_str)
                .filter(|l| seen.insert(*l))
                .collect()
        };
        let sep = opts.separator.unwrap_or_else(|| {
            labels::detect_separator(distinct.iter().copied(), &var_set, controls)
        });
        let mut report = ScreenReport {
            column: column.clone(),
            separator: sep,
            n_cells: adata.n_obs(),
            ..Default::default()
        };

        // Cell QC.
        let mito: Vec<bool> = adata.var_names().iter().map(|n| is_mito(n)).collect();
        report.n_mito_genes = mito.iter().filter(|&&m| m).count();
        let stats: Vec<CellStats> = (0..nr)
            .into_par_iter()
            .map(|r| {
                let mut s = CellStats::default();
                rows.for_row(r, |g, v| {
                    s.total += v;
                    if v != 0.0 {
                        s.n_genes += 1;
                    }
                    if mito[g] {
                        s.mito += v;
                    }
                });
                s
            })
            .collect();
        let qc = &opts.qc;
        let use_mito = qc.max_mito_fraction.is_some() && report.n_mito_genes > 0;
        report.mito_filter_skipped = qc.max_mito_fraction.is_some() && !use_mito;
        let mut pass = vec![true; nr];
        for (r, s) in stats.iter().enumerate() {
            if qc.min_counts.is_some_and(|m| s.total < m) {
                report.qc_low_counts += 1;
                pass[r] = false;
            } else if qc.min_genes.is_some_and(|m| s.n_genes < m) {
                report.qc_low_genes += 1;
                pass[r] = false;
            } else if use_mito
                && qc
                    .max_mito_fraction
                    .is_some_and(|m| s.total > 0.0 && s.mito / s.total > m)
            {
                report.qc_high_mito += 1;
                pass[r] = false;
            }
        }

        // Group cells by target set.
        let mut parsed: HashMap<&str, Vec<String>> = HashMap::new();
        for l in &distinct {
            let mut t = labels::parse_label(l, sep, controls);
            t.sort();
            t.dedup();
            parsed.insert(l, t);
        }
        let mut by_set: HashMap<Vec<String>, usize> = HashMap::new();
        let mut conditions: Vec<Condition> = Vec::new();
        for l in &distinct {
            let t = &parsed[l];
            match by_set.get(t) {
                Some(&i) => {
                    conditions[i].aliases.push(l.to_string());
                    report
                        .merged_labels
                        .push((l.to_string(), conditions[i].label.clone()));
                }
                None => {
                    by_set.insert(t.clone(), conditions.len());
                    conditions.push(Condition {
                        label: l.to_string(),
                        aliases: vec![],
                        target_vars: t
                            .iter()
                            .map(|g| var_lookup.get(g.as_str()).copied())
                            .collect(),
                        kind: ConditionKind::from_order(t.len()),
                        targets: t.clone(),
                        cells: vec![],
                        excluded: false,
                    });
                }
            }
        }
        let label_to_cond: HashMap<&str, usize> =
            distinct.iter().map(|l| (*l, by_set[&parsed[l]])).collect();
        for (r, l) in cell_labels.iter().enumerate() {
            match l {
                None => report.missing_label_cells += 1,
                Some(l) => {
                    let i = label_to_cond[l.as_str()];
                    for (g, v) in conditions[i].targets.iter().zip(&conditions[i].target_vars) {
                        if v.is_none() {
                            *report.unknown_targets.entry(g.clone()).or_default() += 1;
                        }
                    }
                    if pass[r] {
                        conditions[i].cells.push(r);
                    }
                }
            }
        }
        // Control first, then by order and label.
        conditions.sort_by(|a, b| (a.targets.len(), &a.label).cmp(&(b.targets.len(), &b.label)));
        for c in &mut conditions {
            if c.cells.len() < qc.min_cells_per_condition {
                c.excluded = true;
                report.too_few_cells.push((c.label.clone(), c.cells.len()));
            }
        }
        Ok(Self {
            adata,
            rows,
            conditions,
            report,
            stats,
            var_lookup,
        })
    }

    pub fn adata(&self) -> &'a AnnData {
        self.adata
    }
    pub fn conditions(&self) -> &[Condition] {
        &self.conditions
    }
    /// Condition by label or alias.
    pub fn condition(&self, label: &str) -> Option<&Condition> {
        self.conditions
            .iter()
            .find(|c| c.label == label || c.aliases.iter().any(|a| a == label))
    }
    pub fn control(&self) -> Option<&Condition> {
        self.conditions
            .iter()
            .find(|c| c.kind == ConditionKind::Control)
    }
    /// Indices of conditions of one kind.
    pub fn of_kind(&self, kind: ConditionKind) -> Vec<usize> {
        (0..self.conditions.len())
            .filter(|&i| self.conditions[i].kind == kind)
            .collect()
    }
    pub fn report(&self) -> &ScreenReport {
        &self.report
    }
    pub fn var_index(&self, gene: &str) -> Option<usize> {
        self.var_lookup.get(gene).copied()
    }
    /// Per-cell total counts over all genes (library sizes), obs order.
    pub fn library_sizes(&self) -> Vec<f64> {
        self.stats.iter().map(|s| s.total).collect()
    }
    pub fn cell_stats(&self) -> &[CellStats] {
        &self.stats
    }

    fn check(&self, cells: &[usize], genes: &[usize]) -> Result<()> {
        if let Some(&c) = cells.iter().find(|&&c| c >= self.adata.n_obs()) {
            return Err(screen_err(format!(
                "cell index {c} out of range (n_obs = {})",
                self.adata.n_obs()
            )));
        }
        if let Some(&g) = genes.iter().find(|&&g| g >= self.adata.n_vars()) {
            return Err(screen_err(format!(
                "gene index {g} out of range (n_vars = {})",
                self.adata.n_vars()
            )));
        }
        Ok(())
    }

    /// Raw counts `[cells.len(), genes.len()]`.
    pub fn dense_counts(&self, cells: &[usize], genes: &[usize]) -> Result<Array2<f32>> {
        self.check(cells, genes)?;
        Ok(self.rows.block(cells, genes, self.adata.n_vars()))
    }

    /// `log1p(1e4 · counts / library size)` `[cells.len(), genes.len()]`.
    pub fn normalized(&self, cells: &[usize], genes: &[usize]) -> Result<Array2<f32>> {
        let mut x = self.dense_counts(cells, genes)?;
        let libs: Vec<f64> = cells.iter().map(|&c| self.stats[c].total).collect();
        normalize_log1p(&mut x, &libs, 1e4);
        Ok(x)
    }

    /// Fold `fold` of unseen doubles (see [`split`]).
    pub fn split(&self, fold: usize, opts: &SplitOptions) -> Result<Split> {
        make_split(&self.conditions, fold, opts)
    }

    /// Seurat-flavour normalised dispersion of every gene over `cells`.
    pub fn dispersions(&self, cells: &[usize]) -> Vec<f64> {
        let g = self.adata.n_vars();
        let (sum, sumsq) = cells
            .par_iter()
            .fold(
                || (vec![0.0; g], vec![0.0; g]),
                |(mut s, mut ss), &c| {
                    let lib = self.stats[c].total;
                    if lib > 0.0 {
                        self.rows.for_row(c, |j, v| {
                            let x = v * 1e4 / lib;
                            s[j] += x;
                            ss[j] += x * x;
                        });
                    }
                    (s, ss)
                },
            )
            .reduce(
                || (vec![0.0; g], vec![0.0; g]),
                |(mut a, mut aa), (b, bb)| {
                    a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                    aa.iter_mut().zip(&bb).for_each(|(x, y)| *x += y);
                    (a, aa)
                },
            );
        seurat_dispersion(&sum, &sumsq, cells.len())
    }

    /// Evaluation genes (design/lcd.md): genes perturbed in test, then genes
    /// perturbed in training, then HVGs on control + training singles, up to
    /// `n_genes`.
    pub fn select_genes(&self, split: &Split, n_genes: usize) -> Result<GeneSelection> {
        let mut chosen: Vec<usize> = Vec::new();
        let mut taken = vec![false; self.adata.n_vars()];
        let mut push = |ids: &[usize], chosen: &mut Vec<usize>| {
            let mut k = 0;
            for &i in ids {
                for v in self.conditions[i].target_vars.iter().flatten() {
                    if !taken[*v] {
                        taken[*v] = true;
                        chosen.push(*v);
                        k += 1;
                    }
                }
            }
            k
        };
        let n_test = push(&split.test, &mut chosen);
        let n_train = push(&split.train, &mut chosen);
        let truncated = chosen.len() > n_genes;
        chosen.truncate(n_genes);
        let mut n_hvg = 0;
        if chosen.len() < n_genes {
            let cells: Vec<usize> = split
                .train
                .iter()
                .filter(|&&i| {
                    matches!(
                        self.conditions[i].kind,
                        ConditionKind::Control | ConditionKind::Single
                    )
                })
                .flat_map(|&i| self.conditions[i].cells.iter().copied())
                .collect();
            if cells.is_empty() {
                return Err(screen_err(
                    "no control or training-single cells to compute HVGs on".into(),
                ));
            }
            let z = self.dispersions(&cells);
            let mut in_sel = vec![false; z.len()];
            for &g in &chosen {
                in_sel[g] = true;
            }
            let mut hvg = top_dispersed(&z, n_genes - chosen.len(), &in_sel);
            // Fewer genes with a dispersion than asked for: fill up with the
            // rest in var order (as before; scanpy would return fewer).
            for &g in &hvg {
                in_sel[g] = true;
            }
            let short = n_genes - chosen.len() - hvg.len();
            hvg.extend((0..z.len()).filter(|&g| !in_sel[g]).take(short));
            for g in hvg {
                chosen.push(g);
                n_hvg += 1;
            }
        }
        Ok(GeneSelection {
            genes: chosen,
            n_test_perturbed: n_test.min(n_genes),
            n_train_perturbed: n_train.min(n_genes.saturating_sub(n_test)),
            n_hvg,
            truncated,
        })
    }
}
