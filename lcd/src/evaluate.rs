//! Evaluation on held-out conditions against the baselines of lcd.md:
//! `control` (control cells), `additive` (control cells + Σ_j single-gene
//! mean shifts, in the metric space), `pooled` (all perturbed training
//! cells), and `lcd` (the model's predictions). Metric space: library-size
//! normalised to 1e4 and log1p for counts; the raw values otherwise.
//! Metrics on all genes and on the condition's top-n DE genes (largest
//! |true mean − control mean|), suffix `_de{n}`.
use std::collections::BTreeMap;

use ndarray::{Array2, Axis};
use rand::seq::index::sample;
use rand::SeedableRng;
use serde::Serialize;

use crate::data::log_normalize;
use crate::metrics::{
    bandwidths, energy_distance, mean_sem, mean_vec, mmd, pearson, rmse, w1_mean,
};
use crate::screen::{ScreenData, Split};
use crate::Result;

pub const METHODS: [&str; 4] = ["lcd", "additive", "control", "pooled"];

#[derive(Debug, Serialize)]
pub struct ConditionResult {
    pub condition: String,
    pub n_cells: usize,
    pub unseen_targets: Vec<String>,
    pub methods: BTreeMap<String, BTreeMap<String, f64>>,
}

#[derive(Debug, Serialize)]
pub struct Evaluation {
    pub conditions: Vec<ConditionResult>,
    /// Mean over test conditions, per method and metric.
    pub summary: BTreeMap<String, BTreeMap<String, f64>>,
    /// Standard error of that mean.
    pub summary_sem: BTreeMap<String, BTreeMap<String, f64>>,
    pub dropped: Vec<String>,
}

/// Metric space transform.
pub fn to_metric_space(x: &Array2<f32>, counts: bool) -> Array2<f32> {
    if counts {
        log_normalize(x, 1e4)
    } else {
        x.clone()
    }
}

fn subsample(x: &Array2<f32>, max: usize, rng: &mut rand_chacha::ChaCha8Rng) -> Array2<f32> {
    if x.nrows() <= max {
        return x.clone();
    }
    let mut idx = sample(rng, x.nrows(), max).into_vec();
    idx.sort_unstable();
    x.select(Axis(0), &idx)
}

/// All metrics of `pred` against `truth` (both in metric space) on `genes`.
pub fn metrics(
    pred: &Array2<f32>,
    truth: &Array2<f32>,
    ctrl_mean: &[f64],
    genes: &[usize],
    out: &mut BTreeMap<String, f64>,
    suffix: &str,
) {
    let p = pred.select(Axis(1), genes);
    let t = truth.select(Axis(1), genes);
    let c: Vec<f64> = genes.iter().map(|&g| ctrl_mean[g]).collect();
    let (mp, mt) = (mean_vec(p.view()), mean_vec(t.view()));
    let dp: Vec<f64> = mp.iter().zip(&c).map(|(a, b)| a - b).collect();
    let dt: Vec<f64> = mt.iter().zip(&c).map(|(a, b)| a - b).collect();
    out.insert(format!("rmse{suffix}"), rmse(&mp, &mt));
    out.insert(format!("pearson_delta{suffix}"), pearson(&dp, &dt));
    out.insert(
        format!("energy_distance{suffix}"),
        energy_distance(p.view(), t.view()),
    );
    out.insert(
        format!("mmd{suffix}"),
        mmd(p.view(), t.view(), &bandwidths(genes.len())),
    );
    out.insert(format!("w1{suffix}"), w1_mean(p.view(), t.view()));
}

/// Evaluate `lcd_pred[i]` (cells of `split.test[i]`, in data units) and the baselines.
pub fn evaluate(
    screen: &ScreenData,
    split: &Split,
    lcd_pred: &[Array2<f32>],
    unseen: &[Vec<String>],
    counts: bool,
    max_cells: usize,
    n_de: usize,
) -> Result<Evaluation> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
    let ms = |x: &Array2<f32>| to_metric_space(x, counts);
    let ctrl = ms(&screen.conditions[0].x);
    let ctrl_mean = mean_vec(ctrl.view());
    let d = screen.genes.len();
    // Single-gene mean shifts from training singles.
    let mut shifts: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut pooled_parts = Vec::new();
    for &i in &split.train {
        let c = &screen.conditions[i];
        if c.targets.is_empty() {
            continue;
        }
        let m = ms(&c.x);
        if c.targets.len() == 1 {
            let mv = mean_vec(m.view());
            shifts.insert(
                &c.targets[0],
                mv.iter().zip(&ctrl_mean).map(|(a, b)| a - b).collect(),
            );
        }
        pooled_parts.push(subsample(&m, max_cells, &mut rng));
    }
    let pooled_views: Vec<_> = pooled_parts.iter().map(|a| a.view()).collect();
    let pooled_all = if pooled_views.is_empty() {
        ctrl.clone()
    } else {
        ndarray::concatenate(Axis(0), &pooled_views).unwrap_or_else(|_| ctrl.clone())
    };
    let pooled = subsample(&pooled_all, max_cells, &mut rng);
    let ctrl_sub = subsample(&ctrl, max_cells, &mut rng);
    let mut results = Vec::new();
    for (k, &ti) in split.test.iter().enumerate() {
        let cond = &screen.conditions[ti];
        let truth = subsample(&ms(&cond.x), max_cells, &mut rng);
        let mut additive = ctrl_sub.clone();
        for t in &cond.targets {
            if let Some(s) = shifts.get(t.as_str()) {
                for mut row in additive.rows_mut() {
                    for (v, sh) in row.iter_mut().zip(s) {
                        *v += *sh as f32;
                    }
                }
            }
        }
        let lcd = subsample(&ms(&lcd_pred[k]), max_cells, &mut rng);
        let tm = mean_vec(truth.view());
        let mut order: Vec<usize> = (0..d).collect();
        order.sort_by(|&a, &b| {
            (tm[b] - ctrl_mean[b])
                .abs()
                .total_cmp(&(tm[a] - ctrl_mean[a]).abs())
        });
        let de: Vec<usize> = order.into_iter().take(n_de.min(d)).collect();
        let all: Vec<usize> = (0..d).collect();
        let mut methods = BTreeMap::new();
        for (name, pred) in [
            ("lcd", &lcd),
            ("additive", &additive),
            ("control", &ctrl_sub),
            ("pooled", &pooled),
        ] {
            let mut m = BTreeMap::new();
            metrics(pred, &truth, &ctrl_mean, &all, &mut m, "");
            metrics(pred, &truth, &ctrl_mean, &de, &mut m, &format!("_de{n_de}"));
            methods.insert(name.to_string(), m);
        }
        results.push(ConditionResult {
            condition: cond.name.clone(),
            n_cells: cond.x.nrows(),
            unseen_targets: unseen.get(k).cloned().unwrap_or_default(),
            methods,
        });
    }
    let mut summary = BTreeMap::new();
    let mut summary_sem = BTreeMap::new();
    for m in METHODS {
        let mut s = BTreeMap::new();
        let mut e = BTreeMap::new();
        if let Some(first) = results.first() {
            for key in first.methods[m].keys() {
                let v: Vec<f64> = results.iter().map(|r| r.methods[m][key]).collect();
                let (mean, sem) = mean_sem(&v);
                s.insert(key.clone(), mean);
                e.insert(key.clone(), sem);
            }
        }
        summary.insert(m.to_string(), s);
        summary_sem.insert(m.to_string(), e);
    }
    Ok(Evaluation {
        conditions: results,
        summary,
        summary_sem,
        dropped: split.dropped.clone(),
    })
}
