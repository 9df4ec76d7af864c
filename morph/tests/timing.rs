//! Timing probe (ignored): where a training step spends its time.
//! `cargo test -p morph --test timing -- --ignored --nocapture`
use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use datasets::molbatch::{MolRecord, MolSet, MolVocab};
use morph::config::MorphConfig;
use morph::interpolant::{collate, make_batch, Prior};
use morph::model::{MorphNet, NetDims};
use std::time::Instant;

fn qm9_like(n_mol: usize) -> MolSet {
    let vocab = MolVocab::new(
        vec!["H".into(), "C".into(), "N".into(), "O".into(), "F".into()],
        vec![0],
    );
    let recs = (0..n_mol)
        .map(|k| {
            let n = 10 + k % 19;
            let pos = ndarray::Array2::from_shape_fn((n, 3), |(i, d)| {
                ((i * 7 + d * 3 + k) % 11) as f64 / 4.0 - 1.2
            });
            MolRecord {
                types: (0..n).map(|i| i % 4).collect(),
                charges: vec![0; n],
                pos,
                bonds: (1..n).map(|i| (i - 1, i, 1)).collect(),
                properties: Default::default(),
            }
        })
        .collect();
    MolSet::new(vocab, recs).unwrap()
}

#[test]
#[ignore]
fn step_breakdown() {
    let dev = Device::Cpu;
    let mut set = qm9_like(64);
    let stats = set.stats().unwrap();
    set.normalise(stats.coord_std);
    let cfg = MorphConfig::preset("quick").unwrap();
    let prior = Prior::new(&stats, 5).unwrap();
    let vm = VarMap::new();
    let dims = NetDims {
        n_types: 5,
        n_charges: 1,
        n_bonds: 5,
        hidden: cfg.net.hidden,
        n_layers: cfg.net.n_layers,
        n_mix: 10,
        coords_range: 15.0,
        agg_norm: 10.0,
        bounded_mixture: true,
    };
    let net = MorphNet::new(dims, VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
    let recs: Vec<_> = set.records.iter().take(cfg.train.batch_size).collect();
    let props = vec![None; recs.len()];
    for rep in 0..3 {
        let t0 = Instant::now();
        let samples = make_batch(&recs, &props, &prior, &cfg.flow, 0.1, rep);
        let t1 = Instant::now();
        let b = collate(&samples, &dev).unwrap();
        let t2 = Instant::now();
        let out = net.forward(&b.input).unwrap();
        let t3 = Instant::now();
        let l = morph::loss::compute(&net, &out, &b).unwrap();
        let t4 = Instant::now();
        let _g = l.total.backward().unwrap();
        let t5 = Instant::now();
        eprintln!(
            "n={} interp {:?} collate {:?} fwd {:?} loss {:?} bwd {:?}",
            b.input.mask.dim(1).unwrap(),
            t1 - t0,
            t2 - t1,
            t3 - t2,
            t4 - t3,
            t5 - t4
        );
    }
}
