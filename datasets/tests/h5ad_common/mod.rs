//! Shared helpers of the h5ad integration tests: the project venv's Python,
//! and the canonical JSON summary (same layout as `h5ad_summary.py`).
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::process::Command;

use datasets::anndata::*;
use serde_json::{json, Map, Value as J};

pub const BIG: usize = 5000;

pub fn python() -> PathBuf {
    let p = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/python"));
    assert!(
        p.exists(),
        "project venv missing: {} not found. Run scripts/setup.sh first (it installs anndata, h5py, scanpy).",
        p.display()
    );
    p
}

pub fn script(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests")).join(name)
}

/// Run the venv python with args; panic with its stderr on failure.
pub fn run_python(args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(python())
        .args(args)
        .output()
        .expect("running the venv python");
    assert!(
        out.status.success(),
        "python {:?} failed:\n{}",
        args,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

pub fn python_summary(file: &Path) -> J {
    let s = run_python(&[script("h5ad_summary.py").as_os_str(), file.as_os_str()]);
    serde_json::from_str(&s).expect("summary JSON")
}

pub fn pbmc68k() -> PathBuf {
    let p = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../.venv/lib/python3.11/site-packages/scanpy/datasets/10x_pbmc68k_reduced.h5ad"
    ));
    assert!(
        p.exists(),
        "scanpy's 10x_pbmc68k_reduced.h5ad not found at {} (run scripts/setup.sh)",
        p.display()
    );
    p
}

fn arr(a: &DenseArray) -> J {
    if let DenseArray::String(s) = a {
        return json!({"shape": a.shape(), "strings": s.iter().collect::<Vec<_>>()});
    }
    if let DenseArray::Bool(b) = a {
        if a.len() <= BIG {
            return json!({"shape": a.shape(), "values": b.iter().collect::<Vec<_>>()});
        }
    }
    let f = a.to_f64().expect("numeric");
    let v: Vec<f64> = f.iter().copied().collect();
    if v.len() > BIG {
        let sum: f64 = v.iter().sum();
        let sumsq: f64 = v.iter().map(|x| x * x).sum();
        return json!({"shape": a.shape(), "sum": sum, "sumsq": sumsq, "head": &v[..20]});
    }
    json!({"shape": a.shape(), "values": v})
}

fn mat(m: &Matrix) -> J {
    match m {
        Matrix::Dense(d) => json!({"format": "array", "dense": arr(d)}),
        Matrix::Sparse(s) => {
            let d = s.to_dense_f32();
            let dense = match &s.data {
                SparseData::F32(_) => arr(&DenseArray::F32(d.into_dyn())),
                _ => {
                    // keep f64 precision for f64/int data
                    let mut out = ndarray::Array2::<f64>::zeros(s.shape);
                    let ptr: Vec<i64> = (0..s.indptr.len()).map(|i| s.indptr.get(i)).collect();
                    for m in 0..ptr.len() - 1 {
                        for k in ptr[m] as usize..ptr[m + 1] as usize {
                            let j = s.indices.get(k) as usize;
                            match s.format {
                                SparseFormat::Csr => out[[m, j]] += s.data.get_f64(k),
                                SparseFormat::Csc => out[[j, m]] += s.data.get_f64(k),
                            }
                        }
                    }
                    arr(&DenseArray::F64(out.into_dyn()))
                }
            };
            let fmt = if s.format == SparseFormat::Csr {
                "csr"
            } else {
                "csc"
            };
            json!({"format": fmt, "nnz": s.nnz(), "dense": dense})
        }
    }
}

fn col(c: &Column) -> J {
    match c {
        Column::Array(a) => arr(a),
        Column::Categorical {
            codes,
            categories,
            ordered,
        } => {
            json!({"categorical": arr(categories), "codes": codes, "ordered": ordered})
        }
        Column::NullableInt { values, mask } => J::Array(
            values
                .iter()
                .zip(mask)
                .map(|(v, &m)| if m { J::Null } else { json!(*v as f64) })
                .collect(),
        )
        .pipe(|v| json!({"nullable": v})),
        Column::NullableBool { values, mask } => J::Array(
            values
                .iter()
                .zip(mask)
                .map(|(v, &m)| if m { J::Null } else { json!(v) })
                .collect(),
        )
        .pipe(|v| json!({"nullable": v})),
    }
}

trait Pipe: Sized {
    fn pipe<R>(self, f: impl FnOnce(Self) -> R) -> R {
        f(self)
    }
}
impl<T> Pipe for T {}

fn frame(df: &DataFrame) -> J {
    let cols: Map<String, J> = df
        .columns
        .iter()
        .map(|(k, c)| (k.clone(), col(c)))
        .collect();
    json!({"index": df.index, "columns": cols})
}

fn uns(v: &Value) -> J {
    match v {
        Value::Dict(d) => {
            json!({"dict": d.iter().map(|(k, v)| (k.clone(), uns(v))).collect::<Map<_, _>>()})
        }
        Value::DataFrame(df) => {
            json!({"frame": df.columns.iter().map(|(k, c)| (k.clone(), col(c))).collect::<Map<_, _>>()})
        }
        Value::Sparse(s) => mat(&Matrix::Sparse(s.clone())),
        Value::Scalar(Scalar::String(s)) => json!({"scalar": s}),
        Value::Scalar(Scalar::Bool(b)) => json!({"scalar": b}),
        Value::Scalar(Scalar::F64(x)) => json!({"scalar": x}),
        Value::Scalar(Scalar::I64(x)) => json!({"scalar": *x as f64}),
        Value::Array(a) => arr(a),
        Value::Categorical {
            codes,
            categories,
            ordered,
        } => {
            json!({"categorical": arr(categories), "codes": codes, "ordered": ordered})
        }
    }
}

fn mats(d: &std::collections::BTreeMap<String, Matrix>) -> J {
    J::Object(d.iter().map(|(k, m)| (k.clone(), mat(m))).collect())
}

/// Same structure as `h5ad_summary.py`.
pub fn summary(a: &AnnData) -> J {
    json!({
        "n_obs": a.n_obs(),
        "n_vars": a.n_vars(),
        "X": a.x.as_ref().map(mat),
        "obs": frame(&a.obs),
        "var": frame(&a.var),
        "uns": J::Object(a.uns.iter().map(|(k, v)| (k.clone(), uns(v))).collect()),
        "raw": a.raw.as_ref().map(|r| json!({"X": mat(&r.x), "var": frame(&r.var), "varm": mats(&r.varm)})),
        "obsm": mats(&a.obsm),
        "varm": mats(&a.varm),
        "obsp": mats(&a.obsp),
        "varp": mats(&a.varp),
        "layers": mats(&a.layers),
    })
}

/// Recursive comparison; numbers within a relative 1e-6. Returns the first
/// difference as `path: left vs right`.
pub fn diff(a: &J, b: &J, path: &str) -> Option<String> {
    match (a, b) {
        (J::Number(x), J::Number(y)) => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            let tol = 1e-6 * x.abs().max(y.abs()).max(1e-3);
            ((x - y).abs() > tol).then(|| format!("{path}: {x} vs {y}"))
        }
        (J::Array(x), J::Array(y)) => {
            if x.len() != y.len() {
                return Some(format!("{path}: length {} vs {}", x.len(), y.len()));
            }
            x.iter()
                .zip(y)
                .enumerate()
                .find_map(|(i, (p, q))| diff(p, q, &format!("{path}[{i}]")))
        }
        (J::Object(x), J::Object(y)) => {
            let kx: Vec<_> = x.keys().collect();
            let ky: Vec<_> = y.keys().collect();
            if kx != ky {
                return Some(format!("{path}: keys {kx:?} vs {ky:?}"));
            }
            x.iter()
                .find_map(|(k, v)| diff(v, &y[k], &format!("{path}/{k}")))
        }
        _ => (a != b).then(|| format!("{path}: {a} vs {b}")),
    }
}

pub fn assert_same(ours: &J, theirs: &J, what: &str) {
    if let Some(d) = diff(ours, theirs, "") {
        panic!("{what}: Rust and anndata disagree at {d}");
    }
}
