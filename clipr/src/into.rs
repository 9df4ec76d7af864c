//! Writing CLIPR's results back into a screen's `.h5ad`, under the keys
//! anndata/scanpy users look for (`design/clipr.md`, STYLE "anndata"):
//! - `varp["clipr_effects"]`: `[n_vars, n_vars]` f64, `[i, j]` = effect of
//!   gene `i` on gene `j` (genes outside the model: 0);
//! - `var["clipr_module"]`: categorical module label (`"0"`, `"1"`, …;
//!   missing = in no module or not in the model);
//! - `uns["clipr"]["params"]`: estimator, λ, module options, identification note.
//!
//! The file is read whole, modified, written to a temporary sibling and
//! renamed over the original, so a failure never leaves a half-written file.
use std::collections::BTreeMap;
use std::path::Path;

use datasets::anndata::{
    read_h5ad, write_h5ad, AnnData, Column, DenseArray, Matrix, Scalar, Value,
};
use ndarray::Array2;

use crate::error::{CliprError, Result};
use crate::estimate::Effects;
use crate::modules::{ModuleOptions, Modules};

/// Parameters recorded in `uns["clipr"]["params"]`.
#[derive(Debug, Clone)]
pub struct IntoParams {
    pub model: String,
    pub module_options: ModuleOptions,
}

/// Maps model genes onto the screen's `var_names`; every model gene must be present.
pub fn align_genes(
    model_genes: &[String],
    var_names: &[String],
    file: &Path,
) -> Result<Vec<usize>> {
    let pos: std::collections::HashMap<&str, usize> = var_names
        .iter()
        .enumerate()
        .map(|(i, g)| (g.as_str(), i))
        .collect();
    model_genes
        .iter()
        .map(|g| {
            pos.get(g.as_str())
                .copied()
                .ok_or_else(|| CliprError::UnknownGene {
                    gene: g.clone(),
                    n_genes: var_names.len(),
                    context: format!("{} (var_names)", file.display()),
                })
        })
        .collect()
}

/// Adds the CLIPR results to an in-memory AnnData.
pub fn annotate(
    adata: &mut AnnData,
    file: &Path,
    genes: &[String],
    effects: &Effects,
    modules: &Modules,
    params: &IntoParams,
) -> Result<()> {
    let idx = align_genes(genes, adata.var_names(), file)?;
    let n = adata.n_vars();
    let mut full = Array2::<f64>::zeros((n, n));
    for (a, &i) in idx.iter().enumerate() {
        for (b, &j) in idx.iter().enumerate() {
            full[[i, j]] = effects.a_causal[[a, b]];
        }
    }
    adata.varp.insert(
        "clipr_effects".into(),
        Matrix::Dense(DenseArray::F64(full.into_dyn())),
    );
    let mut labels: Vec<Option<String>> = vec![None; n];
    for (a, &i) in idx.iter().enumerate() {
        labels[i] = modules.module[a].map(|m| m.to_string());
    }
    adata
        .var
        .set_column("clipr_module", Column::categorical_from_labels(&labels));
    let s = |v: &str| Value::Scalar(Scalar::String(v.into()));
    let mut p = BTreeMap::new();
    p.insert("estimator".into(), s(effects.estimator.name()));
    p.insert("lambda".into(), Value::Scalar(Scalar::F64(effects.lambda)));
    p.insert("k".into(), Value::Scalar(Scalar::I64(effects.k as i64)));
    p.insert(
        "n_genes".into(),
        Value::Scalar(Scalar::I64(effects.d as i64)),
    );
    p.insert(
        "identified".into(),
        Value::Scalar(Scalar::Bool(effects.identified)),
    );
    p.insert("note".into(), s(&effects.note));
    p.insert(
        "cut_height".into(),
        Value::Scalar(Scalar::F64(params.module_options.cut_height)),
    );
    p.insert(
        "min_module_size".into(),
        Value::Scalar(Scalar::I64(params.module_options.min_size as i64)),
    );
    p.insert("model".into(), s(&params.model));
    p.insert(
        "orientation".into(),
        s("varp/clipr_effects[i, j] = effect of gene i on gene j"),
    );
    let mut clipr = BTreeMap::new();
    clipr.insert("params".into(), Value::Dict(p));
    adata.uns.insert("clipr".into(), Value::Dict(clipr));
    Ok(())
}

/// Read `path`, annotate it, write it back atomically.
pub fn write_into(
    path: &Path,
    genes: &[String],
    effects: &Effects,
    modules: &Modules,
    params: &IntoParams,
) -> Result<()> {
    let mut adata = read_h5ad(path)?;
    annotate(&mut adata, path, genes, effects, modules, params)?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "screen.h5ad".into());
    let tmp = dir.join(format!(".{name}.clipr.tmp{}", std::process::id()));
    if let Err(e) = write_h5ad(&adata, &tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.into());
    }
    std::fs::rename(&tmp, path).map_err(|source| CliprError::Io {
        path: path.into(),
        source,
    })
}
