//! The `Screen` view: label parsing, odd-label reports, QC, counts access in
//! every storage, splits and gene selection on a simulated count screen.
use datasets::anndata::{
    AnnData, Column, DataFrame, DenseArray, Matrix, SparseData, SparseFormat, SparseIndex,
    SparseMatrix,
};
use datasets::screen::{ConditionKind, QcOptions, Screen, ScreenOptions, SplitOptions};
use datasets::simulate::{simulate_screen, SimulationConfig};
use ndarray::{Array2, ArrayD};

fn toy(labels: &[Option<&str>], column: &str, genes: &[&str], x: Array2<f32>) -> AnnData {
    let mut obs = DataFrame::new((0..labels.len()).map(|i| format!("c{i}")).collect());
    obs.set_column(column, Column::categorical_from_labels(labels));
    let var = DataFrame::new(genes.iter().map(|s| s.to_string()).collect());
    AnnData {
        x: Some(Matrix::Dense(DenseArray::F32(x.into_dyn()))),
        obs,
        var,
        ..Default::default()
    }
}

fn opts(min_cells: usize) -> ScreenOptions {
    ScreenOptions {
        qc: QcOptions {
            min_cells_per_condition: min_cells,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn counts(n: usize, g: usize) -> Array2<f32> {
    Array2::from_shape_fn((n, g), |(i, j)| ((i * 7 + j * 3) % 5) as f32)
}

#[test]
fn labels_controls_separators_and_reports() {
    let genes = ["KLF1", "CEBPA", "GATA1", "MT-CO1"];
    for (sep, col) in [
        ("+", "perturbation"),
        ("_", "condition"),
        ("|", "perturbation_name"),
        (",", "guide_ids"),
    ] {
        let labels = [
            Some("ctrl".to_string()),
            Some("non-targeting".to_string()),
            Some(format!("KLF1{sep}ctrl")),
            Some("KLF1".to_string()),
            Some(format!("KLF1{sep}CEBPA")),
            Some(format!("CEBPA{sep}KLF1")),
            Some(format!("GATA1{sep}FOO")),
            None,
        ];
        let labels: Vec<Option<&str>> = labels.iter().map(|l| l.as_deref()).collect();
        let ad = toy(&labels, col, &genes, counts(8, 4));
        let s = Screen::from_anndata(&ad, opts(1)).expect("screen");
        let r = s.report();
        assert_eq!(r.column, col);
        assert_eq!(r.separator, sep.chars().next().expect("sep"));
        assert_eq!(r.missing_label_cells, 1);
        let ctrl = s.control().expect("control");
        assert_eq!(ctrl.cells, vec![0, 1]);
        let klf1 = s.condition("KLF1").expect("KLF1");
        assert_eq!(klf1.kind, ConditionKind::Single);
        assert_eq!(klf1.cells, vec![2, 3]);
        let dbl = s.condition(&format!("CEBPA{sep}KLF1")).expect("alias");
        assert_eq!(dbl.targets, vec!["CEBPA", "KLF1"]);
        assert_eq!(dbl.target_vars, vec![Some(1), Some(0)]);
        assert_eq!(dbl.cells, vec![4, 5]);
        assert_eq!(r.merged_labels.len(), 3, "{:?}", r.merged_labels); // controls, KLF1+ctrl = KLF1, B+A = A+B
                                                                       // A target missing from var_names is reported with its cell count, not dropped.
        assert_eq!(r.unknown_targets.get("FOO"), Some(&1));
        let odd = s.condition(&format!("GATA1{sep}FOO")).expect("kept");
        assert_eq!(odd.targets, vec!["FOO", "GATA1"]); // sorted
        assert_eq!(odd.target_vars, vec![None, Some(2)]);
        assert!(r.to_string().contains("FOO (1 cells)"));
    }
}

#[test]
fn too_few_cells_and_qc_are_reported() {
    let genes = ["A", "B", "MT-1"];
    let labels = [
        Some("control"),
        Some("control"),
        Some("control"),
        Some("A"),
        Some("A"),
        Some("B"),
    ];
    let mut x = counts(6, 3);
    x.row_mut(1).fill(0.0); // empty cell
    x[[2, 2]] = 100.0; // mito-heavy cell
    let ad = toy(&labels, "gene", &genes, x);
    let o = ScreenOptions {
        qc: QcOptions {
            min_counts: Some(1.0),
            max_mito_fraction: Some(0.5),
            min_cells_per_condition: 2,
            ..Default::default()
        },
        ..Default::default()
    };
    let s = Screen::from_anndata(&ad, o).expect("screen");
    let r = s.report();
    assert_eq!((r.qc_low_counts, r.qc_high_mito), (1, 1));
    assert_eq!(s.control().expect("ctrl").cells, vec![0]);
    let names: Vec<&str> = r.too_few_cells.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(names, vec!["control", "B"]);
    assert!(s.condition("B").expect("B").excluded && !s.condition("A").expect("A").excluded);
    // No MT- genes: a mito filter is skipped and says so.
    let ad2 = toy(&labels, "gene", &["A", "B", "C"], counts(6, 3));
    let o = ScreenOptions {
        qc: QcOptions {
            max_mito_fraction: Some(0.1),
            min_cells_per_condition: 1,
            ..Default::default()
        },
        ..Default::default()
    };
    assert!(
        Screen::from_anndata(&ad2, o)
            .expect("screen")
            .report()
            .mito_filter_skipped
    );
    // No perturbation column at all: a clear error.
    let mut ad3 = ad2.clone();
    ad3.obs.columns.clear();
    let e = Screen::from_anndata(&ad3, opts(1))
        .err()
        .expect("error")
        .to_string();
    assert!(e.contains("perturbation"), "{e}");
}

fn to_sparse(x: &Array2<f32>, format: SparseFormat) -> SparseMatrix {
    let (n, g) = x.dim();
    let (major, minor) = if format == SparseFormat::Csr {
        (n, g)
    } else {
        (g, n)
    };
    let (mut data, mut idx, mut ptr) = (vec![], vec![], vec![0i64]);
    for a in 0..major {
        for b in 0..minor {
            let v = if format == SparseFormat::Csr {
                x[[a, b]]
            } else {
                x[[b, a]]
            };
            if v != 0.0 {
                data.push(v as f64);
                idx.push(b as i64);
            }
        }
        ptr.push(data.len() as i64);
    }
    SparseMatrix {
        format,
        shape: (n, g),
        data: SparseData::F64(data),
        indices: SparseIndex::I64(idx),
        indptr: SparseIndex::I64(ptr),
    }
}

#[test]
fn dense_counts_agree_across_storage_and_normalise() {
    let labels: Vec<Option<&str>> = (0..9)
        .map(|i| Some(if i % 3 == 0 { "control" } else { "A" }))
        .collect();
    let x = counts(9, 4);
    let dense = toy(&labels, "perturbation", &["A", "B", "C", "D"], x.clone());
    let mut csr = dense.clone();
    csr.x = Some(Matrix::Sparse(to_sparse(&x, SparseFormat::Csr)));
    let mut csc = dense.clone();
    csc.x = Some(Matrix::Sparse(to_sparse(&x, SparseFormat::Csc)));
    let mut ints = dense.clone();
    ints.x = Some(Matrix::Dense(DenseArray::I64(ArrayD::from_shape_fn(
        vec![9, 4],
        |ix| x[[ix[0], ix[1]]] as i64,
    ))));
    let cells = [8, 0, 3];
    let genes = [3, 1];
    let want = Array2::from_shape_fn((3, 2), |(i, j)| x[[cells[i], genes[j]]]);
    for ad in [&dense, &csr, &csc, &ints] {
        let s = Screen::from_anndata(ad, opts(1)).expect("screen");
        assert_eq!(s.dense_counts(&cells, &genes).expect("block"), want);
        let y = s.normalized(&cells, &genes).expect("norm");
        for i in 0..3 {
            let lib: f32 = x.row(cells[i]).sum();
            for j in 0..2 {
                assert!((y[[i, j]] - (want[[i, j]] * 1e4 / lib).ln_1p()).abs() < 1e-4);
            }
        }
        assert!(s.dense_counts(&[9], &genes).is_err());
    }
}

#[test]
fn simulated_count_screen_splits_and_gene_selection() {
    let cfg = SimulationConfig {
        genes: 60,
        perturbed: 10,
        doubles: 20,
        cells_per_condition: 40,
        counts: true,
        seed: 2,
        ..Default::default()
    };
    let sim = simulate_screen(&cfg, &|_, _| {}).expect("sim");
    let s = Screen::from_anndata(&sim.adata, opts(40)).expect("screen");
    assert_eq!(s.report().separator, '+');
    assert_eq!(s.conditions().len(), 31);
    assert_eq!(s.of_kind(ConditionKind::Double).len(), 20);
    assert!(s.report().unknown_targets.is_empty() && s.report().too_few_cells.is_empty());
    let so = SplitOptions {
        n_folds: 4,
        ..Default::default()
    };
    let split = s.split(1, &so).expect("split");
    assert_eq!(split.val.len(), 4); // min(20, 20 / 5)
    assert_eq!(split.test.len(), 4); // 16 remaining doubles over 4 folds
    let sel = s.select_genes(&split, 25).expect("genes");
    assert_eq!(sel.genes.len(), 25);
    assert_eq!(sel.n_train_perturbed + sel.n_test_perturbed, 10);
    assert_eq!(sel.n_hvg, 15);
    // Test-perturbed genes come first.
    let test_genes: std::collections::HashSet<usize> = split
        .test
        .iter()
        .flat_map(|&i| s.conditions()[i].target_vars.iter().flatten().copied())
        .collect();
    assert!(sel.genes[..sel.n_test_perturbed]
        .iter()
        .all(|g| test_genes.contains(g)));
    let uniq: std::collections::HashSet<_> = sel.genes.iter().collect();
    assert_eq!(uniq.len(), 25);
}

/// Highly variable genes as scanpy's `highly_variable_genes(flavor="seurat")`
/// picks them (reference from `tests/data/make_hvg_seurat.py`): the
/// normalised dispersions agree and the top-n sets are equal for several n.
#[test]
fn hvg_matches_scanpy_seurat_flavor() {
    use datasets::screen::top_dispersed;
    let f = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/hvg_seurat.h5ad");
    let a = datasets::anndata::read_h5ad(f).unwrap();
    let s = Screen::from_anndata(&a, opts(1)).unwrap();
    let cells: Vec<usize> = (0..a.n_obs()).collect();
    let z = s.dispersions(&cells);
    let var_f64 = |name: &str| -> Vec<f64> {
        match a.var.column(name).unwrap() {
            Column::Array(d) => d.to_f64().unwrap().iter().copied().collect(),
            other => panic!("{name}: {other:?}"),
        }
    };
    let want = var_f64("scanpy_dispersions_norm");
    assert_eq!(z.len(), want.len());
    let mut n_single_bin = 0;
    for (g, (&ours, &theirs)) in z.iter().zip(&want).enumerate() {
        if theirs.is_nan() {
            assert_eq!(
                ours,
                f64::NEG_INFINITY,
                "gene {g}: scanpy has no dispersion"
            );
        } else {
            assert!(
                (ours - theirs).abs() <= 1e-6 * theirs.abs().max(1.0),
                "gene {g}: ours {ours} vs scanpy {theirs}"
            );
        }
        n_single_bin += usize::from(theirs == 1.0);
    }
    assert!(n_single_bin >= 1, "fixture exercises the one-gene-bin rule");
    let n_top: Vec<i64> = match &a.uns["n_top"] {
        datasets::anndata::Value::Array(d) => {
            d.to_f64().unwrap().iter().map(|&x| x as i64).collect()
        }
        other => panic!("uns/n_top: {other:?}"),
    };
    assert!(!n_top.is_empty());
    for n in n_top {
        let hv: Vec<usize> = match a.var.column(&format!("scanpy_hv_{n}")).unwrap() {
            Column::Array(DenseArray::Bool(b)) => b
                .iter()
                .enumerate()
                .filter(|(_, &x)| x)
                .map(|(i, _)| i)
                .collect(),
            other => panic!("scanpy_hv_{n}: {other:?}"),
        };
        let mut ours = top_dispersed(&z, n as usize, &[]);
        ours.sort_unstable();
        assert_eq!(ours, hv, "top {n} highly variable genes");
    }
}
