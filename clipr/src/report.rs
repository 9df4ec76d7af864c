//! Everything one estimator run writes into an output directory, and the
//! alignment of a ground truth onto the model's genes.
use std::fmt::Write as _;
use std::path::Path;

use ndarray::Array2;
use serde_json::json;

use crate::error::{CliprError, Result};
use crate::estimate::{symmetry_ratio, Effects};
use crate::export::{
    dot, edges_tsv, graphml, modules_tsv, select_edges, to_graph, write_atomic, EdgeSelect,
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

/// Intercepts and shifts of the published estimator as TSV: `b_hat.tsv`
/// (`gene`, `b_hat`) and `c_hat.tsv` (`condition`, then one column per gene;
/// a condition is `control` or its target genes joined by `+`).
pub fn intercepts_tsv(eff: &Effects, genes: &[String]) -> Option<(String, String)> {
    let (b, c) = (eff.b_hat.as_ref()?, eff.c_hat.as_ref()?);
    let mut bs = String::from("gene\tb_hat\n");
    for (g, v) in genes.iter().zip(b.iter()) {
        let _ = writeln!(bs, "{g}\t{v:.6e}");
    }
    let mut cs = String::from("condition");
    for g in genes {
        let _ = write!(cs, "\t{g}");
    }
    cs.push('\n');
    for (t, row) in eff.conditions.iter().zip(c.outer_iter()) {
        if t.is_empty() {
            cs.push_str("control");
        } else {
            cs.push_str(
                &t.iter()
                    .map(|&i| genes[i].as_str())
                    .collect::<Vec<_>>()
                    .join("+"),
            );
        }
        for v in row {
            let _ = write!(cs, "\t{v:.6e}");
        }
        cs.push('\n');
    }
    Some((bs, cs))
}

/// Writes `effects.tsv`, `edges.tsv`, `graph.graphml`, `graph.dot`,
/// `modules.tsv`, `heatmap.png`, `summary.json` and, for the published
/// estimator, `b_hat.tsv` and `c_hat.tsv` into `dir`.
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
    if let Some((b, c)) = intercepts_tsv(eff, genes) {
        write_atomic(&dir.join("b_hat.tsv"), b.as_bytes())?;
        write_atomic(&dir.join("c_hat.tsv"), c.as_bytes())?;
    }
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
    let title = format!(
        "CLIPR effects ({}): {} genes, {} modules",
        eff.estimator.name(),
        genes.len(),
        modules.n_modules
    );
    crate::plot::heatmap(
        &dir.join("heatmap.png"),
        a,
        &crate::plot::HeatmapSpec {
            genes,
            order: &modules.leaf_order,
            module: &modules.module,
            title: &title,
        },
    )?;
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
        "optimal_leaf_order": modules.optimal_order,
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
