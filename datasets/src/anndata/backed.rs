//! Backed (partial) reading of `.h5ad` files: open, read `obs`/`var`, then
//! read selected rows (cells) and columns (genes) of `X` or a layer without
//! loading the whole matrix.
//!
//! [`H5adReader::open`] reads `obs` whole (names checked unique);
//! [`H5adReader::open_lazy`] leaves the obs names (`obs/_index`, usually the
//! bulk of `obs`) on disk until [`LazyObs::names`] asks for them, so that
//! selecting cells by an obs column and reading them costs little more than
//! the rows themselves; [`LazyObs::names_of`] / [`LazyObs::select_rows`]
//! read only the selected cells' names (checked unique among themselves;
//! the check against all names needs them all read).
//!
//! CSR: the `indptr` is read whole; the needed `data`/`indices` slices are
//! found from it, sorted, coalesced into contiguous ranges (gaps shorter than
//! [`GAP`] elements are read through, which is cheaper than one more HDF5
//! call) and read as hyperslabs straight into Vecs. CSC is symmetric on
//! columns. Dense: contiguous row blocks as hyperslabs. `iter_chunks` walks
//! the cells in row blocks for files larger than memory; for a CSC element it
//! keeps one read position per column and reads, per block, each column's
//! next run of row indices below the block's end (a window sized from the
//! column's density, widened when too short), so memory stays at about one
//! block.
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use hdf5::{Dataset, File, Group};

use super::h5util::{encoding, join, read_dense, Ctx};
use super::legacy;
use super::ops::gather;
use super::read::{
    self, check_unique, dup_name, find_duplicate, open_file, read_dataframe_parts,
    read_frame_index, read_frame_member, root_mode, Elem, Mode,
};
use super::sparse::{read_data_ranges, read_index_ranges, SparseMeta};
use super::types::*;
use crate::error::Result;

/// Gaps (in stored elements) up to this size are read through when coalescing.
pub const GAP: usize = 512;

/// From this many separate ranges on, a major-axis selection reads `data` and
/// `indices` on two threads.
const PARALLEL_RANGES: usize = 64;

/// A matrix element of the file, resolved but not read.
enum Stored {
    Dense(Dataset, String),
    Sparse(SparseMeta),
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::DataFrame {}
    impl Sealed for super::LazyObs {}
}

/// What a backed reader holds as `obs`: a whole [`DataFrame`]
/// ([`H5adReader::open`]) or a [`LazyObs`] ([`H5adReader::open_lazy`]).
pub trait BackedObs: sealed::Sealed {
    /// Number of cells.
    fn n_rows(&self) -> usize;
    /// The whole data frame, names included (read from the file if needed,
    /// and then checked unique).
    fn frame(&self) -> Result<Cow<'_, DataFrame>>;
}

impl BackedObs for DataFrame {
    fn n_rows(&self) -> usize {
        DataFrame::n_rows(self)
    }
    fn frame(&self) -> Result<Cow<'_, DataFrame>> {
        Ok(Cow::Borrowed(self))
    }
}

/// Where [`LazyObs`] reads its names from.
struct IndexSource {
    group: Group,
    mode: Mode,
}

/// `obs` of a reader opened with [`H5adReader::open_lazy`]: the columns are
/// in memory, the names (index) are read on first use by [`LazyObs::names`]
/// and checked for duplicates then.
pub struct LazyObs {
    ctx: Ctx,
    index_name: String,
    n_rows: usize,
    columns: Vec<(String, Column)>,
    names: OnceLock<Vec<String>>,
    /// `None` when the names were read at open (legacy layouts, categorical
    /// or numeric indexes).
    source: Option<IndexSource>,
}

impl std::fmt::Debug for LazyObs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyObs")
            .field("index_name", &self.index_name)
            .field("n_rows", &self.n_rows)
            .field("columns", &self.columns)
            .field("names_read", &self.names.get().is_some())
            .finish()
    }
}

impl LazyObs {
    const PATH: &'static str = "/obs";

    pub fn n_rows(&self) -> usize {
        self.n_rows
    }
    /// Name of the index column on disk (usually `_index`).
    pub fn index_name(&self) -> &str {
        &self.index_name
    }
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|(n, _)| n == name).map(|(_, c)| c)
    }
    /// Columns in `column-order`.
    pub fn columns(&self) -> &[(String, Column)] {
        &self.columns
    }
    /// The obs names, read from the file on the first call; an error if they
    /// cannot be decoded or are not unique (as [`H5adReader::open`] would
    /// have reported at open).
    pub fn names(&self) -> Result<&[String]> {
        if let Some(n) = self.names.get() {
            return Ok(n);
        }
        let src = self.source.as_ref().ok_or_else(|| {
            self.ctx
                .err(Self::PATH, "obs names neither read nor readable")
        })?;
        let path = Self::PATH;
        let names = read_frame_index(&self.ctx, &src.group, path, &self.index_name, src.mode)?;
        if names.len() != self.n_rows {
            return Err(self.ctx.fmt(
                &super::h5util::join(path, &self.index_name),
                format!("{} names (its length at open)", self.n_rows),
                format!("{} names", names.len()),
            ));
        }
        check_unique(&self.ctx, path, &names)?;
        Ok(self.names.get_or_init(|| names))
    }
    /// The names of `rows` (in the given order; a repeated row gives its
    /// name again), reading only those names from the file when all names
    /// have not been read yet: the selected elements of `obs/_index` (a
    /// point selection, or for a large contiguous string array the element
    /// table around the rows and the heap collections holding their
    /// strings).
    ///
    /// Checks: every row must be `< n_rows()`; the names read must be valid
    /// UTF-8 (the error names the file, `/obs/_index` and the row); and the
    /// names of the distinct selected rows must differ from each other
    /// (error as for the full check: "unique obs names", `` `name` at rows
    /// i and j ``, in file rows). Whether a selected name also occurs at an
    /// unselected row is *not* checked: the global duplicate check happens
    /// only where all names are read ([`LazyObs::names`],
    /// [`LazyObs::to_frame`], [`H5adReader::read_subset`]). Does not cache
    /// anything; once [`LazyObs::names`] has run, the names are picked from
    /// memory.
    pub fn names_of(&self, rows: &[usize]) -> Result<Vec<String>> {
        let ipath = join(Self::PATH, &self.index_name);
        if let Some(&bad) = rows.iter().find(|&&r| r >= self.n_rows) {
            return Err(self.ctx.fmt(
                &ipath,
                format!("row indices < {} (the number of cells)", self.n_rows),
                format!("row {bad}"),
            ));
        }
        if let Some(all) = self.names.get() {
            return Ok(rows.iter().map(|&r| all[r].clone()).collect());
        }
        let src = self.source.as_ref().ok_or_else(|| {
            self.ctx
                .err(Self::PATH, "obs names neither read nor readable")
        })?;
        // Distinct rows in file order: what is read and checked.
        let increasing = rows.windows(2).all(|w| w[0] < w[1]);
        let distinct: Cow<'_, [usize]> = if increasing {
            Cow::Borrowed(rows)
        } else {
            let mut v = rows.to_vec();
            v.sort_unstable();
            v.dedup();
            Cow::Owned(v)
        };
        let ds = self.ctx.h5(
            &ipath,
            "opening dataset",
            src.group.dataset(&self.index_name),
        )?;
        if ds.size() != self.n_rows {
            return Err(self.ctx.fmt(
                &ipath,
                format!("{} names (its length at open)", self.n_rows),
                format!("{} names", ds.size()),
            ));
        }
        let bytes = super::h5util::read_string_bytes_at(&self.ctx, &ipath, &ds, &distinct)?;
        let names = bytes
            .into_iter()
            .zip(distinct.iter())
            .map(|(b, &row)| {
                String::from_utf8(b).map_err(|e| {
                    let err = e.utf8_error();
                    self.ctx.fmt(
                        &ipath,
                        "valid UTF-8 strings",
                        format!(
                            "invalid UTF-8 ({err}) in {:?} at row {row}",
                            String::from_utf8_lossy(e.as_bytes())
                        ),
                    )
                })
            })
            .collect::<Result<Vec<String>>>()?;
        if let Some((a, b)) = find_duplicate(&names) {
            return Err(dup_name(
                &self.ctx,
                Self::PATH,
                &names[a],
                distinct[a],
                distinct[b],
            ));
        }
        if increasing {
            return Ok(names);
        }
        Ok(rows
            .iter()
            .map(|r| {
                // Present: `distinct` holds every row of `rows`.
                let k = distinct.binary_search(r).unwrap_or(0);
                names[k].clone()
            })
            .collect())
    }
    /// The rows `rows` of obs (in the given order) as a data frame: names
    /// from [`LazyObs::names_of`] (so checked as it checks them), columns
    /// subset in memory (categories kept as they are).
    pub fn select_rows(&self, rows: &[usize]) -> Result<DataFrame> {
        let index = self.names_of(rows)?;
        Ok(DataFrame {
            index_name: self.index_name.clone(),
            index,
            columns: self
                .columns
                .iter()
                .map(|(n, c)| (n.clone(), c.select(rows)))
                .collect(),
        })
    }
    /// The whole data frame (reads the names if not read yet).
    pub fn to_frame(&self) -> Result<DataFrame> {
        Ok(DataFrame {
            index_name: self.index_name.clone(),
            index: self.names()?.to_vec(),
            columns: self.columns.clone(),
        })
    }
}

impl BackedObs for LazyObs {
    fn n_rows(&self) -> usize {
        self.n_rows
    }
    fn frame(&self) -> Result<Cow<'_, DataFrame>> {
        self.to_frame().map(Cow::Owned)
    }
}

/// Backed handle on an `.h5ad` file; `O` is how `obs` is held (see
/// [`BackedObs`]).
pub struct H5adReader<O = DataFrame> {
    file: File,
    ctx: Ctx,
    mode: Mode,
    legacy_uns: Option<BTreeMap<String, Value>>,
    gap: usize,
    pub obs: O,
    pub var: DataFrame,
}

/// File, mode and (legacy) `uns` of a file being opened.
fn open_root(path: &Path) -> Result<(File, Ctx, Mode, BTreeMap<String, Value>)> {
    let (file, ctx) = open_file(path)?;
    let mode = root_mode(&ctx, &file)?;
    let mut uns = BTreeMap::new();
    if mode == Mode::Legacy && file.link_exists("uns") {
        if let Elem::Value(Value::Dict(d)) = read::read_elem(&ctx, &file, "/", "uns", mode)? {
            uns = d;
        }
    }
    Ok((file, ctx, mode, uns))
}

impl H5adReader<DataFrame> {
    /// Open the file and read `obs` and `var` (nothing else); obs names are
    /// checked unique.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let (file, ctx, mode, mut uns) = open_root(path.as_ref())?;
        let obs = read_frame_member(&ctx, &file, "obs", mode, &mut uns)?;
        let var = read_frame_member(&ctx, &file, "var", mode, &mut uns)?;
        check_unique(&ctx, "/obs", &obs.index)?;
        Ok(H5adReader {
            file,
            ctx,
            mode,
            legacy_uns: (mode == Mode::Legacy).then_some(uns),
            gap: GAP,
            obs,
            var,
        })
    }
}

impl H5adReader<LazyObs> {
    /// Open the file and read `var` and the `obs` columns, but not the obs
    /// names when they are stored as a string array (the usual case): they
    /// are read, and checked unique, by [`LazyObs::names`] or by
    /// [`H5adReader::read_subset`].
    pub fn open_lazy(path: impl AsRef<Path>) -> Result<Self> {
        let (file, ctx, mode, mut uns) = open_root(path.as_ref())?;
        let lazy = mode == Mode::Strict
            && file.link_exists("obs")
            && matches!(file.loc_type_by_name("obs"), Ok(hdf5::LocationType::Group));
        let obs_group = match lazy {
            true => Some(ctx.h5("/obs", "opening group", file.group("obs"))?),
            false => None,
        };
        let obs_group = match obs_group {
            Some(g) if matches!(encoding(&ctx, &g, "/obs")?, Some((t, _)) if t == "dataframe") => {
                Some(g)
            }
            _ => None,
        };
        let obs = match obs_group {
            Some(group) => {
                let parts = read_dataframe_parts(&ctx, &group, "/obs", mode, true)?;
                let names = OnceLock::new();
                if let Some(index) = parts.index {
                    check_unique(&ctx, "/obs", &index)?;
                    let _ = names.set(index);
                }
                LazyObs {
                    ctx: ctx.clone(),
                    index_name: parts.index_name,
                    n_rows: parts.n_rows,
                    columns: parts.columns,
                    names,
                    source: Some(IndexSource { group, mode }),
                }
            }
            None => {
                // Legacy layouts and anything unusual: read obs whole, as `open`.
                let df = read_frame_member(&ctx, &file, "obs", mode, &mut uns)?;
                check_unique(&ctx, "/obs", &df.index)?;
                LazyObs {
                    ctx: ctx.clone(),
                    index_name: df.index_name,
                    n_rows: df.index.len(),
                    columns: df.columns,
                    names: OnceLock::from(df.index),
                    source: None,
                }
            }
        };
        let var = read_frame_member(&ctx, &file, "var", mode, &mut uns)?;
        Ok(H5adReader {
            file,
            ctx,
            mode,
            legacy_uns: (mode == Mode::Legacy).then_some(uns),
            gap: GAP,
            obs,
            var,
        })
    }
}

impl<O: BackedObs> H5adReader<O> {
    /// Gap (in stored elements) read through when coalescing row ranges
    /// (default [`GAP`]; 0 reads exactly the needed slices).
    pub fn with_coalesce_gap(mut self, gap: usize) -> Self {
        self.gap = gap;
        self
    }

    pub fn n_obs(&self) -> usize {
        BackedObs::n_rows(&self.obs)
    }
    pub fn n_vars(&self) -> usize {
        self.var.n_rows()
    }
    pub fn file(&self) -> &Path {
        &self.ctx.file
    }

    /// Names of the layers in the file.
    pub fn layer_names(&self) -> Result<Vec<String>> {
        if !self.file.link_exists("layers") {
            return Ok(Vec::new());
        }
        let g = self
            .ctx
            .h5("/layers", "opening group", self.file.group("layers"))?;
        self.ctx.h5("/layers", "listing members", g.member_names())
    }

    fn resolve(&self, elem: &str) -> Result<Stored> {
        let path = join("/", elem);
        let root: &Group = &self.file;
        if !root.link_exists(elem) {
            return Err(self.ctx.fmt(&path, "a matrix element", "nothing"));
        }
        if let Ok(ds) = root.dataset(elem) {
            if self.mode == Mode::Strict {
                match encoding(&self.ctx, &ds, &path)? {
                    Some((t, _)) if t == "array" => {}
                    Some((t, _)) => {
                        return Err(self
                            .ctx
                            .fmt(&path, "encoding-type `array`", format!("`{t}`")))
                    }
                    None => {
                        return Err(self.ctx.fmt(
                            &path,
                            "attribute `encoding-type`",
                            "no encoding-type",
                        ))
                    }
                }
            }
            if ds.ndim() != 2 {
                return Err(self
                    .ctx
                    .fmt(&path, "a 2-D array", format!("shape {:?}", ds.shape())));
            }
            return Ok(Stored::Dense(ds, path));
        }
        let g = self.ctx.h5(&path, "opening group", root.group(elem))?;
        let kind = match encoding(&self.ctx, &g, &path)? {
            Some((t, _)) => t,
            None if self.mode == Mode::Legacy => {
                legacy::infer_group_encoding(&self.ctx, &g, &path)?
            }
            None => {
                return Err(self
                    .ctx
                    .fmt(&path, "attribute `encoding-type`", "no encoding-type"))
            }
        };
        let format = match kind.as_str() {
            "csr_matrix" => SparseFormat::Csr,
            "csc_matrix" => SparseFormat::Csc,
            other => {
                return Err(self.ctx.fmt(
                    &path,
                    "csr_matrix, csc_matrix or array",
                    format!("`{other}`"),
                ))
            }
        };
        Ok(Stored::Sparse(SparseMeta::open(
            &self.ctx, &g, &path, format,
        )?))
    }

    /// Encoding (`array`, `csr_matrix`, `csc_matrix`) and shape of an element.
    pub fn matrix_info(&self, elem: &str) -> Result<(&'static str, (usize, usize))> {
        Ok(match self.resolve(elem)? {
            Stored::Dense(ds, _) => ("array", (ds.shape()[0], ds.shape()[1])),
            Stored::Sparse(m) => (m.format.encoding(), m.shape),
        })
    }

    fn check_idx(&self, path: &str, what: &str, idx: &[usize], n: usize) -> Result<()> {
        if let Some(&bad) = idx.iter().find(|&&i| i >= n) {
            return Err(self.ctx.fmt(
                path,
                format!("{what} indices < {n}"),
                format!("index {bad}"),
            ));
        }
        Ok(())
    }

    /// Read an element (`"X"`, `"layers/counts"`, `"raw/X"`), optionally only
    /// some rows and/or columns (in the given order).
    pub fn read_submatrix(
        &self,
        elem: &str,
        rows: Option<&[usize]>,
        cols: Option<&[usize]>,
    ) -> Result<Matrix> {
        let stored = self.resolve(elem)?;
        let path = join("/", elem);
        match stored {
            Stored::Dense(ds, p) => {
                let (nr, nc) = (ds.shape()[0], ds.shape()[1]);
                if let Some(r) = rows {
                    self.check_idx(&p, "row", r, nr)?;
                }
                if let Some(c) = cols {
                    self.check_idx(&p, "column", c, nc)?;
                }
                let m = match rows {
                    None => Matrix::Dense(read_dense(&self.ctx, &p, &ds)?),
                    Some(r) => self.read_dense_rows(&ds, &p, r, nc)?,
                };
                Ok(match cols {
                    Some(c) => m.select_cols(c),
                    None => m,
                })
            }
            Stored::Sparse(meta) => {
                if let Some(r) = rows {
                    self.check_idx(&path, "row", r, meta.shape.0)?;
                }
                if let Some(c) = cols {
                    self.check_idx(&path, "column", c, meta.shape.1)?;
                }
                let (major_sel, minor_sel) = match meta.format {
                    SparseFormat::Csr => (rows, cols),
                    SparseFormat::Csc => (cols, rows),
                };
                let m = match major_sel {
                    None => meta.read(&self.ctx)?,
                    Some(sel) => self.read_major(&meta, sel)?,
                };
                Ok(Matrix::Sparse(match minor_sel {
                    Some(s) => m.select_minor(s),
                    None => m,
                }))
            }
        }
    }

    /// Read selected rows of X.
    pub fn read_rows(&self, rows: &[usize]) -> Result<Matrix> {
        self.read_submatrix("X", Some(rows), None)
    }
    /// Read selected columns of X.
    pub fn read_cols(&self, cols: &[usize]) -> Result<Matrix> {
        self.read_submatrix("X", None, Some(cols))
    }

    fn read_dense_rows(
        &self,
        ds: &Dataset,
        path: &str,
        rows: &[usize],
        nc: usize,
    ) -> Result<Matrix> {
        let mut sorted: Vec<usize> = rows.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.is_empty() {
            return self.read_dense_block(ds, path, 0, 0, nc);
        }
        let blocks = coalesce(sorted.iter().map(|&r| (r, r + 1)), 0);
        let parts: Vec<Matrix> = blocks
            .iter()
            .map(|&(a, b)| self.read_dense_block(ds, path, a, b, nc))
            .collect::<Result<_>>()?;
        // Position of each sorted row inside the concatenated blocks.
        let mut at = BTreeMap::new();
        let mut off = 0usize;
        for &(a, b) in &blocks {
            for r in a..b {
                at.insert(r, off + r - a);
            }
            off += b - a;
        }
        let arrays: Vec<DenseArray> = parts
            .into_iter()
            .map(|m| match m {
                Matrix::Dense(d) => d,
                Matrix::Sparse(_) => unreachable!("dense blocks"),
            })
            .collect();
        let cat = concat_rows(&arrays)
            .ok_or_else(|| self.ctx.err(path, "dense blocks of different dtypes"))?;
        let pos: Vec<usize> = rows.iter().map(|r| at[r]).collect();
        Ok(Matrix::Dense(cat.select_axis(0, &pos)))
    }

    fn read_dense_block(
        &self,
        ds: &Dataset,
        path: &str,
        a: usize,
        b: usize,
        _nc: usize,
    ) -> Result<Matrix> {
        use hdf5::types::{FloatSize, IntSize, TypeDescriptor};
        let t = super::h5util::descriptor(&self.ctx, path, ds)?;
        macro_rules! rd {
            ($ty:ty, $var:ident) => {{
                let a2 = self.ctx.h5(
                    path,
                    "reading rows",
                    ds.read_slice::<$ty, _, ndarray::Ix2>(ndarray::s![a..b, ..]),
                )?;
                DenseArray::$var(a2.into_dyn())
            }};
        }
        Ok(Matrix::Dense(match t {
            TypeDescriptor::Float(FloatSize::U4) => rd!(f32, F32),
            TypeDescriptor::Float(FloatSize::U8) => rd!(f64, F64),
            TypeDescriptor::Integer(IntSize::U8) => rd!(i64, I64),
            TypeDescriptor::Integer(_) => rd!(i32, I32),
            TypeDescriptor::Unsigned(IntSize::U8) => rd!(u64, U64),
            TypeDescriptor::Unsigned(_) => rd!(u32, U32),
            TypeDescriptor::Boolean => rd!(bool, Bool),
            other => {
                return Err(self.ctx.fmt(
                    path,
                    "a numeric matrix",
                    super::h5util::type_name(&other),
                ))
            }
        }))
    }

    /// Major-axis selection of a sparse element with coalesced hyperslab reads.
    fn read_major(&self, meta: &SparseMeta, sel: &[usize]) -> Result<SparseMatrix> {
        let ptr = meta.indptr_i64(&self.ctx)?;
        let mut sorted: Vec<usize> = sel.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let spans = coalesce(
            sorted
                .iter()
                .map(|&r| (ptr[r] as usize, ptr[r + 1] as usize)),
            self.gap,
        );
        let ranges: Vec<Range<usize>> = spans.iter().map(|&(a, b)| a..b).collect();
        let (dpath, ipath) = (join(&meta.path, "data"), join(&meta.path, "indices"));
        let ctx = &self.ctx;
        let read_data = || read_data_ranges(ctx, &dpath, &meta.data, &ranges);
        let read_indices = || read_index_ranges(ctx, &ipath, &meta.indices, &ranges);
        // Many small scattered reads are syscall-bound: read data and
        // indices side by side when there are enough of them.
        let parallel = ranges.len() >= PARALLEL_RANGES;
        let (data, indices) = if parallel {
            std::thread::scope(|s| {
                let h = s.spawn(read_data);
                let indices = read_indices();
                let data = h
                    .join()
                    .unwrap_or_else(|_| Err(ctx.err(&dpath, "reader thread panicked")));
                (data, indices)
            })
        } else {
            (read_data(), read_indices())
        };
        let (data, indices) = (data?, indices?);
        // Offset of each file span inside the buffer.
        let mut buf_off = Vec::with_capacity(spans.len());
        let mut acc = 0usize;
        for &(a, b) in &spans {
            buf_off.push(acc);
            acc += b - a;
        }
        // Buffer range of every selected row (rows are sorted, so walk the spans once).
        let mut where_sorted = Vec::with_capacity(sorted.len());
        let mut k = 0usize;
        for &r in &sorted {
            let (s, e) = (ptr[r] as usize, ptr[r + 1] as usize);
            if s == e {
                where_sorted.push((0, 0));
                continue;
            }
            while spans[k].1 < e {
                k += 1;
            }
            let base = buf_off[k] + (s - spans[k].0);
            where_sorted.push((base, base + (e - s)));
        }
        let pieces: Vec<(usize, usize)> = sel
            .iter()
            .map(|r| where_sorted[sorted.binary_search(r).unwrap_or(0)])
            .collect();
        let needed: usize = pieces.iter().map(|p| p.1 - p.0).sum();
        let direct = acc == needed && sel.windows(2).all(|w| w[0] < w[1]);
        let (data, indices) = if direct {
            (data, indices)
        } else {
            (
                super::ops::data_map!(&data, v => gather(v, &pieces)),
                match &indices {
                    SparseIndex::I32(v) => SparseIndex::I32(gather(v, &pieces)),
                    SparseIndex::I64(v) => SparseIndex::I64(gather(v, &pieces)),
                },
            )
        };
        let mut new_ptr = Vec::with_capacity(sel.len() + 1);
        new_ptr.push(0i64);
        let mut acc = 0i64;
        for p in &pieces {
            acc += (p.1 - p.0) as i64;
            new_ptr.push(acc);
        }
        let shape = match meta.format {
            SparseFormat::Csr => (sel.len(), meta.shape.1),
            SparseFormat::Csc => (meta.shape.0, sel.len()),
        };
        let like = if meta.nnz > i32::MAX as usize {
            SparseIndex::I64(Vec::new())
        } else {
            SparseIndex::I32(Vec::new())
        };
        let m = SparseMatrix {
            format: meta.format,
            shape,
            data,
            indices,
            indptr: SparseIndex::from_i64_like(new_ptr, &like),
        };
        super::sparse::validate(&self.ctx, &meta.path, &m)?;
        Ok(m)
    }

    /// Iterate over row blocks of `elem` (`"X"` or `"layers/<name>"`):
    /// yields `(rows, matrix)` with at most `n_rows` rows each, in the
    /// stored format. CSR and dense elements are read block by block; a CSC
    /// element is walked with one cursor per column (its row indices must be
    /// sorted within each column, as scipy's canonical form has them), so
    /// each block reads only about its own share of `data` / `indices`.
    pub fn iter_chunks(&self, elem: &str, n_rows: usize) -> Result<ChunkIter<'_, O>> {
        if n_rows == 0 {
            return Err(crate::error::DatasetsError::InvalidConfig {
                param: "n_rows".into(),
                message: "chunk size must be > 0, but is 0".into(),
            });
        }
        let (csc, total) = match self.resolve(elem)? {
            Stored::Dense(ds, _) => (None, ds.shape()[0]),
            Stored::Sparse(meta) if meta.format == SparseFormat::Csr => (None, meta.shape.0),
            Stored::Sparse(meta) => {
                let ptr = meta.indptr_i64(&self.ctx)?;
                let cursor = ptr[..ptr.len() - 1].iter().map(|&p| p as usize).collect();
                let total = meta.shape.0;
                (Some(CscCursor { meta, ptr, cursor }), total)
            }
        };
        Ok(ChunkIter {
            reader: self,
            elem: elem.to_string(),
            n_rows,
            next: 0,
            total,
            csc,
        })
    }

    /// Rows `r0..r1` of a CSC element from the column cursors (advanced).
    fn read_csc_rows(&self, cur: &mut CscCursor, r0: usize, r1: usize) -> Result<SparseMatrix> {
        let meta = &cur.meta;
        let ipath = join(&meta.path, "indices");
        let n_cols = meta.shape.1;
        let n_obs = meta.shape.0.max(1);
        // Entries of each column that fall in r0..r1 (count), found by
        // reading a window of indices from the cursor; windows that turn out
        // too short are widened and read again in a further round.
        let mut taken = vec![0usize; n_cols];
        let mut pending: Vec<usize> = (0..n_cols)
            .filter(|&j| cur.cursor[j] < cur.ptr[j + 1] as usize)
            .collect();
        let mut window: Vec<usize> = (0..n_cols)
            .map(|j| {
                let nnz = (cur.ptr[j + 1] - cur.ptr[j]) as usize;
                nnz * (r1 - r0) / n_obs * 5 / 4 + 8
            })
            .collect();
        while !pending.is_empty() {
            let ranges: Vec<Range<usize>> = pending
                .iter()
                .map(|&j| {
                    let a = cur.cursor[j] + taken[j];
                    a..(a + window[j]).min(cur.ptr[j + 1] as usize)
                })
                .collect();
            let got = read_index_ranges(&self.ctx, &ipath, &meta.indices, &ranges)?;
            let mut at = 0usize;
            let mut again = Vec::new();
            for (&j, r) in pending.iter().zip(&ranges) {
                let mut k = 0usize;
                while k < r.len() {
                    let row = got.get(at + k);
                    if row >= r1 as i64 {
                        break;
                    }
                    if row < r0 as i64 {
                        let pos = r.start + k;
                        return Err(self.ctx.fmt(
                            &ipath,
                            format!(
                                "row indices in [{r0}, {}) sorted within each column (canonical csc_matrix) for row-chunked iteration",
                                meta.shape.0
                            ),
                            format!("indices[{pos}] = {row} in column {j}"),
                        ));
                    }
                    k += 1;
                }
                taken[j] += k;
                at += r.len();
                if k == r.len() && r.end < cur.ptr[j + 1] as usize {
                    window[j] *= 2;
                    again.push(j);
                }
            }
            pending = again;
        }
        // Read this block's entries (the windows above may overshoot) in
        // column order.
        let ranges: Vec<Range<usize>> = (0..n_cols)
            .filter(|&j| taken[j] > 0)
            .map(|j| cur.cursor[j]..cur.cursor[j] + taken[j])
            .collect();
        let indices = read_index_ranges(&self.ctx, &ipath, &meta.indices, &ranges)?;
        let data = read_data_ranges(&self.ctx, &join(&meta.path, "data"), &meta.data, &ranges)?;
        let shift = r0 as i64;
        let indices = match indices {
            SparseIndex::I32(v) => {
                SparseIndex::I32(v.into_iter().map(|x| x - shift as i32).collect())
            }
            SparseIndex::I64(v) => SparseIndex::I64(v.into_iter().map(|x| x - shift).collect()),
        };
        let mut ptr = Vec::with_capacity(n_cols + 1);
        ptr.push(0i64);
        let mut acc = 0i64;
        for j in 0..n_cols {
            acc += taken[j] as i64;
            ptr.push(acc);
            cur.cursor[j] += taken[j];
        }
        let m = SparseMatrix {
            format: SparseFormat::Csc,
            shape: (r1 - r0, n_cols),
            data,
            indptr: SparseIndex::from_i64_like(ptr, &indices),
            indices,
        };
        super::sparse::validate(&self.ctx, &meta.path, &m)?;
        Ok(m)
    }

    /// Subset of the whole object: X and layers are read partially; obs,
    /// var, obsm, varm, obsp, varp, uns and raw are read and then subset.
    pub fn read_subset(&self, rows: Option<&[usize]>, cols: Option<&[usize]>) -> Result<AnnData> {
        let ctx = &self.ctx;
        if let Some(r) = rows {
            self.check_idx("/obs", "row", r, self.n_obs())?;
        }
        if let Some(c) = cols {
            self.check_idx("/var", "column", c, self.n_vars())?;
        }
        let root: &Group = &self.file;
        let x = if root.link_exists("X") {
            Some(self.read_submatrix("X", rows, cols)?)
        } else {
            None
        };
        let mut layers = BTreeMap::new();
        for l in self.layer_names()? {
            layers.insert(
                l.clone(),
                self.read_submatrix(&format!("layers/{l}"), rows, cols)?,
            );
        }
        let mut uns = match &self.legacy_uns {
            Some(u) => u.clone(),
            None if root.link_exists("uns") => {
                match read::read_elem(ctx, root, "/", "uns", self.mode)? {
                    Elem::Value(Value::Dict(d)) => d,
                    other => return Err(ctx.fmt("/uns", "a dict", read::elem_kind(&other))),
                }
            }
            None => BTreeMap::new(),
        };
        let mut full = AnnData {
            x: None,
            obs: self.obs.frame()?.into_owned(),
            var: self.var.clone(),
            uns: std::mem::take(&mut uns),
            ..Default::default()
        };
        for (name, slot) in [
            ("obsm", &mut full.obsm),
            ("varm", &mut full.varm),
            ("obsp", &mut full.obsp),
            ("varp", &mut full.varp),
        ] {
            if root.link_exists(name) {
                *slot = legacy::read_matrix_container(ctx, root, name, self.mode)?;
            }
        }
        let raw_x = if root.link_exists("raw") {
            Some("raw/X")
        } else if root.link_exists("raw.X") {
            Some("raw.X")
        } else {
            None
        };
        let raw = match raw_x {
            None => None,
            Some(rx) => {
                let x = self.read_submatrix(rx, rows, None)?;
                let var = if root.link_exists("raw") && root.link_exists("raw/var") {
                    let rg = ctx.h5("/raw", "opening group", root.group("raw"))?;
                    match read::read_elem(ctx, &rg, "/raw", "var", self.mode)? {
                        Elem::Value(Value::DataFrame(df)) => df,
                        other => {
                            return Err(ctx.fmt("/raw/var", "a dataframe", read::elem_kind(&other)))
                        }
                    }
                } else if root.link_exists("raw.var") {
                    read_frame_member(ctx, root, "raw.var", self.mode, &mut BTreeMap::new())?
                } else {
                    DataFrame::new((0..x.shape2().1).map(|i| i.to_string()).collect())
                };
                let varm = if root.link_exists("raw/varm") {
                    let g = ctx.h5("/raw/varm", "opening group", root.group("raw/varm"))?;
                    read::read_matrices(ctx, &g, "/raw/varm", self.mode)?
                } else if root.link_exists("raw.varm") {
                    legacy::read_matrix_container(ctx, root, "raw.varm", self.mode)?
                } else {
                    BTreeMap::new()
                };
                Some(Raw { x, var, varm })
            }
        };
        if self.mode == Mode::Legacy {
            legacy::move_neighbors_to_obsp(&mut full);
        }
        let mut sub = full.subset(rows, cols);
        sub.x = x;
        sub.layers = layers;
        sub.raw = raw;
        Ok(sub)
    }
}

/// Merge sorted `(start, end)` spans whose gap is at most `gap`.
pub(crate) fn coalesce(
    spans: impl Iterator<Item = (usize, usize)>,
    gap: usize,
) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (a, b) in spans {
        match out.last_mut() {
            Some(last) if a <= last.1 + gap => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

fn concat_rows(parts: &[DenseArray]) -> Option<DenseArray> {
    macro_rules! cat {
        ($var:ident) => {{
            let views: Vec<_> = parts
                .iter()
                .map(|p| match p {
                    DenseArray::$var(a) => Some(a.view()),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?;
            DenseArray::$var(ndarray::concatenate(ndarray::Axis(0), &views).ok()?)
        }};
    }
    Some(match parts.first()? {
        DenseArray::F32(_) => cat!(F32),
        DenseArray::F64(_) => cat!(F64),
        DenseArray::I32(_) => cat!(I32),
        DenseArray::I64(_) => cat!(I64),
        DenseArray::U32(_) => cat!(U32),
        DenseArray::U64(_) => cat!(U64),
        DenseArray::Bool(_) => cat!(Bool),
        _ => return None,
    })
}

/// Per-column read positions of a CSC element walked in row blocks.
struct CscCursor {
    meta: SparseMeta,
    ptr: Vec<i64>,
    cursor: Vec<usize>,
}

/// Row-block iterator from [`H5adReader::iter_chunks`].
pub struct ChunkIter<'a, O = DataFrame> {
    reader: &'a H5adReader<O>,
    elem: String,
    n_rows: usize,
    next: usize,
    total: usize,
    csc: Option<CscCursor>,
}

impl<O: BackedObs> Iterator for ChunkIter<'_, O> {
    type Item = Result<(Range<usize>, Matrix)>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.total {
            return None;
        }
        let r = self.next..(self.next + self.n_rows).min(self.total);
        self.next = r.end;
        if let Some(cur) = self.csc.as_mut() {
            let out = self
                .reader
                .read_csc_rows(cur, r.start, r.end)
                .map(|m| (r, Matrix::Sparse(m)));
            if out.is_err() {
                self.next = self.total; // stop after an error
            }
            return Some(out);
        }
        let rows: Vec<usize> = r.clone().collect();
        Some(
            self.reader
                .read_submatrix(&self.elem, Some(&rows), None)
                .map(|m| (r, m)),
        )
    }
}
