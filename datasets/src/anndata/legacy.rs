//! The legacy `.h5ad` layout written by anndata < 0.7 (e.g. scanpy's shipped
//! `10x_pbmc68k_reduced.h5ad`): `obs`/`var`/`obsm`/`varm` as compound-typed
//! record datasets, categorical codes in a record field with the categories in
//! `uns/<col>_categories`, sparse groups marked by `h5sparse_format` /
//! `h5sparse_shape`, and `raw.X` / `raw.var` / `raw.varm` at the root.
use std::collections::BTreeMap;

use hdf5::types::{FloatSize, IntSize, TypeDescriptor};
use hdf5::{Dataset, Group};
use ndarray::{ArrayD, IxDyn};

use super::h5util::{attr_string, has_attr, join, raw_bytes, type_name, utf8, Ctx};
use super::read::{read_matrices, Mode};
use super::types::*;
use crate::error::Result;

/// Encoding of an unannotated group in a legacy file.
pub(crate) fn infer_group_encoding(ctx: &Ctx, g: &Group, path: &str) -> Result<String> {
    if let Some(f) = attr_string(ctx, g, path, "h5sparse_format")? {
        return match f.as_str() {
            "csr" => Ok("csr_matrix".into()),
            "csc" => Ok("csc_matrix".into()),
            other => Err(ctx.fmt(path, "h5sparse_format `csr` or `csc`", format!("`{other}`"))),
        };
    }
    if has_attr(g, "_index") {
        return Ok("dataframe".into());
    }
    Ok("dict".into())
}

/// Decode one record field of every row into an array of shape [n] or [n, k].
fn field_array(
    ctx: &Ctx,
    path: &str,
    bytes: &[u8],
    rec: usize,
    n: usize,
    off: usize,
    ty: &TypeDescriptor,
) -> Result<DenseArray> {
    let (inner, k) = match ty {
        TypeDescriptor::FixedArray(t, k) => (t.as_ref(), *k),
        t => (t, 1usize),
    };
    let shape: Vec<usize> = if matches!(ty, TypeDescriptor::FixedArray(..)) {
        vec![n, k]
    } else {
        vec![n]
    };
    macro_rules! num {
        ($t:ty, $var:ident) => {{
            let w = std::mem::size_of::<$t>();
            let mut v: Vec<$t> = Vec::with_capacity(n * k);
            for i in 0..n {
                for j in 0..k {
                    let s = i * rec + off + j * w;
                    let mut b = [0u8; std::mem::size_of::<$t>()];
                    b.copy_from_slice(&bytes[s..s + w]);
                    v.push(<$t>::from_le_bytes(b));
                }
            }
            DenseArray::$var(
                ArrayD::from_shape_vec(IxDyn(&shape), v)
                    .map_err(|e| ctx.err(path, e.to_string()))?,
            )
        }};
    }
    Ok(match inner {
        TypeDescriptor::Float(FloatSize::U4) => num!(f32, F32),
        TypeDescriptor::Float(FloatSize::U8) => num!(f64, F64),
        TypeDescriptor::Integer(IntSize::U1) => num!(i8, I8),
        TypeDescriptor::Integer(IntSize::U2) => num!(i16, I16),
        TypeDescriptor::Integer(IntSize::U4) => num!(i32, I32),
        TypeDescriptor::Integer(IntSize::U8) => num!(i64, I64),
        TypeDescriptor::Unsigned(IntSize::U1) => num!(u8, U8),
        TypeDescriptor::Unsigned(IntSize::U2) => num!(u16, U16),
        TypeDescriptor::Unsigned(IntSize::U4) => num!(u32, U32),
        TypeDescriptor::Unsigned(IntSize::U8) => num!(u64, U64),
        TypeDescriptor::Boolean => {
            let v: Vec<bool> = (0..n * k)
                .map(|i| bytes[(i / k) * rec + off + i % k] != 0)
                .collect();
            DenseArray::Bool(
                ArrayD::from_shape_vec(IxDyn(&shape), v)
                    .map_err(|e| ctx.err(path, e.to_string()))?,
            )
        }
        TypeDescriptor::FixedAscii(w) | TypeDescriptor::FixedUnicode(w) => {
            let mut v = Vec::with_capacity(n * k);
            for i in 0..n {
                for j in 0..k {
                    let s = i * rec + off + j * w;
                    let chunk = &bytes[s..s + w];
                    let end = chunk.iter().position(|&b| b == 0).unwrap_or(*w);
                    v.push(utf8(ctx, path, &chunk[..end])?);
                }
            }
            DenseArray::String(
                ArrayD::from_shape_vec(IxDyn(&shape), v)
                    .map_err(|e| ctx.err(path, e.to_string()))?,
            )
        }
        other => {
            return Err(ctx.fmt(
                path,
                "numeric, boolean or fixed-length string record fields",
                type_name(other),
            ));
        }
    })
}

/// All fields of a 1-D compound dataset, in stored order.
pub(crate) fn compound_fields(
    ctx: &Ctx,
    path: &str,
    ds: &Dataset,
) -> Result<Vec<(String, DenseArray)>> {
    let dt = ctx.h5(path, "reading datatype", ds.dtype())?;
    if dt.byte_order() == hdf5::datatype::ByteOrder::BigEndian {
        return Err(ctx.fmt(path, "little-endian records", "big-endian records"));
    }
    let desc = ctx.h5(path, "decoding datatype", dt.to_descriptor())?;
    let TypeDescriptor::Compound(c) = desc else {
        return Err(ctx.fmt(path, "a compound (record) dataset", type_name(&desc)));
    };
    if ds.ndim() != 1 {
        return Err(ctx.fmt(
            path,
            "a 1-D record dataset",
            format!("shape {:?}", ds.shape()),
        ));
    }
    for f in &c.fields {
        let base = match &f.ty {
            TypeDescriptor::FixedArray(t, _) => t.as_ref(),
            t => t,
        };
        if !matches!(
            base,
            TypeDescriptor::Float(_)
                | TypeDescriptor::Integer(_)
                | TypeDescriptor::Unsigned(_)
                | TypeDescriptor::Boolean
                | TypeDescriptor::FixedAscii(_)
                | TypeDescriptor::FixedUnicode(_)
        ) {
            return Err(ctx.fmt(
                &format!("{path}[{}]", f.name),
                "numeric, boolean or fixed-length string record fields (legacy layout)",
                type_name(&f.ty),
            ));
        }
    }
    let (bytes, rec) = raw_bytes(ctx, path, ds)?;
    let n = ds.size();
    let mut fields: Vec<_> = c.fields.iter().collect();
    fields.sort_by_key(|f| f.index);
    fields
        .into_iter()
        .map(|f| {
            Ok((
                f.name.clone(),
                field_array(
                    ctx,
                    &format!("{path}[{}]", f.name),
                    &bytes,
                    rec,
                    n,
                    f.offset,
                    &f.ty,
                )?,
            ))
        })
        .collect()
}

/// Legacy compound obs/var: field `index` → index; integer fields with
/// `uns/<col>_categories` → categorical (the uns entry is consumed).
pub(crate) fn read_compound_frame(
    ctx: &Ctx,
    path: &str,
    ds: &Dataset,
    mut uns: Option<&mut BTreeMap<String, Value>>,
) -> Result<DataFrame> {
    let fields = compound_fields(ctx, path, ds)?;
    let n = ds.size();
    let mut df = DataFrame::new((0..n).map(|i| i.to_string()).collect());
    for (name, arr) in fields {
        if name == "index" {
            df.index = match &arr {
                DenseArray::String(s) => s.iter().cloned().collect(),
                other => Column::Array(other.clone())
                    .labels()
                    .into_iter()
                    .map(Option::unwrap_or_default)
                    .collect(),
            };
            continue;
        }
        if arr.ndim() != 1 {
            return Err(ctx.fmt(
                &format!("{path}[{name}]"),
                "scalar record fields in a data frame",
                format!("shape {:?}", arr.shape()),
            ));
        }
        let key = format!("{name}_categories");
        let cats = uns.as_deref_mut().and_then(|u| match u.get(&key) {
            Some(Value::Array(c)) if c.ndim() == 1 => u.remove(&key),
            _ => None,
        });
        let col = match (cats, &arr) {
            (Some(Value::Array(categories)), a)
                if a.dtype_name().starts_with('i') || a.dtype_name().starts_with('u') =>
            {
                let codes: Vec<i32> = a
                    .to_f64()
                    .map(|v| v.iter().map(|&x| x as i32).collect())
                    .unwrap_or_default();
                let k = categories.len() as i32;
                if let Some(i) = codes.iter().position(|&c| c < -1 || c >= k) {
                    return Err(ctx.fmt(
                        &format!("{path}[{name}]"),
                        format!("codes in [-1, {k})"),
                        format!("row {i}: {}", codes[i]),
                    ));
                }
                Column::Categorical {
                    codes,
                    categories,
                    ordered: false,
                }
            }
            (Some(v), _) => {
                // Not codes after all: put the uns entry back.
                if let Some(u) = uns.as_deref_mut() {
                    u.insert(key, v);
                }
                Column::Array(arr)
            }
            (None, _) => Column::Array(arr),
        };
        df.columns.push((name, col));
    }
    Ok(df)
}

/// obsm / varm / raw.varm: a group (modern or legacy) or a compound dataset
/// whose fields are the matrices.
pub(crate) fn read_matrix_container(
    ctx: &Ctx,
    root: &Group,
    name: &str,
    mode: Mode,
) -> Result<BTreeMap<String, Matrix>> {
    let path = join("/", name);
    if let Ok(ds) = root.dataset(name) {
        if mode == Mode::Strict {
            return Err(ctx.fmt(&path, "a dict group", "a dataset"));
        }
        return Ok(compound_fields(ctx, &path, &ds)?
            .into_iter()
            .map(|(k, a)| (k, Matrix::Dense(a)))
            .collect());
    }
    let g = ctx.h5(&path, "opening group", root.group(name))?;
    read_matrices(ctx, &g, &path, mode)
}

/// anndata moves `uns/neighbors/{distances,connectivities}` of old files to
/// `obsp`; do the same so both readers agree.
pub(crate) fn move_neighbors_to_obsp(ad: &mut AnnData) {
    let n = ad.n_obs();
    if let Some(Value::Dict(nb)) = ad.uns.get_mut("neighbors") {
        for key in ["distances", "connectivities"] {
            if ad.obsp.contains_key(key) {
                continue;
            }
            let fits = match nb.get(key) {
                Some(Value::Sparse(s)) => s.shape == (n, n),
                Some(Value::Array(a)) => a.shape() == [n, n],
                _ => false,
            };
            if fits {
                match nb.remove(key) {
                    Some(Value::Sparse(s)) => {
                        ad.obsp.insert(key.into(), Matrix::Sparse(s));
                    }
                    Some(Value::Array(a)) => {
                        ad.obsp.insert(key.into(), Matrix::Dense(a));
                    }
                    _ => {}
                }
            }
        }
    }
}
