//! Reading `.h5ad` files into an in-memory [`AnnData`].
//!
//! Modern files (root attribute `encoding-type = anndata`) must carry an
//! `encoding-type` on every element; a missing or unknown one is an error.
//! Files without the root attribute are read in *legacy* mode (anndata < 0.8:
//! compound-typed `obs`/`var`, categories in `uns/<col>_categories`,
//! `raw.X` / `raw.var`, `h5sparse_*` sparse groups), see [`super::legacy`].
use std::collections::BTreeMap;
use std::hash::Hasher;
use std::io::Read;
use std::path::Path;

use hdf5::types::TypeDescriptor;
use hdf5::{File, Group, LocationType};

use super::h5util::{
    attr_bool, attr_string, attr_strings, descriptor, encoding, join, read_dense, type_name, Ctx,
};
use super::legacy;
use super::sparse::SparseMeta;
use super::types::*;
use crate::error::{DatasetsError, Result};

/// Elements that can appear anywhere (an extended [`Value`]).
#[derive(Debug)]
pub(crate) enum Elem {
    Value(Value),
    Column(Column),
    Raw(Box<Raw>),
    /// `null` (Python `None`), skipped by dict readers.
    Null,
}

/// Reading mode: strict (modern) or lenient (legacy, encodings inferred).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Strict,
    Legacy,
}

const HDF5_SIGNATURE: [u8; 8] = [0x89, b'H', b'D', b'F', b'\r', b'\n', 0x1a, b'\n'];

/// Check the HDF5 signature (at offset 0, 512, 1024, ...) before handing the
/// file to the library, so that a non-HDF5 file gets a clear message.
pub(crate) fn check_signature(path: &Path) -> Result<()> {
    let io = |e| DatasetsError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    let mut head = vec![0u8; len.min(1 << 16) as usize];
    f.read_exact(&mut head).map_err(io)?;
    let mut off = 0usize;
    while off + 8 <= head.len() {
        if head[off..off + 8] == HDF5_SIGNATURE {
            return Ok(());
        }
        off = if off == 0 { 512 } else { off * 2 };
    }
    let shown: String = head
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ");
    Err(DatasetsError::Format {
        file: path.to_path_buf(),
        path: "/".into(),
        expected: "an HDF5 file (signature 89 48 44 46 0d 0a 1a 0a)".into(),
        found: if head.is_empty() {
            "an empty file".into()
        } else {
            format!("first bytes {shown}")
        },
    })
}

/// Open an HDF5 file with a clear error for truncated or corrupt files.
pub(crate) fn open_file(path: &Path) -> Result<(File, Ctx)> {
    check_signature(path)?;
    let ctx = Ctx::new(path);
    let f = File::open(path).map_err(|e| {
        ctx.err(
            "/",
            format!("cannot open as HDF5 (truncated or corrupt file?): {e}"),
        )
    })?;
    Ok((f, ctx))
}

/// Decide the layout of the root group.
pub(crate) fn root_mode(ctx: &Ctx, f: &Group) -> Result<Mode> {
    match attr_string(ctx, f, "/", "encoding-type")? {
        Some(t) if t == "anndata" => Ok(Mode::Strict),
        Some(t) => Err(ctx.fmt("/", "root encoding-type `anndata`", format!("`{t}`"))),
        None => {
            let members = ctx.h5("/", "listing members", f.member_names())?;
            if members.iter().any(|m| m == "obs" || m == "X" || m == "var") {
                Ok(Mode::Legacy)
            } else {
                Err(ctx.fmt(
                    "/",
                    "an AnnData layout (root `encoding-type = anndata`, or legacy `X`/`obs`/`var`)",
                    format!("members {members:?} and no encoding attributes"),
                ))
            }
        }
    }
}

/// Read a whole `.h5ad` file.
///
/// `X` is read on a second thread while the main thread reads `obs`, `var`
/// and the other elements: the bulk of `X` is read with positioned reads
/// outside the HDF5 lock (see [`super::direct`]), so the two overlap.
pub fn read_h5ad(path: impl AsRef<Path>) -> Result<AnnData> {
    let path = path.as_ref();
    let (f, ctx) = open_file(path)?;
    let mode = root_mode(&ctx, &f)?;
    let root: &Group = &f;
    let (x, rest) = std::thread::scope(|s| {
        let hx = root
            .link_exists("X")
            .then(|| s.spawn(|| read_matrix(&ctx, root, "/", "X", mode)));
        let rest = read_all_but_x(&ctx, root, mode);
        let x = hx.map(|h| {
            h.join()
                .unwrap_or_else(|_| Err(ctx.err("/X", "reader thread panicked")))
        });
        (x, rest)
    });
    // When both fail, report the problem of obs/var/... (read first, as in a
    // sequential read) rather than that of X.
    let mut ad = rest?;
    ad.x = x.transpose()?;
    if mode == Mode::Legacy {
        legacy::move_neighbors_to_obsp(&mut ad);
    }
    check_shapes(&ctx, &ad)?;
    Ok(ad)
}

/// Everything except `X`; obs names are checked for uniqueness here.
fn read_all_but_x(ctx: &Ctx, root: &Group, mode: Mode) -> Result<AnnData> {
    let mut uns = BTreeMap::new();
    if root.link_exists("uns") {
        uns = read_dict_group(ctx, root, "/uns", "uns", mode)?;
    }
    let obs = read_frame_member(ctx, root, "obs", mode, &mut uns)?;
    check_unique(ctx, "/obs", &obs.index)?;
    let var = read_frame_member(ctx, root, "var", mode, &mut uns)?;
    let mut ad = AnnData {
        x: None,
        obs,
        var,
        obsm: read_matrix_dict(ctx, root, "obsm", mode)?,
        varm: read_matrix_dict(ctx, root, "varm", mode)?,
        obsp: read_matrix_dict(ctx, root, "obsp", mode)?,
        varp: read_matrix_dict(ctx, root, "varp", mode)?,
        layers: read_matrix_dict(ctx, root, "layers", mode)?,
        uns,
        raw: None,
    };
    ad.raw = read_raw_member(ctx, root, mode)?;
    Ok(ad)
}

/// obs / var, modern dataframe group or legacy compound dataset; absent → empty.
pub(crate) fn read_frame_member(
    ctx: &Ctx,
    root: &Group,
    name: &str,
    mode: Mode,
    uns: &mut BTreeMap<String, Value>,
) -> Result<DataFrame> {
    let path = join("/", name);
    if !root.link_exists(name) {
        return Ok(DataFrame::new(Vec::new()));
    }
    if let (Mode::Legacy, Ok(ds)) = (mode, root.dataset(name)) {
        return legacy::read_compound_frame(ctx, &path, &ds, Some(uns));
    }
    match read_elem(ctx, root, "/", name, mode)? {
        Elem::Value(Value::DataFrame(df)) => Ok(df),
        other => Err(ctx.fmt(&path, "a dataframe", elem_kind(&other))),
    }
}

fn read_raw_member(ctx: &Ctx, root: &Group, mode: Mode) -> Result<Option<Raw>> {
    if root.link_exists("raw") {
        return match read_elem(ctx, root, "/", "raw", mode)? {
            Elem::Raw(r) => Ok(Some(*r)),
            Elem::Value(Value::Dict(_)) if mode == Mode::Legacy => {
                let g = ctx.h5("/raw", "opening group", root.group("raw"))?;
                read_raw_group(ctx, &g, "/raw", mode).map(Some)
            }
            other => Err(ctx.fmt("/raw", "a raw group", elem_kind(&other))),
        };
    }
    if mode == Mode::Legacy && root.link_exists("raw.X") {
        let x = read_matrix(ctx, root, "/", "raw.X", mode)?;
        let mut none = BTreeMap::new();
        let var = if root.link_exists("raw.var") {
            read_frame_member(ctx, root, "raw.var", mode, &mut none)?
        } else {
            DataFrame::new((0..x.shape2().1).map(|i| i.to_string()).collect())
        };
        let varm = if root.link_exists("raw.varm") {
            legacy::read_matrix_container(ctx, root, "raw.varm", mode)?
        } else {
            BTreeMap::new()
        };
        return Ok(Some(Raw { x, var, varm }));
    }
    Ok(None)
}

fn read_raw_group(ctx: &Ctx, g: &Group, path: &str, mode: Mode) -> Result<Raw> {
    if !g.link_exists("X") {
        return Err(ctx.fmt(&join(path, "X"), "raw/X", "nothing"));
    }
    let x = read_matrix(ctx, g, path, "X", mode)?;
    let var = match g.link_exists("var") {
        true => match read_elem(ctx, g, path, "var", mode)? {
            Elem::Value(Value::DataFrame(df)) => df,
            other => return Err(ctx.fmt(&join(path, "var"), "a dataframe", elem_kind(&other))),
        },
        false => DataFrame::new((0..x.shape2().1).map(|i| i.to_string()).collect()),
    };
    let varm = if g.link_exists("varm") {
        let sub = ctx.h5(&join(path, "varm"), "opening group", g.group("varm"))?;
        read_matrices(ctx, &sub, &join(path, "varm"), mode)?
    } else {
        BTreeMap::new()
    };
    if x.shape2().1 != var.n_rows() {
        return Err(ctx.fmt(
            path,
            format!("raw/var with {} rows (raw/X columns)", x.shape2().1),
            format!("{} rows", var.n_rows()),
        ));
    }
    Ok(Raw { x, var, varm })
}

/// One matrix element (X, a layer, an obsm entry, ...).
pub(crate) fn read_matrix(
    ctx: &Ctx,
    parent: &Group,
    ppath: &str,
    name: &str,
    mode: Mode,
) -> Result<Matrix> {
    match read_elem(ctx, parent, ppath, name, mode)? {
        Elem::Value(Value::Array(a)) => Ok(Matrix::Dense(a)),
        Elem::Value(Value::Sparse(s)) => Ok(Matrix::Sparse(s)),
        other => Err(ctx.fmt(
            &join(ppath, name),
            "a dense array or sparse matrix",
            elem_kind(&other),
        )),
    }
}

fn read_matrix_dict(
    ctx: &Ctx,
    root: &Group,
    name: &str,
    mode: Mode,
) -> Result<BTreeMap<String, Matrix>> {
    if !root.link_exists(name) {
        return Ok(BTreeMap::new());
    }
    legacy::read_matrix_container(ctx, root, name, mode)
}

/// All members of a group as matrices.
pub(crate) fn read_matrices(
    ctx: &Ctx,
    g: &Group,
    path: &str,
    mode: Mode,
) -> Result<BTreeMap<String, Matrix>> {
    if mode == Mode::Strict {
        match encoding(ctx, g, path)? {
            Some((t, _)) if t == "dict" => {}
            Some((t, _)) => return Err(ctx.fmt(path, "encoding-type `dict`", format!("`{t}`"))),
            None => {
                return Err(ctx.fmt(path, "attribute encoding-type (`dict`)", "no encoding-type"))
            }
        }
    }
    let mut out = BTreeMap::new();
    for m in ctx.h5(path, "listing members", g.member_names())? {
        out.insert(m.clone(), read_matrix(ctx, g, path, &m, mode)?);
    }
    Ok(out)
}

fn read_dict_group(
    ctx: &Ctx,
    parent: &Group,
    path: &str,
    name: &str,
    mode: Mode,
) -> Result<BTreeMap<String, Value>> {
    match read_elem(ctx, parent, "/", name, mode)? {
        Elem::Value(Value::Dict(d)) => Ok(d),
        other => Err(ctx.fmt(path, "a dict", elem_kind(&other))),
    }
}

pub(crate) fn elem_kind(e: &Elem) -> String {
    match e {
        Elem::Value(Value::Dict(_)) => "a dict".into(),
        Elem::Value(Value::Scalar(_)) => "a scalar".into(),
        Elem::Value(Value::Array(a)) => {
            format!("an array ({}, shape {:?})", a.dtype_name(), a.shape())
        }
        Elem::Value(Value::Sparse(s)) => format!("a {}", s.format.encoding()),
        Elem::Value(Value::DataFrame(_)) => "a dataframe".into(),
        Elem::Value(Value::Categorical { .. }) => "a categorical".into(),
        Elem::Column(c) => format!("a {} array", c.kind()),
        Elem::Raw(_) => "a raw group".into(),
        Elem::Null => "null".into(),
    }
}

/// Read any element by its `encoding-type`.
pub(crate) fn read_elem(
    ctx: &Ctx,
    parent: &Group,
    ppath: &str,
    name: &str,
    mode: Mode,
) -> Result<Elem> {
    let path = join(ppath, name);
    let is_group = match ctx.h5(&path, "looking up object", parent.loc_type_by_name(name))? {
        LocationType::Group => true,
        LocationType::Dataset => false,
        other => return Err(ctx.fmt(&path, "a group or dataset", format!("{other:?}"))),
    };
    if is_group {
        let g = ctx.h5(&path, "opening group", parent.group(name))?;
        let enc = encoding(ctx, &g, &path)?;
        let kind = match enc {
            Some((t, _)) => t,
            None if mode == Mode::Legacy => legacy::infer_group_encoding(ctx, &g, &path)?,
            None => {
                return Err(ctx.fmt(
                    &path,
                    "attribute `encoding-type` on a group",
                    "no encoding-type",
                ));
            }
        };
        read_group_elem(ctx, &g, &path, &kind, mode)
    } else {
        let ds = ctx.h5(&path, "opening dataset", parent.dataset(name))?;
        let enc = encoding(ctx, &ds, &path)?;
        let t = descriptor(ctx, &path, &ds)?;
        let kind = match enc {
            Some((k, _)) => k,
            None if mode == Mode::Legacy => {
                if let TypeDescriptor::Compound(_) = t {
                    return legacy::read_compound_frame(ctx, &path, &ds, None)
                        .map(|df| Elem::Value(Value::DataFrame(df)));
                }
                if super::h5util::is_string_type(&t) && ds.shape() == [1] {
                    // anndata reads legacy 1-element string arrays as scalars.
                    if let DenseArray::String(s) = read_dense(ctx, &path, &ds)? {
                        return Ok(Elem::Value(Value::Scalar(Scalar::String(
                            s.iter().next().cloned().unwrap_or_default(),
                        ))));
                    }
                }
                "array".to_string()
            }
            None => {
                return Err(ctx.fmt(
                    &path,
                    "attribute `encoding-type` on a dataset",
                    "no encoding-type",
                ))
            }
        };
        match kind.as_str() {
            "array" | "string-array" => {
                let a = read_dense(ctx, &path, &ds)?;
                if kind == "string-array" && !matches!(a, DenseArray::String(_)) {
                    return Err(ctx.fmt(&path, "strings for a string-array", type_name(&t)));
                }
                Ok(Elem::Value(Value::Array(a)))
            }
            "numeric-scalar" | "string" => {
                if ds.ndim() != 0 {
                    return Err(ctx.fmt(
                        &path,
                        format!("a scalar dataset for `{kind}`"),
                        format!("shape {:?}", ds.shape()),
                    ));
                }
                let a = read_dense(ctx, &path, &ds)?;
                let s = match a {
                    DenseArray::String(s) => {
                        Scalar::String(s.iter().next().cloned().unwrap_or_default())
                    }
                    DenseArray::Bool(b) => {
                        Scalar::Bool(b.iter().next().copied().unwrap_or_default())
                    }
                    DenseArray::F32(_) | DenseArray::F64(_) => Scalar::F64(
                        a.to_f64()
                            .and_then(|v| v.iter().next().copied())
                            .unwrap_or(f64::NAN),
                    ),
                    other => Scalar::I64(match other {
                        DenseArray::U64(v) => {
                            v.iter().next().map(|&x| x as i64).unwrap_or_default()
                        }
                        DenseArray::I64(v) => v.iter().next().copied().unwrap_or_default(),
                        o => o
                            .to_f64()
                            .and_then(|v| v.iter().next().copied())
                            .unwrap_or_default() as i64,
                    }),
                };
                Ok(Elem::Value(Value::Scalar(s)))
            }
            other => Err(ctx.fmt(
                &path,
                "a known dataset encoding (array, string-array, numeric-scalar, string)",
                format!("encoding-type `{other}`"),
            )),
        }
    }
}

fn read_group_elem(ctx: &Ctx, g: &Group, path: &str, kind: &str, mode: Mode) -> Result<Elem> {
    match kind {
        "csr_matrix" | "csc_matrix" => {
            let format = if kind == "csr_matrix" { SparseFormat::Csr } else { SparseFormat::Csc };
            let meta = SparseMeta::open(ctx, g, path, format)?;
            Ok(Elem::Value(Value::Sparse(meta.read(ctx)?)))
        }
        "dict" => {
            let mut out = BTreeMap::new();
            for m in ctx.h5(path, "listing members", g.member_names())? {
                match read_elem(ctx, g, path, &m, mode)? {
                    Elem::Value(v) => {
                        out.insert(m, v);
                    }
                    Elem::Null => {}
                    Elem::Column(c) => {
                        return Err(ctx.fmt(&join(path, &m), "an element storable in uns", format!("a {} array", c.kind())));
                    }
                    Elem::Raw(_) => return Err(ctx.fmt(&join(path, &m), "an element storable in uns", "raw")),
                }
            }
            Ok(Elem::Value(Value::Dict(out)))
        }
        "dataframe" => read_dataframe(ctx, g, path, mode).map(|d| Elem::Value(Value::DataFrame(d))),
        "categorical" => {
            let (codes, categories, ordered) = read_categorical(ctx, g, path, mode)?;
            Ok(Elem::Value(Value::Categorical { codes, categories, ordered }))
        }
        "nullable-integer" | "nullable-boolean" | "nullable-string-array" => read_nullable(ctx, g, path, kind, mode),
        "raw" => read_raw_group(ctx, g, path, mode).map(|r| Elem::Raw(Box::new(r))),
        "null" => Ok(Elem::Null),
        other => Err(ctx.fmt(
            path,
            "a known group encoding (csr_matrix, csc_matrix, dict, dataframe, categorical, nullable-integer, nullable-boolean, raw)",
            format!("encoding-type `{other}`"),
        )),
    }
}

fn child_dense(ctx: &Ctx, g: &Group, path: &str, name: &str) -> Result<DenseArray> {
    let p = join(path, name);
    if !g.link_exists(name) {
        return Err(ctx.fmt(&p, format!("dataset `{name}`"), "nothing"));
    }
    let ds = ctx.h5(&p, "opening dataset", g.dataset(name))?;
    read_dense(ctx, &p, &ds)
}

fn read_categorical(
    ctx: &Ctx,
    g: &Group,
    path: &str,
    _mode: Mode,
) -> Result<(Vec<i32>, DenseArray, bool)> {
    let cp = join(path, "codes");
    let codes = match child_dense(ctx, g, path, "codes")? {
        DenseArray::I8(a) => a.iter().map(|&x| i32::from(x)).collect::<Vec<_>>(),
        DenseArray::I16(a) => a.iter().map(|&x| i32::from(x)).collect(),
        DenseArray::I32(a) => a.iter().copied().collect(),
        DenseArray::I64(a) => a
            .iter()
            .map(|&x| i32::try_from(x).unwrap_or(i32::MIN))
            .collect(),
        DenseArray::U8(a) => a.iter().map(|&x| i32::from(x)).collect(),
        DenseArray::U16(a) => a.iter().map(|&x| i32::from(x)).collect(),
        other => return Err(ctx.fmt(&cp, "integer category codes", other.dtype_name())),
    };
    let categories = child_dense(ctx, g, path, "categories")?;
    let n = categories.len() as i32;
    if let Some(i) = codes.iter().position(|&c| c < -1 || c >= n) {
        return Err(ctx.fmt(
            &cp,
            format!("codes in [-1, {n}) ({n} categories)"),
            format!("codes[{i}] = {}", codes[i]),
        ));
    }
    let ordered = attr_bool(ctx, g, path, "ordered")?.unwrap_or(false);
    Ok((codes, categories, ordered))
}

fn read_nullable(ctx: &Ctx, g: &Group, path: &str, kind: &str, _mode: Mode) -> Result<Elem> {
    let mask = match child_dense(ctx, g, path, "mask")? {
        DenseArray::Bool(m) => m.iter().copied().collect::<Vec<_>>(),
        DenseArray::U8(m) => m.iter().map(|&x| x != 0).collect(),
        DenseArray::I8(m) => m.iter().map(|&x| x != 0).collect(),
        other => return Err(ctx.fmt(&join(path, "mask"), "a boolean mask", other.dtype_name())),
    };
    let values = child_dense(ctx, g, path, "values")?;
    if values.len() != mask.len() {
        return Err(ctx.fmt(
            &join(path, "mask"),
            format!("{} entries (as values)", values.len()),
            mask.len().to_string(),
        ));
    }
    let vp = join(path, "values");
    let col = match (kind, values) {
        ("nullable-boolean", DenseArray::Bool(v)) => Column::NullableBool {
            values: v.iter().copied().collect(),
            mask,
        },
        ("nullable-integer", DenseArray::String(_)) | ("nullable-boolean", _) => {
            return Err(ctx.fmt(&vp, format!("values of a {kind}"), "another dtype"));
        }
        ("nullable-integer", v) => {
            let vals: Vec<i64> = match v {
                DenseArray::I64(a) => a.iter().copied().collect(),
                DenseArray::U64(a) => a.iter().map(|&x| x as i64).collect(),
                DenseArray::Bool(a) => a.iter().map(|&x| i64::from(x)).collect(),
                DenseArray::F32(_) | DenseArray::F64(_) => {
                    return Err(ctx.fmt(
                        &vp,
                        "integer values of a nullable-integer",
                        v.dtype_name(),
                    ));
                }
                o => o
                    .to_f64()
                    .map(|a| a.iter().map(|&x| x as i64).collect())
                    .unwrap_or_default(),
            };
            Column::NullableInt { values: vals, mask }
        }
        (_, DenseArray::String(s)) => {
            // nullable-string-array: kept as a categorical with code -1 for missing.
            let labels: Vec<Option<&String>> = s
                .iter()
                .zip(&mask)
                .map(|(v, &m)| if m { None } else { Some(v) })
                .collect();
            Column::categorical_from_labels(&labels)
        }
        (_, other) => {
            return Err(ctx.fmt(
                &vp,
                "string values of a nullable-string-array",
                other.dtype_name(),
            ))
        }
    };
    Ok(Elem::Column(col))
}

pub(crate) fn read_dataframe(ctx: &Ctx, g: &Group, path: &str, mode: Mode) -> Result<DataFrame> {
    let parts = read_dataframe_parts(ctx, g, path, mode, false)?;
    Ok(DataFrame {
        index_name: parts.index_name,
        index: parts.index.unwrap_or_default(),
        columns: parts.columns,
    })
}

/// A data frame group as read by [`read_dataframe_parts`].
pub(crate) struct FrameParts {
    pub index_name: String,
    /// `None` when the index was left on disk (see `defer_index`); read it
    /// with [`read_frame_index`].
    pub index: Option<Vec<String>>,
    pub n_rows: usize,
    pub columns: Vec<(String, Column)>,
}

/// Read a `dataframe` group. With `defer_index`, an index stored as a 1-D
/// string dataset (the usual `_index` of obs names) is not read: only its
/// length is taken, and its checks (encoding, UTF-8) are left to
/// [`read_frame_index`]. Other indexes (categorical, numeric) are read.
pub(crate) fn read_dataframe_parts(
    ctx: &Ctx,
    g: &Group,
    path: &str,
    mode: Mode,
    defer_index: bool,
) -> Result<FrameParts> {
    let index_name = attr_string(ctx, g, path, "_index")?.ok_or_else(|| {
        ctx.fmt(
            path,
            "attribute `_index` on a dataframe",
            "no _index attribute",
        )
    })?;
    let order = attr_strings(ctx, g, path, "column-order")?.ok_or_else(|| {
        ctx.fmt(
            path,
            "attribute `column-order` on a dataframe",
            "no column-order attribute",
        )
    })?;
    let ipath = join(path, &index_name);
    if !g.link_exists(&index_name) {
        return Err(ctx.fmt(
            &ipath,
            format!("the index column `{index_name}` named by _index"),
            "nothing",
        ));
    }
    let deferred = match defer_index {
        true => deferrable_index_len(ctx, g, &ipath, &index_name)?,
        false => None,
    };
    let (index, n_rows) = match deferred {
        Some(n) => (None, n),
        None => {
            let index = read_frame_index(ctx, g, path, &index_name, mode)?;
            let n = index.len();
            (Some(index), n)
        }
    };
    let mut columns = Vec::with_capacity(order.len());
    for c in order {
        let cpath = join(path, &c);
        if !g.link_exists(&c) {
            return Err(ctx.fmt(
                &cpath,
                format!("column `{c}` listed in column-order"),
                "nothing",
            ));
        }
        let col = match read_elem(ctx, g, path, &c, mode)? {
            Elem::Value(Value::Array(a)) if a.ndim() == 1 => Column::Array(a),
            Elem::Value(Value::Categorical {
                codes,
                categories,
                ordered,
            }) => Column::Categorical {
                codes,
                categories,
                ordered,
            },
            Elem::Column(col) => col,
            other => return Err(ctx.fmt(&cpath, "a 1-D column", elem_kind(&other))),
        };
        if col.len() != n_rows {
            return Err(ctx.fmt(
                &cpath,
                format!("{n_rows} rows (as the index)"),
                format!("{} rows", col.len()),
            ));
        }
        columns.push((c, col));
    }
    Ok(FrameParts {
        index_name,
        index,
        n_rows,
        columns,
    })
}

/// Length of an index that is a 1-D dataset of strings (cheap metadata
/// only); `None` for anything else.
fn deferrable_index_len(ctx: &Ctx, g: &Group, ipath: &str, name: &str) -> Result<Option<usize>> {
    let kind = ctx.h5(ipath, "looking up object", g.loc_type_by_name(name))?;
    if kind != LocationType::Dataset {
        return Ok(None);
    }
    let ds = ctx.h5(ipath, "opening dataset", g.dataset(name))?;
    if ds.ndim() != 1 {
        return Ok(None);
    }
    // only a `string-array` is deferred; anything else is read (and checked)
    // at open, as `open` would
    if !matches!(encoding(ctx, &ds, ipath)?, Some((e, _)) if e == "string-array") {
        return Ok(None);
    }
    let t = descriptor(ctx, ipath, &ds)?;
    Ok(super::h5util::is_string_type(&t).then(|| ds.size()))
}

/// The index (row names) of a `dataframe` group, named by its `_index`.
pub(crate) fn read_frame_index(
    ctx: &Ctx,
    g: &Group,
    path: &str,
    index_name: &str,
    mode: Mode,
) -> Result<Vec<String>> {
    let ipath = join(path, index_name);
    Ok(match read_elem(ctx, g, path, index_name, mode)? {
        Elem::Value(Value::Array(DenseArray::String(s))) if s.ndim() == 1 => {
            if s.is_standard_layout() {
                // Contiguous: the names are storage[offset..offset + n], in
                // order (as read, the whole storage; no copy).
                let n = s.len();
                let (mut v, offset) = s.into_raw_vec_and_offset();
                let offset = offset.unwrap_or(0);
                v.truncate(offset + n);
                v.drain(..offset);
                v
            } else {
                s.into_iter().collect()
            }
        }
        Elem::Value(Value::Array(a)) if a.ndim() == 1 => column_labels(&Column::Array(a)),
        Elem::Value(Value::Categorical {
            codes,
            categories,
            ordered,
        }) => column_labels(&Column::Categorical {
            codes,
            categories,
            ordered,
        }),
        other => return Err(ctx.fmt(&ipath, "a 1-D string array index", elem_kind(&other))),
    })
}

fn column_labels(c: &Column) -> Vec<String> {
    c.labels()
        .into_iter()
        .map(|l| l.unwrap_or_else(|| "nan".into()))
        .collect()
}

/// Shapes agree with obs/var; obs names are unique.
pub(crate) fn check_consistency(ctx: &Ctx, ad: &AnnData) -> Result<()> {
    check_shapes(ctx, ad)?;
    check_unique(ctx, "/obs", &ad.obs.index)
}

/// Shapes of X, layers, obsm/varm, obsp/varp and raw agree with obs/var.
fn check_shapes(ctx: &Ctx, ad: &AnnData) -> Result<()> {
    let (n_obs, n_vars) = (ad.n_obs(), ad.n_vars());
    let shape_err =
        |p: &str, exp: String, found: (usize, usize)| ctx.fmt(p, exp, format!("shape {found:?}"));
    if let Some(x) = &ad.x {
        if x.shape2() != (n_obs, n_vars) {
            return Err(shape_err(
                "/X",
                format!("shape ({n_obs}, {n_vars}) from obs × var"),
                x.shape2(),
            ));
        }
    }
    for (k, m) in &ad.layers {
        if m.shape2() != (n_obs, n_vars) {
            return Err(shape_err(
                &format!("/layers/{k}"),
                format!("shape ({n_obs}, {n_vars}) like X"),
                m.shape2(),
            ));
        }
    }
    for (grp, d, n) in [("obsm", &ad.obsm, n_obs), ("varm", &ad.varm, n_vars)] {
        for (k, m) in d {
            if m.shape2().0 != n {
                return Err(shape_err(
                    &format!("/{grp}/{k}"),
                    format!("{n} rows"),
                    m.shape2(),
                ));
            }
        }
    }
    for (grp, d, n) in [("obsp", &ad.obsp, n_obs), ("varp", &ad.varp, n_vars)] {
        for (k, m) in d {
            if m.shape2() != (n, n) {
                return Err(shape_err(
                    &format!("/{grp}/{k}"),
                    format!("shape ({n}, {n})"),
                    m.shape2(),
                ));
            }
        }
    }
    if let Some(r) = &ad.raw {
        if r.x.shape2().0 != n_obs {
            return Err(shape_err(
                "/raw/X",
                format!("{n_obs} rows (n_obs)"),
                r.x.shape2(),
            ));
        }
    }
    Ok(())
}

pub(crate) fn check_unique(ctx: &Ctx, path: &str, names: &[String]) -> Result<()> {
    match find_duplicate(names) {
        Some((j, i)) => Err(dup_name(ctx, path, &names[i], j, i)),
        None => Ok(()),
    }
}

/// Positions `(first, second)` of two equal names, if any.
pub(crate) fn find_duplicate(names: &[String]) -> Option<(usize, usize)> {
    // Cache-friendly duplicate search: hash every name once, scatter
    // (hash, row) pairs into buckets by the top hash bits, then check each
    // bucket with a small open-addressing table that stays in L1. Names are
    // only compared when their hashes agree. (A HashMap over 10^5 names
    // missed the cache on every insert and took a tenth of a full read.)
    let n = names.len();
    if n < 2 {
        return None;
    }
    let hashes: Vec<u64> = names
        .iter()
        .map(|s| {
            let mut h = NameHasher::default();
            h.write(s.as_bytes());
            h.finish()
        })
        .collect();
    let bucket_bits = (n / 256).max(1).next_power_of_two().trailing_zeros();
    let shift = 64 - bucket_bits;
    let bucket = |h: u64| {
        if bucket_bits == 0 {
            0
        } else {
            (h >> shift) as usize
        }
    };
    let mut start = vec![0usize; (1usize << bucket_bits) + 1];
    for &h in &hashes {
        start[bucket(h) + 1] += 1;
    }
    for b in 1..start.len() {
        start[b] += start[b - 1];
    }
    let mut fill = start.clone();
    let mut pairs: Vec<(u64, usize)> = vec![(0, 0); n];
    for (i, &h) in hashes.iter().enumerate() {
        let b = bucket(h);
        pairs[fill[b]] = (h, i);
        fill[b] += 1;
    }
    let mut table: Vec<usize> = Vec::new();
    for b in 0..start.len() - 1 {
        let part = &pairs[start[b]..start[b + 1]];
        let size = (part.len() * 2).next_power_of_two().max(8);
        let mask = size - 1;
        table.clear();
        table.resize(size, usize::MAX);
        for (k, &(h, i)) in part.iter().enumerate() {
            let mut at = h as usize & mask;
            loop {
                let e = table[at];
                if e == usize::MAX {
                    table[at] = k;
                    break;
                }
                let (h2, j) = part[e];
                if h2 == h && names[j] == names[i] {
                    return Some((j.min(i), j.max(i)));
                }
                at = (at + 1) & mask;
            }
        }
    }
    None
}

pub(crate) fn dup_name(ctx: &Ctx, path: &str, n: &str, j: usize, i: usize) -> DatasetsError {
    ctx.fmt(
        path,
        "unique obs names",
        format!("`{n}` at rows {j} and {i}"),
    )
}

/// A fast, non-cryptographic hasher for obs names (word-at-a-time
/// multiply-rotate with a final avalanche); SipHash took a tenth of a full
/// read of 10^5 cells. Names come from a file the user chose to open, so
/// hash flooding is not a concern here.
#[derive(Default)]
pub(crate) struct NameHasher(u64);

impl NameHasher {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(23) ^ w).wrapping_mul(Self::K);
    }
}

impl Hasher for NameHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut it = bytes.chunks_exact(8);
        for c in &mut it {
            self.add(u64::from_le_bytes([
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
            ]));
        }
        let rest = it.remainder();
        let mut b = [0u8; 8];
        b[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(b) ^ ((bytes.len() as u64) << 56));
    }
    #[inline]
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 33)
    }
}
