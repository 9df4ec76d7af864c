//! In-memory operations on AnnData elements: row / column selection (used by
//! `subset` and the backed reader), densification to f32, sums and nnz.
use ndarray::{Array2, Axis};
use rayon::prelude::*;

use super::types::*;

/// Concatenate `ranges` of `v`.
pub(crate) fn gather<T: Copy>(v: &[T], ranges: &[(usize, usize)]) -> Vec<T> {
    let total = ranges.iter().map(|r| r.1 - r.0).sum();
    let mut out = Vec::with_capacity(total);
    for &(a, b) in ranges {
        out.extend_from_slice(&v[a..b]);
    }
    out
}

macro_rules! data_map {
    ($d:expr, $v:ident => $body:expr) => {
        match $d {
            SparseData::F32($v) => SparseData::F32($body),
            SparseData::F64($v) => SparseData::F64($body),
            SparseData::I32($v) => SparseData::I32($body),
            SparseData::I64($v) => SparseData::I64($body),
            SparseData::U32($v) => SparseData::U32($body),
            SparseData::U64($v) => SparseData::U64($body),
            SparseData::Bool($v) => SparseData::Bool($body),
        }
    };
}
pub(crate) use data_map;

macro_rules! index_map {
    ($d:expr, $v:ident => $body:expr) => {
        match $d {
            SparseIndex::I32($v) => SparseIndex::I32($body),
            SparseIndex::I64($v) => SparseIndex::I64($body),
        }
    };
}

impl SparseIndex {
    /// All values as usize (callers have validated them).
    pub fn to_usize(&self) -> Vec<usize> {
        match self {
            SparseIndex::I32(v) => v.iter().map(|&x| x as usize).collect(),
            SparseIndex::I64(v) => v.iter().map(|&x| x as usize).collect(),
        }
    }
    /// An index vector of the same width as `like` (i64 if the values need it).
    pub fn from_i64_like(v: Vec<i64>, like: &SparseIndex) -> SparseIndex {
        let fits = v.last().is_none_or(|&m| m <= i64::from(i32::MAX));
        match like {
            SparseIndex::I32(_) if fits => {
                SparseIndex::I32(v.into_iter().map(|x| x as i32).collect())
            }
            _ => SparseIndex::I64(v),
        }
    }
}

/// Entries of each major slice whose minor index `map`s to a new one (>= 0),
/// in stored order: (their positions, their new minor indices, new indptr).
fn keep_in_order<I: Copy>(
    ptr: &[usize],
    cols: &[I],
    map: &[i64],
    to_usize: impl Fn(I) -> usize,
    from_i64: impl Fn(i64) -> I,
) -> (Vec<usize>, Vec<I>, Vec<i64>) {
    let mut pos = Vec::with_capacity(cols.len());
    let mut idx = Vec::with_capacity(cols.len());
    let mut new_ptr = Vec::with_capacity(ptr.len());
    new_ptr.push(0i64);
    for w in ptr.windows(2) {
        for (k, &c) in cols[w[0]..w[1]].iter().enumerate() {
            let j = map[to_usize(c)];
            if j >= 0 {
                pos.push(w[0] + k);
                idx.push(from_i64(j));
            }
        }
        new_ptr.push(pos.len() as i64);
    }
    (pos, idx, new_ptr)
}

impl SparseMatrix {
    /// Major-axis (rows for CSR, columns for CSC) selection, in the given order.
    pub fn select_major(&self, idx: &[usize]) -> SparseMatrix {
        let ptr = self.indptr.to_usize();
        let ranges: Vec<(usize, usize)> = idx.iter().map(|&i| (ptr[i], ptr[i + 1])).collect();
        let mut new_ptr = Vec::with_capacity(idx.len() + 1);
        let mut acc = 0i64;
        new_ptr.push(0);
        for &(a, b) in &ranges {
            acc += (b - a) as i64;
            new_ptr.push(acc);
        }
        let shape = match self.format {
            SparseFormat::Csr => (idx.len(), self.shape.1),
            SparseFormat::Csc => (self.shape.0, idx.len()),
        };
        SparseMatrix {
            format: self.format,
            shape,
            data: data_map!(&self.data, v => gather(v, &ranges)),
            indices: index_map!(&self.indices, v => gather(v, &ranges)),
            indptr: SparseIndex::from_i64_like(new_ptr, &self.indptr),
        }
    }

    /// Minor-axis selection: keeps entries whose minor index is in `idx`,
    /// renumbered to their position in `idx` (first occurrence wins when an
    /// index is repeated); indices stay sorted within each major slice.
    pub fn select_minor(&self, idx: &[usize]) -> SparseMatrix {
        let minor = match self.format {
            SparseFormat::Csr => self.shape.1,
            SparseFormat::Csc => self.shape.0,
        };
        let mut map = vec![-1i64; minor];
        for (new, &old) in idx.iter().enumerate().rev() {
            map[old] = new as i64;
        }
        let monotone = idx.windows(2).all(|w| w[0] < w[1]);
        let ptr = self.indptr.to_usize();
        if monotone {
            // Kept entries stay in stored order: one pass over the indices
            // in their own width.
            let (pos, indices, new_ptr) = match &self.indices {
                SparseIndex::I32(cols) => {
                    let (pos, idx, p) =
                        keep_in_order(&ptr, cols, &map, |c| c as usize, |j| j as i32);
                    (pos, SparseIndex::I32(idx), p)
                }
                SparseIndex::I64(cols) => {
                    let (pos, idx, p) = keep_in_order(&ptr, cols, &map, |c| c as usize, |j| j);
                    (pos, SparseIndex::I64(idx), p)
                }
            };
            let shape = match self.format {
                SparseFormat::Csr => (self.shape.0, idx.len()),
                SparseFormat::Csc => (idx.len(), self.shape.1),
            };
            return SparseMatrix {
                format: self.format,
                shape,
                data: data_map!(&self.data, v => pos.iter().map(|&k| v[k]).collect()),
                indices,
                indptr: SparseIndex::from_i64_like(new_ptr, &self.indptr),
            };
        }
        let cols = self.indices.to_usize();
        // Kept positions and their new minor index, one major slice at a time.
        let mut new_ptr = Vec::with_capacity(ptr.len());
        new_ptr.push(0i64);
        let mut pos: Vec<usize> = Vec::new();
        let mut new_idx: Vec<i64> = Vec::new();
        let mut row: Vec<(i64, usize)> = Vec::new();
        for r in 0..ptr.len() - 1 {
            row.clear();
            row.extend(
                (ptr[r]..ptr[r + 1])
                    .filter(|&k| map[cols[k]] >= 0)
                    .map(|k| (map[cols[k]], k)),
            );
            row.sort_unstable();
            pos.extend(row.iter().map(|p| p.1));
            new_idx.extend(row.iter().map(|p| p.0));
            new_ptr.push(pos.len() as i64);
        }
        let shape = match self.format {
            SparseFormat::Csr => (self.shape.0, idx.len()),
            SparseFormat::Csc => (idx.len(), self.shape.1),
        };
        let indices = match &self.indices {
            SparseIndex::I32(_) => {
                SparseIndex::I32(new_idx.into_iter().map(|x| x as i32).collect())
            }
            SparseIndex::I64(_) => SparseIndex::I64(new_idx),
        };
        SparseMatrix {
            format: self.format,
            shape,
            data: data_map!(&self.data, v => pos.iter().map(|&k| v[k]).collect()),
            indices,
            indptr: SparseIndex::from_i64_like(new_ptr, &self.indptr),
        }
    }

    pub fn select_rows(&self, rows: &[usize]) -> SparseMatrix {
        match self.format {
            SparseFormat::Csr => self.select_major(rows),
            SparseFormat::Csc => self.select_minor(rows),
        }
    }
    pub fn select_cols(&self, cols: &[usize]) -> SparseMatrix {
        match self.format {
            SparseFormat::Csr => self.select_minor(cols),
            SparseFormat::Csc => self.select_major(cols),
        }
    }

    /// Sum of all stored values.
    pub fn sum(&self) -> f64 {
        match &self.data {
            SparseData::F32(v) => v.par_iter().map(|&x| f64::from(x)).sum(),
            SparseData::F64(v) => v.par_iter().sum(),
            d => (0..d.len()).map(|i| d.get_f64(i)).sum(),
        }
    }

    /// Dense f32 copy `[n_rows, n_cols]`.
    pub fn to_dense_f32(&self) -> Array2<f32> {
        let mut out = Array2::<f32>::zeros(self.shape);
        let ptr = self.indptr.to_usize();
        for m in 0..ptr.len() - 1 {
            for k in ptr[m]..ptr[m + 1] {
                let j = self.indices.get(k) as usize;
                let v = self.data.get_f64(k) as f32;
                match self.format {
                    SparseFormat::Csr => out[[m, j]] += v,
                    SparseFormat::Csc => out[[j, m]] += v,
                }
            }
        }
        out
    }
}

macro_rules! dense_map {
    ($d:expr, $a:ident => $body:expr) => {
        match $d {
            DenseArray::F32($a) => DenseArray::F32($body),
            DenseArray::F64($a) => DenseArray::F64($body),
            DenseArray::I8($a) => DenseArray::I8($body),
            DenseArray::I16($a) => DenseArray::I16($body),
            DenseArray::I32($a) => DenseArray::I32($body),
            DenseArray::I64($a) => DenseArray::I64($body),
            DenseArray::U8($a) => DenseArray::U8($body),
            DenseArray::U16($a) => DenseArray::U16($body),
            DenseArray::U32($a) => DenseArray::U32($body),
            DenseArray::U64($a) => DenseArray::U64($body),
            DenseArray::Bool($a) => DenseArray::Bool($body),
            DenseArray::String($a) => DenseArray::String($body),
        }
    };
}

impl DenseArray {
    /// Select `idx` along `axis` (panics only if `axis >= ndim`; callers check).
    pub fn select_axis(&self, axis: usize, idx: &[usize]) -> DenseArray {
        dense_map!(self, a => a.select(Axis(axis), idx))
    }
}

impl Matrix {
    pub fn select_rows(&self, rows: &[usize]) -> Matrix {
        match self {
            Matrix::Dense(d) if d.ndim() >= 1 => Matrix::Dense(d.select_axis(0, rows)),
            Matrix::Dense(d) => Matrix::Dense(d.clone()),
            Matrix::Sparse(s) => Matrix::Sparse(s.select_rows(rows)),
        }
    }
    pub fn select_cols(&self, cols: &[usize]) -> Matrix {
        match self {
            Matrix::Dense(d) if d.ndim() >= 2 => Matrix::Dense(d.select_axis(1, cols)),
            Matrix::Dense(d) => Matrix::Dense(d.clone()),
            Matrix::Sparse(s) => Matrix::Sparse(s.select_cols(cols)),
        }
    }
    /// Stored entries: nnz for sparse, number of non-zero values for dense.
    pub fn nnz(&self) -> usize {
        match self {
            Matrix::Sparse(s) => s.nnz(),
            Matrix::Dense(d) => d
                .to_f64()
                .map(|a| a.iter().filter(|&&x| x != 0.0).count())
                .unwrap_or(0),
        }
    }
    /// Sum of all values (NaN for string arrays).
    pub fn sum(&self) -> f64 {
        match self {
            Matrix::Sparse(s) => s.sum(),
            Matrix::Dense(d) => d.to_f64().map(|a| a.sum()).unwrap_or(f64::NAN),
        }
    }
    /// Dense f32 `[rows, cols]` copy; `None` for string or >2-D arrays.
    pub fn to_dense_f32(&self) -> Option<Array2<f32>> {
        match self {
            Matrix::Sparse(s) => Some(s.to_dense_f32()),
            Matrix::Dense(DenseArray::F32(a)) => a.clone().into_dimensionality().ok(),
            Matrix::Dense(d) => d.to_f64()?.mapv(|x| x as f32).into_dimensionality().ok(),
        }
    }
}

impl Column {
    pub fn select(&self, idx: &[usize]) -> Column {
        match self {
            Column::Array(a) => Column::Array(a.select_axis(0, idx)),
            Column::Categorical {
                codes,
                categories,
                ordered,
            } => Column::Categorical {
                codes: idx.iter().map(|&i| codes[i]).collect(),
                categories: categories.clone(),
                ordered: *ordered,
            },
            Column::NullableInt { values, mask } => Column::NullableInt {
                values: idx.iter().map(|&i| values[i]).collect(),
                mask: idx.iter().map(|&i| mask[i]).collect(),
            },
            Column::NullableBool { values, mask } => Column::NullableBool {
                values: idx.iter().map(|&i| values[i]).collect(),
                mask: idx.iter().map(|&i| mask[i]).collect(),
            },
        }
    }
}

impl DataFrame {
    pub fn select_rows(&self, idx: &[usize]) -> DataFrame {
        DataFrame {
            index_name: self.index_name.clone(),
            index: idx.iter().map(|&i| self.index[i].clone()).collect(),
            columns: self
                .columns
                .iter()
                .map(|(n, c)| (n.clone(), c.select(idx)))
                .collect(),
        }
    }
}

impl AnnData {
    /// Subset cells (`rows`) and genes (`cols`) consistently across X, obs,
    /// var, obsm, varm, obsp, varp, layers and raw (raw keeps all its genes).
    /// Indices must be in range (callers validate user input).
    pub fn subset(&self, rows: Option<&[usize]>, cols: Option<&[usize]>) -> AnnData {
        let sel_r = |m: &Matrix| rows.map_or_else(|| m.clone(), |r| m.select_rows(r));
        let sel_c = |m: &Matrix| cols.map_or_else(|| m.clone(), |c| m.select_cols(c));
        AnnData {
            x: self.x.as_ref().map(|m| sel_c(&sel_r(m))),
            obs: rows.map_or_else(|| self.obs.clone(), |r| self.obs.select_rows(r)),
            var: cols.map_or_else(|| self.var.clone(), |c| self.var.select_rows(c)),
            obsm: self
                .obsm
                .iter()
                .map(|(k, m)| (k.clone(), sel_r(m)))
                .collect(),
            varm: self
                .varm
                .iter()
                .map(|(k, m)| {
                    (
                        k.clone(),
                        cols.map_or_else(|| m.clone(), |c| m.select_rows(c)),
                    )
                })
                .collect(),
            obsp: self
                .obsp
                .iter()
                .map(|(k, m)| {
                    (
                        k.clone(),
                        rows.map_or_else(|| m.clone(), |r| m.select_rows(r).select_cols(r)),
                    )
                })
                .collect(),
            varp: self
                .varp
                .iter()
                .map(|(k, m)| {
                    (
                        k.clone(),
                        sel_c(&cols.map_or_else(|| m.clone(), |c| m.select_rows(c))),
                    )
                })
                .collect(),
            layers: self
                .layers
                .iter()
                .map(|(k, m)| (k.clone(), sel_c(&sel_r(m))))
                .collect(),
            uns: self.uns.clone(),
            raw: self.raw.as_ref().map(|r| Raw {
                x: sel_r(&r.x),
                var: r.var.clone(),
                varm: r.varm.clone(),
            }),
        }
    }
}
