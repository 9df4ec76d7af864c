//! In-memory AnnData with the scverse names (`X`, `obs`, `var`, `obsm`,
//! `varm`, `obsp`, `varp`, `layers`, `uns`, `raw`).
//!
//! Element kinds follow the on-disk encodings of the anndata file format
//! (`array`, `csr_matrix`/`csc_matrix`, `dataframe`, `string-array`,
//! `categorical`, `nullable-integer`, `nullable-boolean`, `dict`,
//! `numeric-scalar`, `string`).
use std::collections::BTreeMap;

use ndarray::{ArrayD, IxDyn};

/// A dense n-dimensional array of one of the element types h5ad stores.
#[derive(Debug, Clone, PartialEq)]
pub enum DenseArray {
    F32(ArrayD<f32>),
    F64(ArrayD<f64>),
    I8(ArrayD<i8>),
    I16(ArrayD<i16>),
    I32(ArrayD<i32>),
    I64(ArrayD<i64>),
    U8(ArrayD<u8>),
    U16(ArrayD<u16>),
    U32(ArrayD<u32>),
    U64(ArrayD<u64>),
    Bool(ArrayD<bool>),
    /// Variable-length UTF-8 strings (`string-array`).
    String(ArrayD<String>),
}

macro_rules! dense_dispatch {
    ($self:expr, $a:ident => $body:expr) => {
        match $self {
            DenseArray::F32($a) => $body,
            DenseArray::F64($a) => $body,
            DenseArray::I8($a) => $body,
            DenseArray::I16($a) => $body,
            DenseArray::I32($a) => $body,
            DenseArray::I64($a) => $body,
            DenseArray::U8($a) => $body,
            DenseArray::U16($a) => $body,
            DenseArray::U32($a) => $body,
            DenseArray::U64($a) => $body,
            DenseArray::Bool($a) => $body,
            DenseArray::String($a) => $body,
        }
    };
}

impl DenseArray {
    pub fn shape(&self) -> &[usize] {
        dense_dispatch!(self, a => a.shape())
    }
    pub fn ndim(&self) -> usize {
        self.shape().len()
    }
    pub fn len(&self) -> usize {
        dense_dispatch!(self, a => a.len())
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Short dtype name (`f32`, `i64`, `string`, ...), used in messages and `inspect`.
    pub fn dtype_name(&self) -> &'static str {
        match self {
            DenseArray::F32(_) => "f32",
            DenseArray::F64(_) => "f64",
            DenseArray::I8(_) => "i8",
            DenseArray::I16(_) => "i16",
            DenseArray::I32(_) => "i32",
            DenseArray::I64(_) => "i64",
            DenseArray::U8(_) => "u8",
            DenseArray::U16(_) => "u16",
            DenseArray::U32(_) => "u32",
            DenseArray::U64(_) => "u64",
            DenseArray::Bool(_) => "bool",
            DenseArray::String(_) => "string",
        }
    }
    /// Numeric values as f64 (bool → 0/1); `None` for strings.
    pub fn to_f64(&self) -> Option<ArrayD<f64>> {
        Some(match self {
            DenseArray::F32(a) => a.mapv(f64::from),
            DenseArray::F64(a) => a.clone(),
            DenseArray::I8(a) => a.mapv(f64::from),
            DenseArray::I16(a) => a.mapv(f64::from),
            DenseArray::I32(a) => a.mapv(f64::from),
            DenseArray::I64(a) => a.mapv(|v| v as f64),
            DenseArray::U8(a) => a.mapv(f64::from),
            DenseArray::U16(a) => a.mapv(f64::from),
            DenseArray::U32(a) => a.mapv(f64::from),
            DenseArray::U64(a) => a.mapv(|v| v as f64),
            DenseArray::Bool(a) => a.mapv(|v| if v { 1.0 } else { 0.0 }),
            DenseArray::String(_) => return None,
        })
    }
    pub fn strings(values: Vec<String>) -> Self {
        let n = values.len();
        DenseArray::String(
            ArrayD::from_shape_vec(IxDyn(&[n]), values).expect("1-D shape matches length"),
        )
    }
}

/// Numeric storage for sparse `data` (one dtype per matrix).
#[derive(Debug, Clone, PartialEq)]
pub enum SparseData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    Bool(Vec<bool>),
}

impl SparseData {
    pub fn len(&self) -> usize {
        match self {
            SparseData::F32(v) => v.len(),
            SparseData::F64(v) => v.len(),
            SparseData::I32(v) => v.len(),
            SparseData::I64(v) => v.len(),
            SparseData::U32(v) => v.len(),
            SparseData::U64(v) => v.len(),
            SparseData::Bool(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn get_f64(&self, i: usize) -> f64 {
        match self {
            SparseData::F32(v) => f64::from(v[i]),
            SparseData::F64(v) => v[i],
            SparseData::I32(v) => f64::from(v[i]),
            SparseData::I64(v) => v[i] as f64,
            SparseData::U32(v) => f64::from(v[i]),
            SparseData::U64(v) => v[i] as f64,
            SparseData::Bool(v) => f64::from(u8::from(v[i])),
        }
    }
    pub fn dtype_name(&self) -> &'static str {
        match self {
            SparseData::F32(_) => "f32",
            SparseData::F64(_) => "f64",
            SparseData::I32(_) => "i32",
            SparseData::I64(_) => "i64",
            SparseData::U32(_) => "u32",
            SparseData::U64(_) => "u64",
            SparseData::Bool(_) => "bool",
        }
    }
}

/// Index storage of a sparse matrix: anndata writes int32 or int64.
#[derive(Debug, Clone, PartialEq)]
pub enum SparseIndex {
    I32(Vec<i32>),
    I64(Vec<i64>),
}

impl SparseIndex {
    pub fn len(&self) -> usize {
        match self {
            SparseIndex::I32(v) => v.len(),
            SparseIndex::I64(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Value at `i` as i64 (callers validate ranges before use).
    pub fn get(&self, i: usize) -> i64 {
        match self {
            SparseIndex::I32(v) => i64::from(v[i]),
            SparseIndex::I64(v) => v[i],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SparseFormat {
    /// Compressed sparse rows (`csr_matrix`): `indptr` over rows, `indices` are columns.
    Csr,
    /// Compressed sparse columns (`csc_matrix`).
    Csc,
}

impl SparseFormat {
    pub fn encoding(self) -> &'static str {
        match self {
            SparseFormat::Csr => "csr_matrix",
            SparseFormat::Csc => "csc_matrix",
        }
    }
}

/// A CSR or CSC matrix exactly as stored (no dtype conversion).
#[derive(Debug, Clone, PartialEq)]
pub struct SparseMatrix {
    pub format: SparseFormat,
    /// (n_rows, n_cols)
    pub shape: (usize, usize),
    pub data: SparseData,
    pub indices: SparseIndex,
    pub indptr: SparseIndex,
}

impl SparseMatrix {
    pub fn nnz(&self) -> usize {
        self.data.len()
    }
}

/// `X`, a layer, or an `obsm`/`varm`/`obsp`/`varp` entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Matrix {
    Dense(DenseArray),
    Sparse(SparseMatrix),
}

impl Matrix {
    /// (rows, cols); for dense arrays with ndim ≠ 2 the trailing axes are folded.
    pub fn shape2(&self) -> (usize, usize) {
        match self {
            Matrix::Sparse(s) => s.shape,
            Matrix::Dense(d) => {
                let sh = d.shape();
                match sh.len() {
                    0 => (1, 1),
                    1 => (sh[0], 1),
                    _ => (sh[0], sh[1..].iter().product()),
                }
            }
        }
    }
    /// Encoding name as in the file format (`array`, `csr_matrix`, `csc_matrix`).
    pub fn encoding(&self) -> &'static str {
        match self {
            Matrix::Dense(_) => "array",
            Matrix::Sparse(s) => s.format.encoding(),
        }
    }
}

/// One column of `obs` / `var`.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// Plain numeric, boolean or string array (1-D).
    Array(DenseArray),
    /// `categorical`: codes index `categories`; −1 = missing.
    Categorical {
        codes: Vec<i32>,
        categories: DenseArray,
        ordered: bool,
    },
    /// `nullable-integer`: `mask[i] == true` means missing.
    NullableInt { values: Vec<i64>, mask: Vec<bool> },
    /// `nullable-boolean`: `mask[i] == true` means missing.
    NullableBool { values: Vec<bool>, mask: Vec<bool> },
}

impl Column {
    pub fn len(&self) -> usize {
        match self {
            Column::Array(a) => a.len(),
            Column::Categorical { codes, .. } => codes.len(),
            Column::NullableInt { values, .. } => values.len(),
            Column::NullableBool { values, .. } => values.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Kind name for summaries (`categorical`, `string-array`, `f32`, `nullable-integer`, ...).
    pub fn kind(&self) -> String {
        match self {
            Column::Array(DenseArray::String(_)) => "string-array".into(),
            Column::Array(a) => a.dtype_name().into(),
            Column::Categorical { .. } => "categorical".into(),
            Column::NullableInt { .. } => "nullable-integer".into(),
            Column::NullableBool { .. } => "nullable-boolean".into(),
        }
    }
    /// String labels per row (`None` = missing) for string or categorical
    /// columns; numeric values are formatted. Used by screens.
    pub fn labels(&self) -> Vec<Option<String>> {
        fn fmt_elem(a: &DenseArray, i: usize) -> String {
            match a {
                DenseArray::String(s) => s
                    .as_slice()
                    .map(|s| s[i].clone())
                    .unwrap_or_else(|| s.iter().nth(i).cloned().unwrap_or_default()),
                other => other
                    .to_f64()
                    .and_then(|v| v.iter().nth(i).map(|x| format!("{x}")))
                    .unwrap_or_default(),
            }
        }
        match self {
            Column::Array(a) => (0..a.len()).map(|i| Some(fmt_elem(a, i))).collect(),
            Column::Categorical {
                codes, categories, ..
            } => {
                let cats: Vec<String> = (0..categories.len())
                    .map(|i| fmt_elem(categories, i))
                    .collect();
                codes
                    .iter()
                    .map(|&c| {
                        if c < 0 {
                            None
                        } else {
                            cats.get(c as usize).cloned()
                        }
                    })
                    .collect()
            }
            Column::NullableInt { values, mask } => values
                .iter()
                .zip(mask)
                .map(|(v, &m)| if m { None } else { Some(v.to_string()) })
                .collect(),
            Column::NullableBool { values, mask } => values
                .iter()
                .zip(mask)
                .map(|(v, &m)| if m { None } else { Some(v.to_string()) })
                .collect(),
        }
    }
    /// Rows whose label is one of `wanted` (as [`Column::labels`] would
    /// give them), without materialising a label per row for categoricals
    /// and string arrays.
    pub fn rows_with_labels(&self, wanted: &[&str]) -> Vec<usize> {
        match self {
            Column::Categorical {
                codes,
                categories: DenseArray::String(cats),
                ..
            } => {
                let hit: Vec<bool> = cats.iter().map(|c| wanted.contains(&c.as_str())).collect();
                codes
                    .iter()
                    .enumerate()
                    .filter(|(_, &c)| c >= 0 && hit.get(c as usize).copied().unwrap_or(false))
                    .map(|(i, _)| i)
                    .collect()
            }
            Column::Array(DenseArray::String(s)) => s
                .iter()
                .enumerate()
                .filter(|(_, v)| wanted.contains(&v.as_str()))
                .map(|(i, _)| i)
                .collect(),
            other => other
                .labels()
                .iter()
                .enumerate()
                .filter(|(_, l)| l.as_deref().is_some_and(|l| wanted.contains(&l)))
                .map(|(i, _)| i)
                .collect(),
        }
    }
    /// A categorical column from string labels (`None` → code −1), categories
    /// in order of first appearance.
    pub fn categorical_from_labels<S: AsRef<str>>(labels: &[Option<S>]) -> Self {
        let mut cats: Vec<String> = Vec::new();
        let mut lookup: std::collections::HashMap<String, i32> = Default::default();
        let codes = labels
            .iter()
            .map(|l| match l {
                None => -1,
                Some(s) => *lookup.entry(s.as_ref().to_string()).or_insert_with(|| {
                    cats.push(s.as_ref().to_string());
                    (cats.len() - 1) as i32
                }),
            })
            .collect();
        Column::Categorical {
            codes,
            categories: DenseArray::strings(cats),
            ordered: false,
        }
    }
}

/// `obs` / `var` data frame: an index of names plus ordered columns.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DataFrame {
    /// Name of the index column on disk (attribute `_index`, usually `_index`).
    pub index_name: String,
    pub index: Vec<String>,
    /// Columns in `column-order`.
    pub columns: Vec<(String, Column)>,
}

impl DataFrame {
    pub fn new(index: Vec<String>) -> Self {
        DataFrame {
            index_name: "_index".into(),
            index,
            columns: Vec::new(),
        }
    }
    pub fn n_rows(&self) -> usize {
        self.index.len()
    }
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|(n, _)| n == name).map(|(_, c)| c)
    }
    /// Insert or replace a column (keeps its position when replacing).
    pub fn set_column(&mut self, name: impl Into<String>, col: Column) {
        let name = name.into();
        if let Some(slot) = self.columns.iter_mut().find(|(n, _)| *n == name) {
            slot.1 = col;
        } else {
            self.columns.push((name, col));
        }
    }
}

/// Scalars (`numeric-scalar`, `string`).
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    F64(f64),
    I64(i64),
    Bool(bool),
    String(String),
}

/// An `uns` value (and any other nested element).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Dict(BTreeMap<String, Value>),
    Scalar(Scalar),
    Array(DenseArray),
    Sparse(SparseMatrix),
    DataFrame(DataFrame),
    /// A categorical array outside a data frame.
    Categorical {
        codes: Vec<i32>,
        categories: DenseArray,
        ordered: bool,
    },
}

/// `raw`: an older snapshot of X with its own `var`.
#[derive(Debug, Clone, PartialEq)]
pub struct Raw {
    pub x: Matrix,
    pub var: DataFrame,
    pub varm: BTreeMap<String, Matrix>,
}

/// The annotated data matrix.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AnnData {
    /// `X` (n_obs × n_vars); `None` when the file has no X.
    pub x: Option<Matrix>,
    pub obs: DataFrame,
    pub var: DataFrame,
    pub obsm: BTreeMap<String, Matrix>,
    pub varm: BTreeMap<String, Matrix>,
    pub obsp: BTreeMap<String, Matrix>,
    pub varp: BTreeMap<String, Matrix>,
    pub layers: BTreeMap<String, Matrix>,
    pub uns: BTreeMap<String, Value>,
    pub raw: Option<Raw>,
}

impl AnnData {
    pub fn n_obs(&self) -> usize {
        self.obs.n_rows()
    }
    pub fn n_vars(&self) -> usize {
        self.var.n_rows()
    }
    pub fn obs_names(&self) -> &[String] {
        &self.obs.index
    }
    pub fn var_names(&self) -> &[String] {
        &self.var.index
    }
}
