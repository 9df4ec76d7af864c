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

/// `open_lazy` leaves the obs names on disk but otherwise reads as `open`:
/// same columns, and names, frame, partial reads, chunks and subsets equal.
#[test]
fn lazy_open_matches_eager_open() {
    let d = tempfile::tempdir().unwrap();
    let (p, ad) = fixture(d.path());
    let eager = H5adReader::open(&p).unwrap();
    let lazy = H5adReader::open_lazy(&p).unwrap();
    assert_eq!((lazy.n_obs(), lazy.n_vars()), (300, 40));
    assert_eq!(lazy.obs.n_rows(), 300);
    assert_eq!(lazy.obs.index_name(), "_index");
    assert_eq!(lazy.obs.columns(), &ad.obs.columns[..]);
    assert_eq!(
        lazy.obs.column("perturbation"),
        ad.obs.column("perturbation")
    );
    assert!(lazy.obs.column("nope").is_none());
    assert_eq!(lazy.var, ad.var);
    assert!(
        format!("{:?}", lazy.obs).contains("names_read: false"),
        "names not read at open"
    );
    let rows = lazy
        .obs
        .column("perturbation")
        .unwrap()
        .rows_with_labels(&["P2", "P5"]);
    assert!(!rows.is_empty());
    let cols: Vec<usize> = (0..20).collect();
    for elem in ["X", "layers/csc", "layers/dense"] {
        assert_eq!(
            lazy.read_submatrix(elem, Some(&rows), Some(&cols)).unwrap(),
            eager
                .read_submatrix(elem, Some(&rows), Some(&cols))
                .unwrap(),
            "{elem}"
        );
    }
    let chunks = |r: ChunkIter<'_, LazyObs>| r.map(|c| c.unwrap()).collect::<Vec<_>>();
    let chunks_eager = |r: ChunkIter<'_>| r.map(|c| c.unwrap()).collect::<Vec<_>>();
    assert_eq!(
        chunks(lazy.iter_chunks("layers/csc", 64).unwrap()),
        chunks_eager(eager.iter_chunks("layers/csc", 64).unwrap())
    );
    assert_eq!(lazy.obs.names().unwrap(), &ad.obs.index[..]);
    assert!(format!("{:?}", lazy.obs).contains("names_read: true"));
    assert_eq!(lazy.obs.to_frame().unwrap(), ad.obs);
    let (sl, se) = (
        lazy.read_subset(Some(&rows), Some(&cols)).unwrap(),
        eager.read_subset(Some(&rows), Some(&cols)).unwrap(),
    );
    assert_eq!(sl, se);
    assert_eq!(sl.obs.index[0], ad.obs.index[rows[0]]);
    // A fresh lazy reader gives the names to read_subset too.
    let fresh = H5adReader::open_lazy(&p).unwrap();
    assert_eq!(fresh.read_subset(None, None).unwrap().obs, ad.obs);
}

/// Many cells (the fast vlen path of the name decoder) and an index that is
/// not a string array (read at open even when lazy).
#[test]
fn lazy_open_large_and_numeric_index() {
    let d = tempfile::tempdir().unwrap();
    let n = 5000;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let labels: Vec<Option<String>> = (0..n).map(|i| Some(format!("P{}", i % 11))).collect();
    let mut obs = DataFrame::new((0..n).map(|i| format!("cell_{i}")).collect());
    obs.set_column("perturbation", Column::categorical_from_labels(&labels));
    let ad = AnnData {
        x: Some(Matrix::Sparse(random_csr(&mut rng, n, 6, 0.3))),
        obs,
        var: DataFrame::new((0..6).map(|j| format!("G{j}")).collect()),
        ..Default::default()
    };
    let p = d.path().join("large.h5ad");
    write_h5ad(&ad, &p).unwrap();
    let r = H5adReader::open_lazy(&p).unwrap();
    assert_eq!(r.n_obs(), n);
    assert_eq!(r.obs.names().unwrap(), &ad.obs.index[..]);
    drop(r);

    // An integer index: anndata reads it as strings; read at open.
    {
        let f = hdf5::File::open_rw(&p).unwrap();
        let g = f.group("obs").unwrap();
        g.unlink("_index").unwrap();
        let ds = g
            .new_dataset_builder()
            .with_data(&(0..n as i64).map(|i| i * 10).collect::<Vec<_>>())
            .create("_index")
            .unwrap();
        let a = ds
            .new_attr::<hdf5::types::VarLenUnicode>()
            .create("encoding-type")
            .unwrap();
        a.write_scalar(&"array".parse::<hdf5::types::VarLenUnicode>().unwrap())
            .unwrap();
    }
    let eager = H5adReader::open(&p).unwrap();
    let lazy = H5adReader::open_lazy(&p).unwrap();
    assert!(format!("{:?}", lazy.obs).contains("names_read: true"));
    assert_eq!(lazy.obs.names().unwrap(), &eager.obs.index[..]);
    assert_eq!(eager.obs.index[3], "30");
}

/// Minor-axis selection (columns of CSR, rows of CSC) against the dense
/// selection, for sorted, unsorted, repeated and empty index lists and
/// both index widths.
#[test]
fn minor_selection_matches_dense_selection() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let csr = random_csr(&mut rng, 60, 25, 0.2);
    let csc = to_csc(&csr);
    let full = csr.to_dense_f32();
    let sets: Vec<Vec<usize>> = vec![
        vec![],
        (0..25).collect(),
        vec![0, 3, 4, 10, 24],
        vec![24, 0, 7, 7, 3],
        vec![5],
    ];
    // A repeated index keeps its entries at its first position only (the
    // documented rule of `select_minor`): later repeats are empty.
    let first_only = |mut a: Array2<f32>, idx: &[usize], axis: usize| {
        for (k, i) in idx.iter().enumerate() {
            if idx[..k].contains(i) {
                a.index_axis_mut(ndarray::Axis(axis), k).fill(0.0);
            }
        }
        a
    };
    for idx in &sets {
        let want_cols = first_only(full.select(ndarray::Axis(1), idx), idx, 1);
        let got = Matrix::Sparse(csr.clone()).select_cols(idx);
        assert_eq!(dense(&got), want_cols, "csr cols {idx:?}");
        let row_idx: Vec<usize> = idx.iter().map(|&i| (i * 2) % 60).collect();
        let want_rows = first_only(full.select(ndarray::Axis(0), &row_idx), &row_idx, 0);
        let got = csc.select_minor(&row_idx);
        assert_eq!(got.to_dense_f32(), want_rows, "csc rows {row_idx:?}");
        assert!(matches!(got.indices, SparseIndex::I64(_)), "width kept");
        let ptr = got.indptr.to_usize();
        for w in ptr.windows(2) {
            let seg: Vec<i64> = (w[0]..w[1]).map(|k| got.indices.get(k)).collect();
            assert!(seg.windows(2).all(|p| p[0] < p[1]), "sorted in each column");
        }
    }
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

/// `names_of` / `select_rows` of a lazy reader against the in-memory obs,
/// before and after all names are read, for sorted, unsorted, repeated,
/// empty and boundary row lists; out-of-range rows are refused.
fn check_names_of(p: &std::path::Path, ad: &AnnData, extra: &[Vec<usize>]) {
    let n = ad.n_obs();
    let all = &ad.obs.index;
    let mut lists: Vec<Vec<usize>> = vec![
        vec![],
        vec![0],
        vec![n - 1],
        vec![0, n - 1],
        vec![n - 1, 0],
        vec![3, 1, 2],
        vec![5, 5, 2, 5, 0],
        (0..n).step_by(7).collect(),
        (0..n).rev().collect(),
        (0..n).collect(),
    ];
    lists.extend_from_slice(extra);
    let r = H5adReader::open_lazy(p).unwrap();
    for rows in &lists {
        let want: Vec<String> = rows.iter().map(|&i| all[i].clone()).collect();
        assert_eq!(r.obs.names_of(rows).unwrap(), want, "rows {rows:?}");
        assert_eq!(
            r.obs.select_rows(rows).unwrap(),
            ad.obs.select_rows(rows),
            "rows {rows:?}"
        );
    }
    assert!(
        format!("{:?}", r.obs).contains("names_read: false"),
        "names_of reads only the selected names and caches nothing"
    );
    for bad in [vec![n], vec![0, n + 5, 1]] {
        let e = r.obs.names_of(&bad).unwrap_err().to_string();
        let b = bad.iter().find(|&&i| i >= n).unwrap();
        assert!(
            e.contains(&p.display().to_string())
                && e.contains("/obs/_index")
                && e.contains(&format!("row indices < {n}"))
                && e.contains(&format!("row {b}")),
            "{e}"
        );
        assert!(r.obs.select_rows(&bad).is_err());
    }
    // Once all names are read, they are picked from memory: same answers.
    assert_eq!(r.obs.names().unwrap(), &all[..]);
    for rows in &lists {
        let want: Vec<String> = rows.iter().map(|&i| all[i].clone()).collect();
        assert_eq!(r.obs.names_of(rows).unwrap(), want, "cached, rows {rows:?}");
    }
    assert!(r.obs.names_of(&[n]).is_err());
}

/// Few cells: the names are read by an HDF5 point selection.
#[test]
fn names_of_small_file() {
    let d = tempfile::tempdir().unwrap();
    let (p, ad) = fixture(d.path());
    let rows = H5adReader::open_lazy(&p)
        .unwrap()
        .obs
        .column("perturbation")
        .unwrap()
        .rows_with_labels(&["P2", "P5"]);
    check_names_of(&p, &ad, &[rows]);
}

/// Many cells with empty, non-ASCII and long names: the direct path of the
/// vlen decoder (element table around the rows, their heap collections);
/// rows near each other and far apart.
#[test]
fn names_of_large_file() {
    let d = tempfile::tempdir().unwrap();
    let n = 6000;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let names: Vec<String> = (0..n)
        .map(|i| match i % 5 {
            _ if i == 17 => String::new(),
            0 => format!("cell_{i}"),
            1 => format!("zelle-ß-名前-{i}"),
            2 => format!("{i}-{}", "long".repeat(i % 61)),
            3 => format!("c{i}"),
            _ => format!("AAACCTG-{i:06}-1"),
        })
        .collect();
    let labels: Vec<Option<String>> = (0..n).map(|i| Some(format!("P{}", i % 13))).collect();
    let mut obs = DataFrame::new(names);
    obs.set_column("perturbation", Column::categorical_from_labels(&labels));
    let ad = AnnData {
        x: Some(Matrix::Sparse(random_csr(&mut rng, n, 4, 0.3))),
        obs,
        var: DataFrame::new((0..4).map(|j| format!("G{j}")).collect()),
        ..Default::default()
    };
    let p = d.path().join("many.h5ad");
    write_h5ad(&ad, &p).unwrap();
    let mut random: Vec<usize> = (0..500).map(|_| rng.random_range(0..n)).collect();
    let sorted = {
        let mut v = random.clone();
        v.sort_unstable();
        v.dedup();
        v
    };
    random.push(17);
    let far = vec![1, 2000, 4000, n - 2];
    let blocks: Vec<usize> = (100..400).chain(5000..5100).collect();
    let labelled = ad
        .obs
        .column("perturbation")
        .unwrap()
        .rows_with_labels(&["P3"]);
    check_names_of(&p, &ad, &[random, sorted, far, blocks, labelled, vec![17]]);
}
