//! Property-based round trips of our writer and reader: any AnnData built
//! from the supported element types reads back equal.
use std::collections::BTreeMap;

use datasets::anndata::*;
use ndarray::ArrayD;
use proptest::prelude::*;

fn csr_strategy(n: usize, m: usize) -> impl Strategy<Value = SparseMatrix> {
    (
        proptest::collection::vec(proptest::option::weighted(0.3, -1e6f32..1e6f32), n * m),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(move |(cells, csc, wide)| {
            let (major, minor) = if csc { (m, n) } else { (n, m) };
            let mut data = Vec::new();
            let mut indices = Vec::new();
            let mut indptr = vec![0i64];
            for a in 0..major {
                for b in 0..minor {
                    let (i, j) = if csc { (b, a) } else { (a, b) };
                    if let Some(v) = cells[i * m + j] {
                        data.push(f64::from(v));
                        indices.push(b as i64);
                    }
                }
                indptr.push(indices.len() as i64);
            }
            let (indices, indptr) = if wide {
                (SparseIndex::I64(indices), SparseIndex::I64(indptr))
            } else {
                (
                    SparseIndex::I32(indices.iter().map(|&x| x as i32).collect()),
                    SparseIndex::I32(indptr.iter().map(|&x| x as i32).collect()),
                )
            };
            let data = if wide {
                SparseData::F64(data)
            } else {
                SparseData::F32(data.iter().map(|&x| x as f32).collect())
            };
            SparseMatrix {
                format: if csc {
                    SparseFormat::Csc
                } else {
                    SparseFormat::Csr
                },
                shape: (n, m),
                data,
                indices,
                indptr,
            }
        })
}

fn label() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 +_éß中]{0,6}"
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        (-1e9f64..1e9).prop_map(|x| Value::Scalar(Scalar::F64(x))),
        any::<i64>().prop_map(|x| Value::Scalar(Scalar::I64(x))),
        any::<bool>().prop_map(|x| Value::Scalar(Scalar::Bool(x))),
        label().prop_map(|s| Value::Scalar(Scalar::String(s))),
        proptest::collection::vec(any::<i32>(), 0..5).prop_map(|v| Value::Array(DenseArray::I32(
            ArrayD::from_shape_vec(vec![v.len()], v).unwrap()
        ))),
        proptest::collection::vec(label(), 1..4).prop_map(|v| Value::Array(DenseArray::strings(v))),
    ]
}

fn uns_value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 12, 4, |inner| {
        proptest::collection::btree_map("[a-z]{1,5}", inner, 0..4).prop_map(Value::Dict)
    })
}

fn anndata() -> impl Strategy<Value = AnnData> {
    (1usize..8, 1usize..6).prop_flat_map(|(n, m)| {
        (
            prop_oneof![
                csr_strategy(n, m).prop_map(Matrix::Sparse),
                proptest::collection::vec(-100i32..100, n * m).prop_map(move |v| Matrix::Dense(
                    DenseArray::I32(ArrayD::from_shape_vec(vec![n, m], v).unwrap())
                )),
                proptest::collection::vec(
                    any::<f64>().prop_filter("finite", |x| x.is_finite()),
                    n * m
                )
                .prop_map(move |v| Matrix::Dense(DenseArray::F64(
                    ArrayD::from_shape_vec(vec![n, m], v).unwrap()
                ))),
            ],
            proptest::collection::vec(proptest::option::of("[abc]{1,2}"), n),
            any::<bool>(),
            proptest::collection::vec((any::<i64>(), any::<bool>()), n),
            proptest::collection::vec((any::<bool>(), any::<bool>()), n),
            proptest::collection::vec(label(), n),
            proptest::collection::btree_map("[a-z]{1,6}", uns_value(), 0..4),
            csr_strategy(n, m),
        )
            .prop_map(move |(x, cats, ordered, nints, nbools, strs, uns, layer)| {
                let mut obs = DataFrame::new((0..n).map(|i| format!("cell-{i}")).collect());
                let mut c = Column::categorical_from_labels(&cats);
                if let Column::Categorical { ordered: o, .. } = &mut c {
                    *o = ordered;
                }
                obs.set_column("perturbation", c);
                obs.set_column(
                    "nint",
                    Column::NullableInt {
                        values: nints.iter().map(|p| if p.1 { 0 } else { p.0 }).collect(),
                        mask: nints.iter().map(|p| p.1).collect(),
                    },
                );
                obs.set_column(
                    "nbool",
                    Column::NullableBool {
                        values: nbools.iter().map(|p| p.0 && !p.1).collect(),
                        mask: nbools.iter().map(|p| p.1).collect(),
                    },
                );
                obs.set_column("label", Column::Array(DenseArray::strings(strs)));
                let var = DataFrame::new((0..m).map(|j| format!("gene{j}")).collect());
                let mut layers = BTreeMap::new();
                layers.insert("counts".to_string(), Matrix::Sparse(layer));
                AnnData {
                    x: Some(x),
                    obs,
                    var,
                    layers,
                    uns,
                    ..Default::default()
                }
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn write_then_read_is_identity(ad in anndata()) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rt.h5ad");
        write_h5ad(&ad, &p).unwrap();
        let back = read_h5ad(&p).unwrap();
        prop_assert_eq!(back, ad);
    }
}
