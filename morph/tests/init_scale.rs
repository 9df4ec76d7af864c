//! A paper-size network (EGNN 9 layers × 256) at its seeded initialisation,
//! on a real QM9 batch (tests/data/qm9_64.sdf: the first 64 records of a
//! random 2 000-molecule QM9 subset), gives finite losses of a sane size.
//! Before the per-layer normalisation of the node features the hidden state
//! grew geometrically with depth and the first step's loss was ~1e8
//! (bond 5e8, sub_e 7e7) with a gradient norm ~5e9.
use candle_core::Device;
use datasets::molbatch::MolSet;
use morph::config::MorphConfig;
use morph::io::ModelMeta;
use morph::train::Trainer;
use std::path::Path;

fn qm9() -> (MolSet, datasets::molbatch::MolStats) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/qm9_64.sdf");
    let mols = molecules::read_molecules_path(&path).expect("read fixture");
    assert_eq!(mols.len(), 64);
    let mut set = MolSet::from_molecules(&mols, None).expect("encode");
    let stats = set.stats().expect("stats");
    set.normalise(stats.coord_std);
    (set, stats)
}

#[test]
fn paper_size_net_has_sane_losses_at_init() {
    let (set, stats) = qm9();
    let mut cfg = MorphConfig::preset("paper").expect("preset");
    assert_eq!((cfg.net.hidden, cfg.net.n_layers), (256, 9));
    cfg.train.batch_size = 16;
    let meta = ModelMeta::new(cfg, &set, &stats).expect("meta");
    let mut tr = Trainer::new(meta, &Device::Cpu).expect("trainer");
    for (step, chunk) in [(0usize, 0..16usize), (1, 16..32)] {
        let idx: Vec<usize> = chunk.collect();
        let log = tr.step(&set, &idx, step).expect("step");
        assert!(
            log.loss.is_finite() && log.loss < 1e3,
            "step {step}: total loss {} ({:?})",
            log.loss,
            log.terms
        );
        for (name, v) in &log.terms {
            assert!(v.is_finite() && *v < 2e2, "step {step}: loss_{name} = {v}");
        }
        assert!(
            log.grad_norm.is_finite() && log.grad_norm < 1e4,
            "step {step}: gradient norm {}",
            log.grad_norm
        );
    }
}

/// The insertion-bond loss on the list of real (new atom, kept atom) pairs
/// equals the padded `[b, q, n]` formulation with weight `q_mask · keep`.
#[test]
fn sparse_insertion_bond_loss_matches_padded() {
    use candle_core::{DType, D};
    use candle_nn::{VarBuilder, VarMap};
    use morph::interpolant::{collate, make_batch, Prior};
    use morph::model::MorphNet;
    let (set, stats) = qm9();
    let cfg = MorphConfig::preset("tiny").expect("preset");
    let meta = ModelMeta::new(cfg.clone(), &set, &stats).expect("meta");
    let dev = Device::Cpu;
    let vm = VarMap::new();
    let net =
        MorphNet::new(meta.dims(), VarBuilder::from_varmap(&vm, DType::F32, &dev)).expect("net");
    let prior = Prior::new(&stats, cfg.flow.prior_extra).expect("prior");
    let recs: Vec<_> = set.records.iter().take(24).collect();
    let props = vec![None; recs.len()];
    let mut checked = 0;
    for seed in 0..4u64 {
        let samples = make_batch(&recs, &props, &prior, &cfg.flow, 0.0, seed);
        let batch = collate(&samples, &dev).expect("collate");
        let out = net.forward(&batch.input).expect("forward");
        let sparse = morph::loss::insertion_bond_loss(&net, &out, &batch)
            .expect("sparse")
            .to_scalar::<f32>()
            .expect("scalar");
        let ib = net
            .insertion_bonds(&out, &batch.q_spawn, &batch.q_pos, &batch.q_type)
            .expect("dense");
        let nll = morph::loss::nll_classes(&ib, &batch.q_bonds).expect("nll"); // [b, q, n]
        let w = batch
            .q_mask
            .unsqueeze(2)
            .and_then(|m| m.broadcast_mul(&batch.keep.unsqueeze(1)?))
            .expect("w");
        let num = nll
            .mul(&w)
            .and_then(|t| t.sum(D::Minus1)?.sum(D::Minus1))
            .expect("num");
        let den = w
            .sum(D::Minus1)
            .and_then(|t| t.sum(D::Minus1)?.clamp(1.0, f64::MAX))
            .expect("den");
        let dense = num
            .div(&den)
            .and_then(|t| t.mean_all()?.to_scalar::<f32>())
            .expect("dense value");
        assert!(
            (sparse - dense).abs() <= 1e-5 * dense.abs().max(1.0),
            "seed {seed}: sparse {sparse} vs padded {dense}"
        );
        if dense > 0.0 {
            checked += 1;
        }
    }
    assert!(checked > 0, "no batch had insertions");
}
