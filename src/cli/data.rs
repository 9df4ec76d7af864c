//! `cellmol data inspect|subset`: summaries and consistent subsets of AnnData
//! (`.h5ad`) files. Subsets read only the needed rows / columns of X and the
//! layers (datasets::anndata::H5adReader).
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use datasets::anndata::{read_h5ad, write_h5ad, AnnData, Column, DataFrame, H5adReader, Matrix};
use serde_json::{json, Map, Value as J};

use super::Global;

/// obs columns searched, in order, for perturbation labels.
pub const PERTURBATION_COLUMNS: [&str; 5] = [
    "perturbation",
    "condition",
    "perturbation_name",
    "guide_ids",
    "gene",
];

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Summarise an .h5ad file (shapes, encodings, columns, perturbations).
    Inspect(InspectArgs),
    /// Write the cells of some perturbations and/or some genes to a new .h5ad.
    Subset(SubsetArgs),
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Input .h5ad file.
    pub file: PathBuf,
    /// Print one JSON object instead of a readable summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SubsetArgs {
    /// Input .h5ad file.
    pub file: PathBuf,
    /// Comma-separated perturbation labels to keep (e.g. `control,G3,G3+G17`).
    #[arg(long, value_delimiter = ',')]
    pub perturbations: Option<Vec<String>>,
    /// Comma-separated gene names (var_names) to keep, in this order.
    #[arg(long, value_delimiter = ',')]
    pub genes: Option<Vec<String>>,
    /// obs column with the perturbation labels (default: auto-detect).
    #[arg(long)]
    pub column: Option<String>,
    /// Output .h5ad file (written atomically).
    #[arg(short, long)]
    pub output: PathBuf,
}

pub fn run(cmd: DataCommand, global: Global) -> anyhow::Result<()> {
    match cmd {
        DataCommand::Inspect(a) => inspect(a),
        DataCommand::Subset(a) => subset(a, global),
    }
}

/// First obs column among [`PERTURBATION_COLUMNS`] holding labels.
pub fn detect_perturbation_column(obs: &DataFrame) -> Option<String> {
    PERTURBATION_COLUMNS
        .iter()
        .find_map(|name| match obs.column(name) {
            Some(Column::Categorical { .. })
            | Some(Column::Array(datasets::anndata::DenseArray::String(_))) => {
                Some((*name).to_string())
            }
            _ => None,
        })
}

/// Cells per label; missing labels are counted under `"NaN"`.
pub fn label_counts(col: &Column) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for l in col.labels() {
        *out.entry(l.unwrap_or_else(|| "NaN".into())).or_insert(0) += 1;
    }
    out
}

fn names(d: &BTreeMap<String, Matrix>) -> Vec<&String> {
    d.keys().collect()
}

fn inspect_json(ad: &AnnData) -> J {
    let cols = |df: &DataFrame| -> Map<String, J> {
        df.columns
            .iter()
            .map(|(n, c)| (n.clone(), J::from(c.kind())))
            .collect()
    };
    let mut matrices = Map::new();
    for (grp, d) in [
        ("layers", &ad.layers),
        ("obsm", &ad.obsm),
        ("varm", &ad.varm),
        ("obsp", &ad.obsp),
        ("varp", &ad.varp),
    ] {
        for (k, m) in d {
            matrices.insert(
                format!("{grp}/{k}"),
                json!({"encoding": m.encoding(), "shape": [m.shape2().0, m.shape2().1]}),
            );
        }
    }
    let mut j = json!({
        "n_obs": ad.n_obs(),
        "n_vars": ad.n_vars(),
        "x_encoding": ad.x.as_ref().map(|x| x.encoding()),
        "x_dtype": ad.x.as_ref().map(|x| match x {
            Matrix::Dense(d) => d.dtype_name(),
            Matrix::Sparse(s) => s.data.dtype_name(),
        }),
        "x_nnz": ad.x.as_ref().map(|x| x.nnz()),
        "x_sum": ad.x.as_ref().map(|x| x.sum()),
        "obs_columns": cols(&ad.obs),
        "var_columns": cols(&ad.var),
        "layers": names(&ad.layers),
        "obsm": names(&ad.obsm),
        "varm": names(&ad.varm),
        "obsp": names(&ad.obsp),
        "varp": names(&ad.varp),
        "uns": ad.uns.keys().collect::<Vec<_>>(),
        "raw": ad.raw.as_ref().map(|r| json!({"n_vars": r.var.n_rows(), "nnz": r.x.nnz(), "encoding": r.x.encoding()})),
        "matrices": matrices,
    });
    if let Some(c) = detect_perturbation_column(&ad.obs) {
        let counts = ad.obs.column(&c).map(label_counts).unwrap_or_default();
        j["perturbation_column"] = J::from(c);
        j["perturbation_counts"] = json!(counts);
    }
    j
}

fn inspect(a: InspectArgs) -> anyhow::Result<()> {
    let ad = read_h5ad(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    let j = inspect_json(&ad);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&j)?);
        return Ok(());
    }
    println!(
        "{}: {} obs × {} vars",
        a.file.display(),
        ad.n_obs(),
        ad.n_vars()
    );
    match &ad.x {
        Some(x) => println!(
            "  X: {} ({}), nnz {}, sum {:.6}",
            x.encoding(),
            j["x_dtype"].as_str().unwrap_or("?"),
            x.nnz(),
            x.sum()
        ),
        None => println!("  X: none"),
    }
    for (label, df) in [("obs", &ad.obs), ("var", &ad.var)] {
        let cols: Vec<String> = df
            .columns
            .iter()
            .map(|(n, c)| format!("{n} ({})", c.kind()))
            .collect();
        println!(
            "  {label}: {}",
            if cols.is_empty() {
                "-".to_string()
            } else {
                cols.join(", ")
            }
        );
    }
    for (label, d) in [
        ("layers", &ad.layers),
        ("obsm", &ad.obsm),
        ("varm", &ad.varm),
        ("obsp", &ad.obsp),
        ("varp", &ad.varp),
    ] {
        let items: Vec<String> = d
            .iter()
            .map(|(k, m)| format!("{k} {} {}×{}", m.encoding(), m.shape2().0, m.shape2().1))
            .collect();
        println!(
            "  {label}: {}",
            if items.is_empty() {
                "-".to_string()
            } else {
                items.join(", ")
            }
        );
    }
    println!(
        "  uns: {}",
        ad.uns.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    if let Some(r) = &ad.raw {
        println!("  raw: {} vars, {} nnz", r.var.n_rows(), r.x.nnz());
    }
    if let Some(c) = j.get("perturbation_column").and_then(J::as_str) {
        let counts = j["perturbation_counts"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        println!("  perturbations (obs[\"{c}\"]): {} labels", counts.len());
        for (k, v) in counts.iter().take(20) {
            println!("    {k}: {v} cells");
        }
        if counts.len() > 20 {
            println!("    ... {} more", counts.len() - 20);
        }
    }
    Ok(())
}

fn subset(a: SubsetArgs, global: Global) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let reader =
        H5adReader::open(&a.file).with_context(|| format!("opening {}", a.file.display()))?;
    let rows: Option<Vec<usize>> = match &a.perturbations {
        None => None,
        Some(wanted) => {
            let col_name = match &a.column {
                Some(c) => c.clone(),
                None => detect_perturbation_column(&reader.obs).with_context(|| {
                    format!(
                        "{}: no perturbation column found in obs (looked for {}); pass --column",
                        a.file.display(),
                        PERTURBATION_COLUMNS.join(", ")
                    )
                })?,
            };
            let col = reader
                .obs
                .column(&col_name)
                .with_context(|| format!("{}: obs has no column `{col_name}`", a.file.display()))?;
            let labels = col.labels();
            let known: std::collections::HashSet<&str> =
                labels.iter().flatten().map(String::as_str).collect();
            let unknown: Vec<&String> = wanted
                .iter()
                .filter(|w| !known.contains(w.as_str()))
                .collect();
            if !unknown.is_empty() {
                bail!(
                    "{}: unknown perturbation(s) in obs[\"{col_name}\"]: {}",
                    a.file.display(),
                    unknown
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            let want: std::collections::HashSet<&str> = wanted.iter().map(String::as_str).collect();
            Some(
                labels
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| l.as_deref().is_some_and(|l| want.contains(l)))
                    .map(|(i, _)| i)
                    .collect(),
            )
        }
    };
    let cols: Option<Vec<usize>> = match &a.genes {
        None => None,
        Some(genes) => {
            let pos: HashMap<&str, usize> = reader
                .var
                .index
                .iter()
                .enumerate()
                .map(|(i, g)| (g.as_str(), i))
                .collect();
            let unknown: Vec<&str> = genes
                .iter()
                .map(String::as_str)
                .filter(|g| !pos.contains_key(g))
                .collect();
            if !unknown.is_empty() {
                bail!(
                    "{}: unknown gene(s) (not in var_names): {}",
                    a.file.display(),
                    unknown.join(", ")
                );
            }
            let mut seen = std::collections::HashSet::new();
            Some(
                genes
                    .iter()
                    .filter(|g| seen.insert(g.as_str()))
                    .map(|g| pos[g.as_str()])
                    .collect(),
            )
        }
    };
    let sub = reader
        .read_subset(rows.as_deref(), cols.as_deref())
        .with_context(|| format!("subsetting {}", a.file.display()))?;
    write_h5ad(&sub, &a.output).with_context(|| format!("writing {}", a.output.display()))?;
    if !global.quiet {
        eprintln!(
            "wrote {}: {} obs × {} vars (from {} × {}) in {:.2}s",
            a.output.display(),
            sub.n_obs(),
            sub.n_vars(),
            reader.n_obs(),
            reader.n_vars(),
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
