//! Row access to `X` (or a layer) whatever its storage: dense array of any
//! numeric dtype, CSR, or CSC (converted once to row-major indices).
use ndarray::{Array2, ArrayD, Axis};
use rayon::prelude::*;

use crate::anndata::{Matrix, SparseFormat, SparseMatrix};
use crate::error::{DatasetsError, Result};

/// A matrix readable row by row as `(column, value)` pairs.
pub enum Rows<'a> {
    Dense(ArrayD<f64>),
    Csr {
        m: &'a SparseMatrix,
        indptr: Vec<usize>,
    },
    /// CSC re-indexed as CSR: (indptr over rows, column indices, values).
    Converted {
        indptr: Vec<usize>,
        cols: Vec<usize>,
        vals: Vec<f64>,
    },
}

fn bad_sparse(what: String) -> DatasetsError {
    DatasetsError::Shape {
        context: "sparse matrix".into(),
        expected: "consistent indptr/indices".into(),
        found: what,
    }
}

impl<'a> Rows<'a> {
    /// Wrap a matrix (validates sparse indices against the shape).
    pub fn new(m: &'a Matrix) -> Result<Self> {
        match m {
            Matrix::Dense(a) => {
                let v = a.to_f64().ok_or_else(|| DatasetsError::Shape {
                    context: "X".into(),
                    expected: "a numeric matrix".into(),
                    found: "strings".into(),
                })?;
                let (r, c) = m.shape2();
                let v = v
                    .into_shape_with_order(ndarray::IxDyn(&[r, c]))
                    .map_err(|e| bad_sparse(e.to_string()))?;
                Ok(Rows::Dense(v))
            }
            Matrix::Sparse(s) => {
                let (n_rows, n_cols) = s.shape;
                let (major, minor) = match s.format {
                    SparseFormat::Csr => (n_rows, n_cols),
                    SparseFormat::Csc => (n_cols, n_rows),
                };
                if s.indptr.len() != major + 1 || s.indices.len() != s.data.len() {
                    return Err(bad_sparse(format!(
                        "indptr length {} for {major} major rows, {} indices for {} values",
                        s.indptr.len(),
                        s.indices.len(),
                        s.data.len()
                    )));
                }
                let indptr: Vec<usize> = (0..=major)
                    .map(|i| s.indptr.get(i).max(0) as usize)
                    .collect();
                if indptr.windows(2).any(|w| w[1] < w[0]) || indptr[major] > s.data.len() {
                    return Err(bad_sparse("indptr not monotone or beyond nnz".into()));
                }
                if (0..s.indices.len())
                    .any(|k| s.indices.get(k) < 0 || s.indices.get(k) as usize >= minor)
                {
                    return Err(bad_sparse(format!("an index outside [0, {minor})")));
                }
                match s.format {
                    SparseFormat::Csr => Ok(Rows::Csr { m: s, indptr }),
                    SparseFormat::Csc => {
                        let mut counts = vec![0usize; n_rows + 1];
                        for k in 0..indptr[major] {
                            counts[s.indices.get(k) as usize + 1] += 1;
                        }
                        for r in 0..n_rows {
                            counts[r + 1] += counts[r];
                        }
                        let mut next = counts.clone();
                        let nnz = indptr[major];
                        let (mut cols, mut vals) = (vec![0usize; nnz], vec![0f64; nnz]);
                        for c in 0..n_cols {
                            for k in indptr[c]..indptr[c + 1] {
                                let r = s.indices.get(k) as usize;
                                cols[next[r]] = c;
                                vals[next[r]] = s.data.get_f64(k);
                                next[r] += 1;
                            }
                        }
                        Ok(Rows::Converted {
                            indptr: counts,
                            cols,
                            vals,
                        })
                    }
                }
            }
        }
    }

    /// Call `f(col, value)` for every stored entry of row `r`.
    pub fn for_row(&self, r: usize, mut f: impl FnMut(usize, f64)) {
        match self {
            Rows::Dense(a) => {
                for (c, &v) in a.index_axis(Axis(0), r).iter().enumerate() {
                    f(c, v)
                }
            }
            Rows::Csr { m, indptr } => {
                for k in indptr[r]..indptr[r + 1] {
                    f(m.indices.get(k) as usize, m.data.get_f64(k))
                }
            }
            Rows::Converted { indptr, cols, vals } => {
                for k in indptr[r]..indptr[r + 1] {
                    f(cols[k], vals[k])
                }
            }
        }
    }

    /// Dense block `[cells.len(), genes.len()]` (f32), rows in parallel.
    pub fn block(&self, cells: &[usize], genes: &[usize], n_vars: usize) -> Array2<f32> {
        let mut pos = vec![usize::MAX; n_vars];
        for (k, &g) in genes.iter().enumerate() {
            pos[g] = k;
        }
        let mut out = Array2::<f32>::zeros((cells.len(), genes.len()));
        out.axis_iter_mut(Axis(0))
            .into_par_iter()
            .zip(cells.par_iter())
            .for_each(|(mut row, &c)| {
                self.for_row(c, |g, v| {
                    let k = pos[g];
                    if k != usize::MAX {
                        row[k] += v as f32;
                    }
                })
            });
        out
    }
}

impl Rows<'_> {
    /// Sync marker: all variants hold plain data.
    fn _assert_sync(&self) -> &(dyn Sync + '_) {
        self
    }
}
