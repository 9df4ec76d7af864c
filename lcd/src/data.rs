//! Plain training data for LCD, independent of the file format: a gene list
//! and environments (0 = control), each with its perturbation targets and a
//! cells × genes matrix (raw counts, or normalised expression in the
//! no-noise-model mode). The screen adapter ([`crate::screen`]) builds it
//! from an `.h5ad`.
use std::collections::BTreeSet;

use ndarray::Array2;

use crate::{LcdError, Result};

/// One experimental condition seen in training.
#[derive(Debug, Clone)]
pub struct Environment {
    /// Label as in the screen (`"ctrl"`, `"A"`, `"A+B"`).
    pub name: String,
    /// Perturbed genes (empty for control).
    pub targets: Vec<String>,
    /// `[n_cells, n_genes]`
    pub x: Array2<f32>,
}

#[derive(Debug, Clone)]
pub struct TrainingData {
    pub genes: Vec<String>,
    /// `envs[0]` is the control environment.
    pub envs: Vec<Environment>,
}

/// Split a condition label `"A+B"` into its targets (trimmed, sorted, unique).
/// `control_labels` (case-insensitive) map to the empty set.
pub fn parse_condition(label: &str) -> Result<Vec<String>> {
    let t = label.trim();
    if t.is_empty() {
        return Err(LcdError::Perturbation {
            label: label.into(),
            message: "empty perturbation label".into(),
        });
    }
    if is_control(t) {
        return Ok(Vec::new());
    }
    let mut set = BTreeSet::new();
    for part in t.split('+') {
        let p = part.trim();
        if p.is_empty() || is_control(p) {
            continue;
        }
        set.insert(p.to_string());
    }
    if set.is_empty() {
        return Err(LcdError::Perturbation {
            label: label.into(),
            message: "no target genes in label".into(),
        });
    }
    Ok(set.into_iter().collect())
}

/// Labels that denote control cells.
pub fn is_control(label: &str) -> bool {
    matches!(
        label.trim().to_ascii_lowercase().as_str(),
        "ctrl" | "control" | "non-targeting" | "nt" | ""
    )
}

impl TrainingData {
    pub fn n_genes(&self) -> usize {
        self.genes.len()
    }
    /// Check shapes, controls and values. `counts`: values must be finite,
    /// non-negative integers; otherwise only finite.
    pub fn validate(&self, counts: bool) -> Result<()> {
        let d = self.genes.len();
        if d == 0 {
            return Err(LcdError::Data("no genes".into()));
        }
        let Some(ctrl) = self.envs.first() else {
            return Err(LcdError::Data("no environments".into()));
        };
        if !ctrl.targets.is_empty() {
            return Err(LcdError::Data(format!(
                "the first environment must be the control, found {:?} (the screen has no control cells?)",
                ctrl.name
            )));
        }
        if ctrl.x.nrows() < 2 {
            return Err(LcdError::Data(format!(
                "control {:?} has {} cells, need ≥ 2",
                ctrl.name,
                ctrl.x.nrows()
            )));
        }
        for env in &self.envs {
            if env.x.ncols() != d {
                return Err(LcdError::Data(format!(
                    "{:?}: {} genes, expected {d}",
                    env.name,
                    env.x.ncols()
                )));
            }
            if env.x.nrows() == 0 {
                return Err(LcdError::Data(format!("{:?}: no cells", env.name)));
            }
            for ((i, g), &v) in env.x.indexed_iter() {
                let bad = if !v.is_finite() {
                    Some("a non-finite value")
                } else if counts && v < 0.0 {
                    Some("a negative count")
                } else if counts && v.fract() != 0.0 {
                    Some("a non-integer count (use --no-noise-model for normalised data)")
                } else {
                    None
                };
                if let Some(what) = bad {
                    return Err(LcdError::Data(format!(
                        "condition {:?}, cell {i}, gene {:?}: {what} ({v})",
                        env.name, self.genes[g]
                    )));
                }
            }
        }
        Ok(())
    }
    /// Sorted set of all targets perturbed in training (the embedding vocabulary).
    pub fn vocabulary(&self) -> Vec<String> {
        let set: BTreeSet<&String> = self.envs.iter().flat_map(|e| e.targets.iter()).collect();
        set.into_iter().cloned().collect()
    }
}

/// Library-size normalise each row to `target` total and `log1p` (metric space).
pub fn log_normalize(x: &Array2<f32>, target: f32) -> Array2<f32> {
    let mut out = x.clone();
    for mut row in out.rows_mut() {
        let tot: f32 = row.sum();
        let f = if tot > 0.0 { target / tot } else { 0.0 };
        row.mapv_inplace(|v| (v * f).ln_1p());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() -> Result<()> {
        assert_eq!(parse_condition("B+A")?, vec!["A".to_string(), "B".into()]);
        assert!(parse_condition("ctrl")?.is_empty());
        assert_eq!(parse_condition(" A + ctrl ")?, vec!["A".to_string()]);
        assert!(parse_condition("  ").is_err());
        Ok(())
    }

    #[test]
    fn validation_names_the_cell() {
        let x = Array2::from_shape_vec((2, 2), vec![1f32, 2.0, f32::NAN, 0.0]).unwrap_or_default();
        let td = TrainingData {
            genes: vec!["g0".into(), "g1".into()],
            envs: vec![Environment {
                name: "ctrl".into(),
                targets: vec![],
                x,
            }],
        };
        let e = td
            .validate(true)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("cell 1") && e.contains("g0") && e.contains("non-finite"),
            "{e}"
        );
    }

    #[test]
    fn log_normalize_rows() {
        let x = Array2::from_shape_vec((1, 2), vec![1f32, 3.0]).unwrap_or_default();
        let y = log_normalize(&x, 1e4);
        assert!((y[[0, 0]] - 2501f32.ln()).abs() < 1e-4);
    }
}
