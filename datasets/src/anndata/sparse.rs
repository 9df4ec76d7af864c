//! `csr_matrix` / `csc_matrix` elements: a group with `data`, `indices`,
//! `indptr` and the attribute `shape` (legacy files: `h5sparse_shape`).
//! Whole or row-range reads go straight into Vecs; the structure is validated
//! (indptr monotone from 0 to nnz, indices inside the minor axis) in parallel.
use std::ops::Range;

use hdf5::types::{FloatSize, IntSize, TypeDescriptor};
use hdf5::{Dataset, Group};

use super::h5util::{attr_i64s, descriptor, join, read_range_into, type_name, Ctx};
use super::types::{SparseData, SparseFormat, SparseIndex, SparseMatrix};
use crate::error::Result;

/// What a sparse group holds, without reading its arrays.
#[derive(Debug, Clone)]
pub(crate) struct SparseMeta {
    pub format: SparseFormat,
    pub shape: (usize, usize),
    pub nnz: usize,
    pub data: Dataset,
    pub indices: Dataset,
    pub indptr: Dataset,
    pub path: String,
}

impl SparseMeta {
    pub fn open(ctx: &Ctx, g: &Group, path: &str, format: SparseFormat) -> Result<Self> {
        let shape = match attr_i64s(ctx, g, path, "shape")? {
            Some(s) => s,
            None => attr_i64s(ctx, g, path, "h5sparse_shape")?.ok_or_else(|| {
                ctx.fmt(
                    path,
                    "attribute `shape` on a sparse matrix",
                    "no shape attribute",
                )
            })?,
        };
        if shape.len() != 2 || shape.iter().any(|&s| s < 0) {
            return Err(ctx.fmt(path, "a 2-D non-negative `shape`", format!("{shape:?}")));
        }
        let shape = (shape[0] as usize, shape[1] as usize);
        let open = |name: &str| -> Result<Dataset> {
            let p = join(path, name);
            if !g.link_exists(name) {
                return Err(ctx.fmt(
                    &p,
                    format!("dataset `{name}` of a {}", format.encoding()),
                    "nothing",
                ));
            }
            ctx.h5(&p, "opening dataset", g.dataset(name))
        };
        let (data, indices, indptr) = (open("data")?, open("indices")?, open("indptr")?);
        for (ds, name) in [(&data, "data"), (&indices, "indices"), (&indptr, "indptr")] {
            if ds.ndim() != 1 {
                return Err(ctx.fmt(
                    &join(path, name),
                    "a 1-D dataset",
                    format!("shape {:?}", ds.shape()),
                ));
            }
        }
        let major = match format {
            SparseFormat::Csr => shape.0,
            SparseFormat::Csc => shape.1,
        };
        if indptr.size() != major + 1 {
            return Err(ctx.fmt(
                &join(path, "indptr"),
                format!(
                    "{} entries (major axis {} + 1) for shape {:?}",
                    major + 1,
                    major,
                    shape
                ),
                format!("{} entries", indptr.size()),
            ));
        }
        if indices.size() != data.size() {
            return Err(ctx.fmt(
                &join(path, "indices"),
                format!("as many entries as data ({})", data.size()),
                format!("{} entries", indices.size()),
            ));
        }
        for (ds, name) in [(&indices, "indices"), (&indptr, "indptr")] {
            let t = descriptor(ctx, &join(path, name), ds)?;
            if !matches!(t, TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_)) {
                return Err(ctx.fmt(&join(path, name), "integer indices", type_name(&t)));
            }
        }
        Ok(SparseMeta {
            format,
            shape,
            nnz: data.size(),
            data,
            indices,
            indptr,
            path: path.to_string(),
        })
    }

    pub fn major(&self) -> usize {
        match self.format {
            SparseFormat::Csr => self.shape.0,
            SparseFormat::Csc => self.shape.1,
        }
    }

    /// The whole indptr as i64 (validated: starts at 0, monotone, ends at nnz).
    pub fn indptr_i64(&self, ctx: &Ctx) -> Result<Vec<i64>> {
        let p = join(&self.path, "indptr");
        let v: Vec<i64> = ctx.h5(&p, "reading indptr", self.indptr.read_raw::<i64>())?;
        check_indptr(ctx, &p, &v, self.nnz)?;
        Ok(v)
    }

    /// Read the full matrix exactly as stored, validated.
    pub fn read(&self, ctx: &Ctx) -> Result<SparseMatrix> {
        // data and indices are read concurrently (direct preads run outside the HDF5 lock).
        let (data, indices) = std::thread::scope(|s| {
            let h = s.spawn(|| {
                read_data_ranges(ctx, &join(&self.path, "data"), &self.data, &[0..self.nnz])
            });
            let indices = read_index_ranges_bounded(
                ctx,
                &join(&self.path, "indices"),
                &self.indices,
                &[0..self.nnz],
            );
            let data = h
                .join()
                .unwrap_or_else(|_| Err(ctx.err(&self.path, "reader thread failed")));
            (data, indices)
        });
        let (data, (indices, bounds)) = (data?, indices?);
        let indptr = read_index_ranges(
            ctx,
            &join(&self.path, "indptr"),
            &self.indptr,
            &[0..self.major() + 1],
        )?;
        let m = SparseMatrix {
            format: self.format,
            shape: self.shape,
            data,
            indices,
            indptr,
        };
        validate_known(ctx, &self.path, &m, Some(bounds))?;
        Ok(m)
    }
}

fn check_indptr(ctx: &Ctx, path: &str, v: &[i64], nnz: usize) -> Result<()> {
    if v.first() != Some(&0) {
        return Err(ctx.fmt(path, "indptr starting at 0", format!("{:?}", v.first())));
    }
    if let Some(i) = v.windows(2).position(|w| w[1] < w[0]) {
        return Err(ctx.fmt(
            path,
            "non-decreasing indptr",
            format!(
                "indptr[{}] = {} > indptr[{}] = {}",
                i,
                v[i],
                i + 1,
                v[i + 1]
            ),
        ));
    }
    if v.last().copied() != Some(nnz as i64) {
        return Err(ctx.fmt(
            path,
            format!("indptr ending at nnz = {nnz}"),
            format!("{:?}", v.last()),
        ));
    }
    Ok(())
}

/// Check a sparse matrix's structure against its shape.
pub(crate) fn validate(ctx: &Ctx, path: &str, m: &SparseMatrix) -> Result<()> {
    validate_known(ctx, path, m, None)
}

/// [`validate`], given the minimum and maximum of the indices when the
/// reader already found them (the pass over all indices is then skipped
/// unless they are out of range, to find the position for the message).
pub(crate) fn validate_known(
    ctx: &Ctx,
    path: &str,
    m: &SparseMatrix,
    index_bounds: Option<(i64, i64)>,
) -> Result<()> {
    let (major, minor) = match m.format {
        SparseFormat::Csr => m.shape,
        SparseFormat::Csc => (m.shape.1, m.shape.0),
    };
    let pp = join(path, "indptr");
    if m.indptr.len() != major + 1 {
        return Err(ctx.fmt(
            &pp,
            format!("{} entries for shape {:?}", major + 1, m.shape),
            format!("{}", m.indptr.len()),
        ));
    }
    if m.indices.len() != m.data.len() {
        return Err(ctx.fmt(
            &join(path, "indices"),
            format!("{} entries (as data)", m.data.len()),
            format!("{}", m.indices.len()),
        ));
    }
    let ptr: Vec<i64> = match &m.indptr {
        SparseIndex::I32(v) => v.iter().map(|&x| i64::from(x)).collect(),
        SparseIndex::I64(v) => v.clone(),
    };
    check_indptr(ctx, &pp, &ptr, m.data.len())?;
    // A vectorisable min/max pass first; the position is only searched on failure.
    fn out_of_range<T: Copy + Ord + Into<i64>>(v: &[T], minor: usize) -> Option<usize> {
        let (lo, hi) = v.iter().fold((i64::MAX, i64::MIN), |(lo, hi), &x| {
            (lo.min(x.into()), hi.max(x.into()))
        });
        if v.is_empty() || (lo >= 0 && (hi as u64) < minor as u64) {
            return None;
        }
        v.iter()
            .position(|&x| x.into() < 0 || x.into() as u64 >= minor as u64)
    }
    let known_ok = index_bounds
        .is_some_and(|(lo, hi)| m.indices.is_empty() || (lo >= 0 && (hi as u64) < minor as u64));
    let bad = match &m.indices {
        _ if known_ok => None,
        SparseIndex::I32(v) => out_of_range(v, minor),
        SparseIndex::I64(v) => out_of_range(v, minor),
    };
    if let Some(i) = bad {
        return Err(ctx.fmt(
            &join(path, "indices"),
            format!("indices in [0, {minor}) for shape {:?}", m.shape),
            format!("indices[{i}] = {}", m.indices.get(i)),
        ));
    }
    Ok(())
}

/// Append `ranges` of a 1-D dataset to `out`: direct `pread`s when the
/// storage allows it (see [`super::direct`]), HDF5 hyperslab reads otherwise.
/// `inspect` sees the appended values block by block as they arrive (if a
/// direct read fails midway and HDF5 takes over, it sees that prefix again:
/// use it for idempotent summaries such as bounds).
fn read_ranges_into<T: hdf5::H5Type + Copy>(
    ctx: &Ctx,
    path: &str,
    ds: &Dataset,
    ranges: &[Range<usize>],
    out: &mut Vec<T>,
    inspect: &mut dyn FnMut(&[T]),
) -> Result<()> {
    let n = ds.size();
    if let Some(r) = ranges.iter().find(|r| r.end > n || r.start > r.end) {
        return Err(ctx.fmt(
            path,
            format!("element range inside 0..{n}"),
            format!("{r:?}"),
        ));
    }
    let base = out.len();
    let direct = super::direct::pieces::<T>(ds).and_then(|p| {
        let f = std::fs::File::open(&ctx.file).ok()?;
        super::direct::read_ranges(&f, &p, ranges, out, |b| inspect(b))
    });
    if direct.is_none() {
        out.truncate(base);
        for r in ranges {
            let before = out.len();
            read_range_into(ctx, path, ds, r.start, r.len(), out)?;
            inspect(&out[before..]);
        }
    }
    Ok(())
}

/// Read the concatenation of `ranges` of a numeric `data` dataset.
pub(crate) fn read_data_ranges(
    ctx: &Ctx,
    path: &str,
    ds: &Dataset,
    ranges: &[Range<usize>],
) -> Result<SparseData> {
    let t = descriptor(ctx, path, ds)?;
    let total: usize = ranges.iter().map(|r| r.len()).sum();
    macro_rules! rd {
        ($ty:ty, $var:ident) => {{
            let mut v: Vec<$ty> = Vec::with_capacity(total);
            read_ranges_into(ctx, path, ds, ranges, &mut v, &mut |_| {})?;
            SparseData::$var(v)
        }};
    }
    Ok(match t {
        TypeDescriptor::Float(FloatSize::U4) => rd!(f32, F32),
        TypeDescriptor::Float(FloatSize::U8) => rd!(f64, F64),
        TypeDescriptor::Integer(IntSize::U8) => rd!(i64, I64),
        TypeDescriptor::Integer(_) => rd!(i32, I32),
        TypeDescriptor::Unsigned(IntSize::U8) => rd!(u64, U64),
        TypeDescriptor::Unsigned(_) => rd!(u32, U32),
        TypeDescriptor::Boolean => rd!(bool, Bool),
        other => return Err(ctx.fmt(path, "numeric sparse data", type_name(&other))),
    })
}

/// Read the concatenation of `ranges` of an index dataset (int32 stays int32).
pub(crate) fn read_index_ranges(
    ctx: &Ctx,
    path: &str,
    ds: &Dataset,
    ranges: &[Range<usize>],
) -> Result<SparseIndex> {
    read_index_ranges_bounded(ctx, path, ds, ranges).map(|(v, _)| v)
}

/// [`read_index_ranges`] plus the minimum and maximum value read, found
/// while each block is still in cache (`(i64::MAX, i64::MIN)` when empty).
pub(crate) fn read_index_ranges_bounded(
    ctx: &Ctx,
    path: &str,
    ds: &Dataset,
    ranges: &[Range<usize>],
) -> Result<(SparseIndex, (i64, i64))> {
    let t = descriptor(ctx, path, ds)?;
    let total: usize = ranges.iter().map(|r| r.len()).sum();
    let mut lo = i64::MAX;
    let mut hi = i64::MIN;
    let v = match t {
        TypeDescriptor::Integer(IntSize::U1 | IntSize::U2 | IntSize::U4)
        | TypeDescriptor::Unsigned(IntSize::U1 | IntSize::U2) => {
            let mut v: Vec<i32> = Vec::with_capacity(total);
            read_ranges_into(ctx, path, ds, ranges, &mut v, &mut |b| {
                let (l, h) = b
                    .iter()
                    .fold((i32::MAX, i32::MIN), |(l, h), &x| (l.min(x), h.max(x)));
                lo = lo.min(i64::from(l));
                hi = hi.max(i64::from(h));
            })?;
            SparseIndex::I32(v)
        }
        TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_) => {
            let mut v: Vec<i64> = Vec::with_capacity(total);
            read_ranges_into(ctx, path, ds, ranges, &mut v, &mut |b| {
                let (l, h) = b
                    .iter()
                    .fold((i64::MAX, i64::MIN), |(l, h), &x| (l.min(x), h.max(x)));
                lo = lo.min(l);
                hi = hi.max(h);
            })?;
            SparseIndex::I64(v)
        }
        other => return Err(ctx.fmt(path, "integer indices", type_name(&other))),
    };
    Ok((v, (lo, hi)))
}

/// Write a sparse matrix group (`csr_matrix`/`csc_matrix` 0.1.0).
pub(crate) fn write_sparse(
    ctx: &Ctx,
    parent: &Group,
    ppath: &str,
    name: &str,
    m: &SparseMatrix,
) -> Result<()> {
    use super::h5util::{create_group, set_attr_i64s, set_encoding, write_vec};
    validate(ctx, &join(ppath, name), m)?;
    let (g, path) = create_group(ctx, parent, ppath, name)?;
    set_encoding(ctx, &g, &path, m.format.encoding(), "0.1.0")?;
    set_attr_i64s(
        ctx,
        &g,
        &path,
        "shape",
        &[m.shape.0 as i64, m.shape.1 as i64],
    )?;
    let n = m.data.len();
    let dp = join(&path, "data");
    match &m.data {
        SparseData::F32(v) => write_vec(ctx, &g, &dp, "data", &[n], v)?,
        SparseData::F64(v) => write_vec(ctx, &g, &dp, "data", &[n], v)?,
        SparseData::I32(v) => write_vec(ctx, &g, &dp, "data", &[n], v)?,
        SparseData::I64(v) => write_vec(ctx, &g, &dp, "data", &[n], v)?,
        SparseData::U32(v) => write_vec(ctx, &g, &dp, "data", &[n], v)?,
        SparseData::U64(v) => write_vec(ctx, &g, &dp, "data", &[n], v)?,
        SparseData::Bool(v) => write_vec(ctx, &g, &dp, "data", &[n], v)?,
    };
    for (idx, nm) in [(&m.indices, "indices"), (&m.indptr, "indptr")] {
        let p = join(&path, nm);
        match idx {
            SparseIndex::I32(v) => write_vec(ctx, &g, &p, nm, &[v.len()], v)?,
            SparseIndex::I64(v) => write_vec(ctx, &g, &p, nm, &[v.len()], v)?,
        };
    }
    Ok(())
}
