//! Writing `.h5ad` files as anndata 0.12 does (root `anndata` 0.1.0 and
//! per-element `encoding-type` / `encoding-version` attributes). The file is
//! written to a temporary name in the target directory and renamed at the end.
use std::collections::BTreeMap;
use std::path::Path;

use hdf5::{File, Group};

use super::h5util::{
    create_group, join, set_attr_bool, set_attr_str, set_attr_strs, set_encoding, vlu, write_dense,
    write_vec, Ctx,
};
use super::read::check_consistency;
use super::sparse::write_sparse;
use super::types::*;
use crate::error::{DatasetsError, Result};

/// Write `ad` to `path` atomically (temp file in the same directory + rename).
pub fn write_h5ad(ad: &AnnData, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let ctx = Ctx::new(path);
    check_consistency(&ctx, ad)?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let fname = path
        .file_name()
        .ok_or_else(|| ctx.err("/", "output path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        fname.to_string_lossy(),
        std::process::id()
    ));
    let res = (|| -> Result<()> {
        // No HDF5 file lock on the temp file: the lock is an flock on an fd
        // HDF5 opens without O_CLOEXEC, so a child process spawned by another
        // thread while we write would inherit it and keep the finished file
        // locked ("unable to lock file, errno = 11") for its whole lifetime.
        // The temp-file-then-rename protocol already keeps readers off
        // half-written data.
        let f = File::with_options()
            .with_fapl(|p| p.file_locking(false))
            .create(&tmp)
            .map_err(|e| ctx.err("/", format!("cannot create {}: {e}", tmp.display())))?;
        write_into(&ctx, &f, ad)?;
        ctx.h5("/", "flushing", f.flush())?;
        Ok(())
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        DatasetsError::Io {
            path: path.to_path_buf(),
            source: e,
        }
    })
}

fn write_into(ctx: &Ctx, f: &File, ad: &AnnData) -> Result<()> {
    let root: &Group = f;
    set_encoding(ctx, root, "/", "anndata", "0.1.0")?;
    if let Some(x) = &ad.x {
        write_matrix(ctx, root, "/", "X", x)?;
    }
    write_dataframe(ctx, root, "/", "obs", &ad.obs)?;
    write_dataframe(ctx, root, "/", "var", &ad.var)?;
    for (name, d) in [
        ("obsm", &ad.obsm),
        ("varm", &ad.varm),
        ("obsp", &ad.obsp),
        ("varp", &ad.varp),
        ("layers", &ad.layers),
    ] {
        write_matrix_dict(ctx, root, "/", name, d)?;
    }
    let (g, p) = create_group(ctx, root, "/", "uns")?;
    set_encoding(ctx, &g, &p, "dict", "0.1.0")?;
    for (k, v) in &ad.uns {
        write_value(ctx, &g, &p, k, v)?;
    }
    if let Some(raw) = &ad.raw {
        let (g, p) = create_group(ctx, root, "/", "raw")?;
        set_encoding(ctx, &g, &p, "raw", "0.1.0")?;
        write_matrix(ctx, &g, &p, "X", &raw.x)?;
        write_dataframe(ctx, &g, &p, "var", &raw.var)?;
        write_matrix_dict(ctx, &g, &p, "varm", &raw.varm)?;
    }
    Ok(())
}

fn write_matrix_dict(
    ctx: &Ctx,
    parent: &Group,
    ppath: &str,
    name: &str,
    d: &BTreeMap<String, Matrix>,
) -> Result<()> {
    let (g, p) = create_group(ctx, parent, ppath, name)?;
    set_encoding(ctx, &g, &p, "dict", "0.1.0")?;
    for (k, m) in d {
        write_matrix(ctx, &g, &p, k, m)?;
    }
    Ok(())
}

pub(crate) fn write_matrix(
    ctx: &Ctx,
    parent: &Group,
    ppath: &str,
    name: &str,
    m: &Matrix,
) -> Result<()> {
    match m {
        Matrix::Dense(a) => write_dense(ctx, parent, ppath, name, a),
        Matrix::Sparse(s) => write_sparse(ctx, parent, ppath, name, s),
    }
}

pub(crate) fn write_dataframe(
    ctx: &Ctx,
    parent: &Group,
    ppath: &str,
    name: &str,
    df: &DataFrame,
) -> Result<()> {
    let (g, p) = create_group(ctx, parent, ppath, name)?;
    set_encoding(ctx, &g, &p, "dataframe", "0.2.0")?;
    let index_name = if df.index_name.is_empty() {
        "_index"
    } else {
        df.index_name.as_str()
    };
    set_attr_str(ctx, &g, &p, "_index", index_name)?;
    let names: Vec<String> = df.columns.iter().map(|(n, _)| n.clone()).collect();
    if let Some(bad) = names.iter().find(|n| n.as_str() == index_name) {
        return Err(ctx.fmt(
            &join(&p, bad),
            "column names different from the index name",
            format!("`{bad}`"),
        ));
    }
    set_attr_strs(ctx, &g, &p, "column-order", &names)?;
    write_dense(
        ctx,
        &g,
        &p,
        index_name,
        &DenseArray::strings(df.index.clone()),
    )?;
    for (c, col) in &df.columns {
        if col.len() != df.n_rows() {
            return Err(ctx.fmt(
                &join(&p, c),
                format!("{} rows (as the index)", df.n_rows()),
                format!("{} rows", col.len()),
            ));
        }
        write_column(ctx, &g, &p, c, col)?;
    }
    Ok(())
}

fn smallest_codes(codes: &[i32], n_categories: usize) -> DenseArray {
    if n_categories < i8::MAX as usize {
        DenseArray::I8(ndarray::Array1::from_iter(codes.iter().map(|&c| c as i8)).into_dyn())
    } else if n_categories < i16::MAX as usize {
        DenseArray::I16(ndarray::Array1::from_iter(codes.iter().map(|&c| c as i16)).into_dyn())
    } else {
        DenseArray::I32(ndarray::Array1::from_vec(codes.to_vec()).into_dyn())
    }
}

fn write_categorical(
    ctx: &Ctx,
    parent: &Group,
    ppath: &str,
    name: &str,
    codes: &[i32],
    categories: &DenseArray,
    ordered: bool,
) -> Result<()> {
    let (g, p) = create_group(ctx, parent, ppath, name)?;
    set_encoding(ctx, &g, &p, "categorical", "0.2.0")?;
    set_attr_bool(ctx, &g, &p, "ordered", ordered)?;
    let k = categories.len() as i32;
    if let Some(i) = codes.iter().position(|&c| c < -1 || c >= k) {
        return Err(ctx.fmt(
            &join(&p, "codes"),
            format!("codes in [-1, {k})"),
            format!("codes[{i}] = {}", codes[i]),
        ));
    }
    write_dense(
        ctx,
        &g,
        &p,
        "codes",
        &smallest_codes(codes, categories.len()),
    )?;
    write_dense(ctx, &g, &p, "categories", categories)
}

fn write_column(ctx: &Ctx, parent: &Group, ppath: &str, name: &str, col: &Column) -> Result<()> {
    match col {
        Column::Array(a) => write_dense(ctx, parent, ppath, name, a),
        Column::Categorical {
            codes,
            categories,
            ordered,
        } => write_categorical(ctx, parent, ppath, name, codes, categories, *ordered),
        Column::NullableInt { values, mask } => {
            let (g, p) = create_group(ctx, parent, ppath, name)?;
            set_encoding(ctx, &g, &p, "nullable-integer", "0.1.0")?;
            write_vec(
                ctx,
                &g,
                &join(&p, "values"),
                "values",
                &[values.len()],
                values,
            )?;
            write_vec(ctx, &g, &join(&p, "mask"), "mask", &[mask.len()], mask)?;
            Ok(())
        }
        Column::NullableBool { values, mask } => {
            let (g, p) = create_group(ctx, parent, ppath, name)?;
            set_encoding(ctx, &g, &p, "nullable-boolean", "0.1.0")?;
            write_vec(
                ctx,
                &g,
                &join(&p, "values"),
                "values",
                &[values.len()],
                values,
            )?;
            write_vec(ctx, &g, &join(&p, "mask"), "mask", &[mask.len()], mask)?;
            Ok(())
        }
    }
}

/// Write an `uns` value (recursively for dicts).
pub(crate) fn write_value(
    ctx: &Ctx,
    parent: &Group,
    ppath: &str,
    name: &str,
    v: &Value,
) -> Result<()> {
    let path = join(ppath, name);
    match v {
        Value::Dict(d) => {
            let (g, p) = create_group(ctx, parent, ppath, name)?;
            set_encoding(ctx, &g, &p, "dict", "0.1.0")?;
            for (k, v) in d {
                write_value(ctx, &g, &p, k, v)?;
            }
            Ok(())
        }
        Value::Scalar(s) => {
            let ds = match s {
                Scalar::F64(x) => {
                    write_vec(ctx, parent, &path, name, &[], std::slice::from_ref(x))?
                }
                Scalar::I64(x) => {
                    write_vec(ctx, parent, &path, name, &[], std::slice::from_ref(x))?
                }
                Scalar::Bool(x) => {
                    write_vec(ctx, parent, &path, name, &[], std::slice::from_ref(x))?
                }
                Scalar::String(x) => {
                    let ds = write_vec(ctx, parent, &path, name, &[], &[vlu(ctx, &path, x)?])?;
                    return set_encoding(ctx, &ds, &path, "string", "0.2.0");
                }
            };
            set_encoding(ctx, &ds, &path, "numeric-scalar", "0.2.0")
        }
        Value::Array(a) => write_dense(ctx, parent, ppath, name, a),
        Value::Sparse(s) => write_sparse(ctx, parent, ppath, name, s),
        Value::DataFrame(df) => write_dataframe(ctx, parent, ppath, name, df),
        Value::Categorical {
            codes,
            categories,
            ordered,
        } => write_categorical(ctx, parent, ppath, name, codes, categories, *ordered),
    }
}
