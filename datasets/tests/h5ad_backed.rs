//! Backed reader: partial reads (rows, columns, both; CSR, CSC, dense) and
//! chunked iteration agree with the in-memory subset of the whole file.
use datasets::anndata::*;
use ndarray::{Array2, ArrayD};
use rand::{Rng, SeedableRng};

fn random_csr(rng: &mut rand_chacha::ChaCha8Rng, n: usize, m: usize, density: f64) -> SparseMatrix {
    let mut data = Vec::new();
    let mut indices = Vec::new();
    let mut indptr = vec![0i32];
    for _ in 0..n {
        for j in 0..m {
            if rng.random::<f64>() < density {
                data.push(rng.random_range(1..20) as f32);
                indices.push(j as i32);
            }
        }
        indptr.push(indices.len() as i32);
    }
    SparseMatrix {
        format: SparseFormat::Csr,
        shape: (n, m),
        data: SparseData::F32(data),
        indices: SparseIndex::I32(indices),
        indptr: SparseIndex::I32(indptr),
    }
}

fn to_csc(m: &SparseMatrix) -> SparseMatrix {
    let d = m.to_dense_f32();
    let (n, k) = m.shape;
    let mut data = Vec::new();
    let mut indices = Vec::new();
    let mut indptr = vec![0i64];
    for j in 0..k {
        for i in 0..n {
            if d[[i, j]] != 0.0 {
                data.push(f64::from(d[[i, j]]));
                indices.push(i as i64);
            }
        }
        indptr.push(indices.len() as i64);
    }
    SparseMatrix {
        format: SparseFormat::Csc,
        shape: m.shape,
        data: SparseData::F64(data),
        indices: SparseIndex::I64(indices),
        indptr: SparseIndex::I64(indptr),
    }
}

fn dense(m: &Matrix) -> Array2<f32> {
    m.to_dense_f32().unwrap()
}

fn fixture(dir: &std::path::Path) -> (std::path::PathBuf, AnnData) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let (n, m) = (300, 40);
    let x = random_csr(&mut rng, n, m, 0.1);
    let mut obs = DataFrame::new((0..n).map(|i| format!("cell{i}")).collect());
    let labels: Vec<Option<String>> = (0..n)
        .map(|i| {
            if i % 17 == 0 {
                None
            } else {
                Some(format!("P{}", i % 7))
            }
        })
        .collect();
    obs.set_column("perturbation", Column::categorical_from_labels(&labels));
    obs.set_column(
        "n",
        Column::Array(DenseArray::I64(
            ArrayD::from_shape_vec(vec![n], (0..n as i64).collect()).unwrap(),
        )),
    );
    let var = DataFrame::new((0..m).map(|j| format!("G{j}")).collect());
    let mut ad = AnnData {
        obs,
        var,
        ..Default::default()
    };
    ad.layers.insert("csc".into(), Matrix::Sparse(to_csc(&x)));
    ad.layers.insert(
        "dense".into(),
        Matrix::Dense(DenseArray::F32(x.to_dense_f32().into_dyn())),
    );
    ad.obsm.insert(
        "X_pca".into(),
        Matrix::Dense(DenseArray::F64(ArrayD::from_shape_fn(vec![n, 3], |i| {
            (i[0] * 3 + i[1]) as f64
        }))),
    );
    ad.varm.insert(
        "PCs".into(),
        Matrix::Dense(DenseArray::F32(ArrayD::from_shape_fn(vec![m, 2], |i| {
            i[0] as f32
        }))),
    );
    ad.obsp.insert(
        "conn".into(),
        Matrix::Sparse(random_csr(&mut rng, n, n, 0.02)),
    );
    ad.varp.insert(
        "eff".into(),
        Matrix::Dense(DenseArray::F64(ArrayD::from_shape_fn(vec![m, m], |i| {
            (i[0] * m + i[1]) as f64
        }))),
    );
    ad.raw = Some(Raw {
        x: Matrix::Sparse(random_csr(&mut rng, n, m + 5, 0.1)),
        var: DataFrame::new((0..m + 5).map(|j| format!("R{j}")).collect()),
        varm: Default::default(),
    });
    ad.x = Some(Matrix::Sparse(x));
    let p = dir.join("backed.h5ad");
    write_h5ad(&ad, &p).unwrap();
    (p, ad)
}

#[test]
fn partial_reads_match_in_memory_selection() {
    let d = tempfile::tempdir().unwrap();
    let (p, ad) = fixture(d.path());
    let r = H5adReader::open(&p).unwrap();
    assert_eq!((r.n_obs(), r.n_vars()), (300, 40));
    assert_eq!(r.obs, ad.obs);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let row_sets: Vec<Vec<usize>> = vec![
        vec![],
        vec![5],
        (10..60).collect(),             // contiguous
        (0..300).step_by(37).collect(), // scattered, sorted
        vec![299, 3, 3, 150, 0],        // unsorted with repeats
        (0..40).map(|_| rng.random_range(0..300)).collect(),
    ];
    let col_sets: Vec<Option<Vec<usize>>> = vec![
        None,
        Some(vec![3, 1, 39]),
        Some((0..40).step_by(2).collect()),
    ];
    for elem in ["X", "layers/csc", "layers/dense"] {
        let full = match elem {
            "X" => ad.x.clone().unwrap(),
            e => ad.layers[e.trim_start_matches("layers/")].clone(),
        };
        for rows in &row_sets {
            for cols in &col_sets {
                let got = r.read_submatrix(elem, Some(rows), cols.as_deref()).unwrap();
                let mut want = full.select_rows(rows);
                if let Some(c) = cols {
                    want = want.select_cols(c);
                }
                assert_eq!(
                    dense(&got),
                    dense(&want),
                    "{elem} rows {rows:?} cols {cols:?}"
                );
                assert_eq!(got.encoding(), full.encoding());
            }
        }
    }
    assert!(r.read_rows(&[300]).is_err(), "row out of range is an error");
    assert!(r
        .read_cols(&[40])
        .unwrap_err()
        .to_string()
        .contains("index 40"));
}

#[test]
fn chunked_iteration_covers_all_rows() {
    let d = tempfile::tempdir().unwrap();
    let (p, ad) = fixture(d.path());
    let r = H5adReader::open(&p).unwrap();
    let want = dense(ad.x.as_ref().unwrap());
    for elem in ["X", "layers/dense", "layers/csc"] {
        for chunk in [64, 1, 7, 300, 1000] {
            let mut rows = 0;
            let mut blocks = Vec::new();
            for item in r.iter_chunks(elem, chunk).unwrap() {
                let (range, m) = item.unwrap();
                assert_eq!(range.start, rows);
                assert_eq!(m.shape2(), (range.len(), 40));
                if elem == "layers/csc" {
                    assert_eq!(m.encoding(), "csc_matrix", "chunks keep the stored format");
                }
                rows = range.end;
                blocks.push(dense(&m));
            }
            assert_eq!(rows, 300);
            assert_eq!(blocks.len(), 300usize.div_ceil(chunk));
            let views: Vec<_> = blocks.iter().map(|b| b.view()).collect();
            let all = ndarray::concatenate(ndarray::Axis(0), &views).unwrap();
            assert_eq!(all, want, "{elem} in chunks of {chunk}");
        }
    }
    assert!(r.iter_chunks("X", 0).is_err());
}

/// A CSC matrix whose row indices are not sorted within a column cannot be
/// walked in row blocks: the iterator reports it (naming the dataset) and stops.
#[test]
fn csc_iteration_refuses_unsorted_columns() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("unsorted.h5ad");
    // 6 x 2, column 0 holds rows [4, 1] (unsorted), column 1 holds row 2.
    let m = SparseMatrix {
        format: SparseFormat::Csc,
        shape: (6, 2),
        data: SparseData::F32(vec![1.0, 2.0, 3.0]),
        indices: SparseIndex::I32(vec![4, 1, 2]),
        indptr: SparseIndex::I32(vec![0, 2, 3]),
    };
    let ad = AnnData {
        x: Some(Matrix::Sparse(m)),
        obs: DataFrame::new((0..6).map(|i| format!("c{i}")).collect()),
        var: DataFrame::new(vec!["a".into(), "b".into()]),
        ..Default::default()
    };
    write_h5ad(&ad, &p).unwrap();
    let r = H5adReader::open(&p).unwrap();
    let items: Vec<_> = r.iter_chunks("X", 3).unwrap().collect();
    assert_eq!(items.len(), 2, "stops after the error");
    assert!(items[0].is_ok());
    let e = items[1].as_ref().unwrap_err().to_string();
    assert!(e.contains("/X/indices") && e.contains("sorted"), "{e}");
}

#[test]
fn read_subset_is_consistent() {
    let d = tempfile::tempdir().unwrap();
    let (p, ad) = fixture(d.path());
    let r = H5adReader::open(&p).unwrap();
    let rows: Vec<usize> = (0..300).filter(|i| i % 7 == 3).collect();
    let cols = vec![5usize, 0, 17];
    let sub = r.read_subset(Some(&rows), Some(&cols)).unwrap();
    let want = ad.subset(Some(&rows), Some(&cols));
    assert_eq!(sub.obs, want.obs);
    assert_eq!(sub.var, want.var);
    assert_eq!(sub.obsm, want.obsm);
    assert_eq!(sub.varm, want.varm);
    assert_eq!(sub.varp, want.varp);
    assert_eq!(dense(&sub.obsp["conn"]), dense(&want.obsp["conn"]));
    assert_eq!(
        dense(sub.x.as_ref().unwrap()),
        dense(want.x.as_ref().unwrap())
    );
    for k in ["csc", "dense"] {
        assert_eq!(dense(&sub.layers[k]), dense(&want.layers[k]));
    }
    let (rs, rw) = (sub.raw.clone().unwrap(), want.raw.clone().unwrap());
    assert_eq!(dense(&rs.x), dense(&rw.x));
    assert_eq!(rs.var, rw.var);
    // and the subset writes and reads back
    let out = d.path().join("sub.h5ad");
    write_h5ad(&want, &out).unwrap();
    assert_eq!(read_h5ad(&out).unwrap().n_obs(), rows.len());
}

/// `rows_with_labels` agrees with filtering `labels()` for every column kind.
#[test]
fn rows_with_labels_matches_labels() {
    let labels: Vec<Option<&str>> = (0..50)
        .map(|i| match i % 5 {
            0 => None,
            1 => Some("a"),
            2 => Some("b+c"),
            3 => Some("ctrl"),
            _ => Some("d"),
        })
        .collect();
    let strings: Vec<String> = labels.iter().map(|l| l.unwrap_or("").to_string()).collect();
    let cols = [
        Column::categorical_from_labels(&labels),
        Column::Array(DenseArray::strings(strings)),
        Column::NullableInt {
            values: (0..50).map(|i| i % 4).collect(),
            mask: (0..50).map(|i| i % 7 == 0).collect(),
        },
    ];
    for wanted in [
        vec![],
        vec!["a"],
        vec!["b+c", "ctrl", "zzz"],
        vec!["", "2", "3"],
    ] {
        for c in &cols {
            let want: Vec<usize> = c
                .labels()
                .iter()
                .enumerate()
                .filter(|(_, l)| l.as_deref().is_some_and(|l| wanted.contains(&l)))
                .map(|(i, _)| i)
                .collect();
            assert_eq!(c.rows_with_labels(&wanted), want, "{} {wanted:?}", c.kind());
        }
    }
}
