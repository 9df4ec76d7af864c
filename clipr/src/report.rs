//! Everything one estimator run writes into an output directory, and the
//! alignment of a ground truth onto the model's genes.
use std::fmt::Write as _;
use std::path::Path;

use ndarray::Array2;
use serde_json::json;

use crate::error::{CliprError, Result};
use crate::estimate::{symmetry_ratio, Effects};
use crate::export::{
    dot, edges_tsv, graphml, heatmap_png, modules_tsv, select_edges, to_graph, write_atomic,
    EdgeSelect,
};
use crate::metrics::CausalMetrics;
use crate::modules::Modules;

/// The full effect matrix as TSV (first column = source gene, header = target genes).
pub fn matrix_tsv(a: &Array2<f64>, genes: &[String]) -> String {
    let mut s = String::from("source");
    for g in genes {
        let _ = write!(s, "\t{g}");
    }
    s.push('\n');
    for (i, g) in genes.iter().enumerate() {
        s.push_str(g);
        for j in 0..genes.len() {
            let _ = write!(s, "\t{:.6e}", a[[i, j]]);
        }
        s.push('\n');
    }
    s
}

/// Writes `effects.tsv`, `edges.tsv`, `graph.graphml`, `graph.dot`,
/// `modules.tsv`, `heatmap.png` and `summary.json` into `dir`.
pub fn write_outputs(
    dir: &Path,
    genes: &[String],
    eff: &Effects,
    modules: &Modules,
    sel: EdgeSelect,
    metrics: Option<&CausalMetrics>,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| CliprError::Io {
        path: dir.into(),
        source,
    })?;
    let a = &eff.a_causal;
    write_atomic(&dir.join("effects.tsv"), matrix_tsv(a, genes).as_bytes())?;
    let edges = select_edges(a, sel);
    write_atomic(&dir.join("edges.tsv"), edges_tsv(&edges, genes).as_bytes())?;
    let g = to_graph(&edges, genes);
    write_atomic(
        &dir.join("graph.graphml"),
        graphml(&g, Some(&modules.module)).as_bytes(),
    )?;
    write_atomic(&dir.join("graph.dot"), dot(&g).as_bytes())?;
    write_atomic(
        &dir.join("modules.tsv"),
        modules_tsv(modules, genes).as_bytes(),
    )?;
    heatmap_png(&dir.join("heatmap.png"), a, modules)?;
    let summary = json!({
        "estimator": eff.estimator.name(),
        "orientation": "effects[i, j] = effect of gene i on gene j",
        "n_genes": eff.d,
        "k_conditions": eff.k,
        "lambda": eff.lambda,
        "identified": eff.identified,
        "note": eff.note,
        "symmetry_ratio": symmetry_ratio(a),
        "n_modules": modules.n_modules,
        "n_edges_exported": edges.len(),
        "leaf_order": modules.leaf_order.iter().map(|&i| genes[i].clone()).collect::<Vec<_>>(),
        "metrics": metrics,
    });
    let text = serde_json::to_string_pretty(&summary).map_err(|e| CliprError::Export {
        path: dir.join("summary.json"),
        message: e.to_string(),
    })?;
    write_atomic(&dir.join("summary.json"), text.as_bytes())
}

/// The truth restricted to (and ordered like) the model's genes.
pub fn align_truth(
    truth: &Array2<f64>,
    truth_genes: &[String],
    genes: &[String],
    file: &Path,
) -> Result<Array2<f64>> {
    let idx = crate::into::align_genes(genes, truth_genes, file)?;
    Ok(Array2::from_shape_fn(
        (genes.len(), genes.len()),
        |(a, b)| truth[[idx[a], idx[b]]],
    ))
}

/// `(gene index, effect)` pairs.
pub type Partners = Vec<(usize, f64)>;

/// Strongest regulators of gene `g` (column `g`) and targets of `g` (row `g`),
/// `k` each, by |effect| (self-effect excluded).
pub fn top_partners(a: &Array2<f64>, g: usize, k: usize) -> (Partners, Partners) {
    let d = a.nrows();
    let mut regs: Vec<(usize, f64)> = (0..d).filter(|&i| i != g).map(|i| (i, a[[i, g]])).collect();
    let mut tgts: Vec<(usize, f64)> = (0..d).filter(|&j| j != g).map(|j| (j, a[[g, j]])).collect();
    regs.sort_by(|x, y| y.1.abs().total_cmp(&x.1.abs()));
    tgts.sort_by(|x, y| y.1.abs().total_cmp(&x.1.abs()));
    regs.truncate(k);
    tgts.truncate(k);
    (regs, tgts)
}
