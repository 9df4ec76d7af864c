//! Flow expansion of a (tiny) trained Morph model through the library:
//! `MorphFlow` as a `TrainableFlow` (copies independent, graphs share
//! weights, centred noise), `fe_morph` / `actflow_morph` reproducible from the
//! seed with finite, consistent metrics and a loadable adapted model.
mod common;

use candle_core::{Device, Tensor};
use molecules::metrics::Protocol;
use molecules::verify::Stability;
use morph::expand::flow::{Flow, TrainableFlow};
use morph::expand::molecular::{
    actflow_morph, fe_morph, fingerprint, select_designs, vendi_tanimoto, ActFlowMode,
    ExpandMetrics, MolGraph, MorphActFlowConfig, MorphFeConfig, MorphFlow,
};
use rand::SeedableRng;

fn in_range(m: &ExpandMetrics) {
    assert!((0.0..=1.0).contains(&m.validity), "{m:?}");
    assert!(
        (0.0..=1.0).contains(&m.coverage) && m.coverage <= m.validity + 1e-12,
        "{m:?}"
    );
    assert!(m.vendi.is_finite() && m.vendi >= 0.0, "{m:?}");
    assert!(m.vendi_fp.is_finite() && m.vendi_fp >= 0.0, "{m:?}");
    assert!(
        m.vendi_fp <= m.distinct_valid.max(1) as f64 + 1e-9 || m.distinct_valid == 0,
        "{m:?}"
    );
    if let Some(k) = m.novel_valid {
        assert!(k <= m.distinct_valid, "{m:?}");
    }
}

#[test]
fn morph_flow_copies_and_shared_graphs() {
    let tmp = tempfile::tempdir().expect("tmp");
    common::trained(tmp.path(), 5);
    let dev = Device::Cpu;
    let model = morph::io::ModelDir::load(tmp.path(), &dev).expect("load");
    let w = candle_core::safetensors::load(tmp.path().join("model.safetensors"), &dev).expect("w");
    let g = MolGraph {
        types: vec![2, 1, 0],
        charges: vec![0; 3],
        bonds: vec![0, 1, 0, 1, 0, 1, 0, 1, 0],
    };
    let f = MorphFlow::from_weights(
        model.meta.dims(),
        model.meta.config.net.backbone_spec(),
        &w,
        g.clone(),
        true,
        &dev,
    )
    .expect("flow");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let x = f.noise(5, &mut rng).expect("noise");
    assert_eq!(x.dims(), [5, 3, 3]);
    let com = x
        .mean(1)
        .expect("mean")
        .abs()
        .expect("abs")
        .max_all()
        .expect("max");
    assert!(
        com.to_scalar::<f32>().expect("s") < 1e-5,
        "noise not centred"
    );
    let t = Tensor::new(&[0.3f32; 5], &dev).expect("t");
    let v0 = f
        .velocity(&x, &t)
        .expect("v")
        .flatten_all()
        .expect("f")
        .to_vec1::<f32>()
        .expect("v");
    assert!(v0.iter().all(|v| v.is_finite()));
    let frozen = f.frozen_copy().expect("frozen");
    let other = f
        .with_graph(MolGraph {
            types: vec![1, 1],
            charges: vec![0, 0],
            bonds: vec![0, 2, 2, 0],
        })
        .expect("g2");
    // shift every parameter of `f`
    for v in f.vars() {
        v.set(&(v.as_tensor() + 0.05).expect("add")).expect("set");
    }
    let v1 = f
        .velocity(&x, &t)
        .expect("v")
        .flatten_all()
        .expect("f")
        .to_vec1::<f32>()
        .expect("v");
    let vf = frozen
        .velocity(&x, &t)
        .expect("v")
        .flatten_all()
        .expect("f")
        .to_vec1::<f32>()
        .expect("v");
    assert_ne!(v0, v1, "parameters did not change the velocity");
    assert_eq!(v0, vf, "the frozen copy followed the trainable model");
    let wo = other.weights().expect("w");
    let wf = f.weights().expect("w");
    for (k, t) in &wf {
        let a = t.flatten_all().expect("a").to_vec1::<f32>().expect("a");
        let b = wo[k].flatten_all().expect("b").to_vec1::<f32>().expect("b");
        assert_eq!(a, b, "graphs must share the weights ({k})");
    }
}

#[test]
fn fe_and_actflow_on_a_tiny_model() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("model");
    common::trained(&src, 5);
    let dev = Device::Cpu;
    let ver = Stability {
        protocol: Protocol::Edm,
    };
    let mut fe_cfg = MorphFeConfig::from_toml(
        "n_graphs = 2\nn_graph_candidates = 4\nn_eval = 6\node_steps = 5\nsample_steps = 6\n[fe]\niterations = 1\n[fe.expand]\nn_samples = 6\nbatch = 6\nn_steps = 4\n[fe.project]\nn_samples = 6\nbatch = 6\nn_steps = 4\n[fe.project_mode.smoothed]\nscale = 0.1\nn_draws = 2\nfloor = 0.05\n",
    )
    .expect("toml");
    fe_cfg.seed = 3;
    let mut reports = Vec::new();
    for o in ["fe_a", "fe_b"] {
        let r = fe_morph(
            &src,
            None,
            &ver,
            &fe_cfg,
            &tmp.path().join(o),
            &dev,
            &mut |_, _, _| {},
        )
        .expect("fe");
        in_range(&r.before);
        in_range(&r.after);
        reports.push((r.before, r.after));
        morph::io::ModelDir::load(&tmp.path().join(o), &dev).expect("adapted model loads");
    }
    assert_eq!(reports[0], reports[1], "FE not reproducible from its seed");
    let bonds = Stability {
        protocol: Protocol::Bonds,
    };
    let af_cfg = MorphActFlowConfig {
        rounds: 1,
        n_candidates: 6,
        max_accept: 3,
        train_steps: 2,
        batch_size: 4,
        n_eval: 6,
        sample_steps: 6,
        seed: 9,
        ..Default::default()
    };
    let r = actflow_morph(
        &src,
        None,
        None,
        &bonds,
        &af_cfg,
        &tmp.path().join("af"),
        &dev,
        &mut |_, _, _| {},
    )
    .expect("actflow");
    in_range(&r.before);
    in_range(&r.after);
    let m = morph::io::ModelDir::load(&tmp.path().join("af"), &dev).expect("load");
    assert_eq!(m.meta.trained_steps, 5 + 2);
    // bad settings are refused with the field named
    let bad = MorphActFlowConfig {
        rounds: 0,
        ..af_cfg
    };
    let e = actflow_morph(
        &src,
        None,
        None,
        &bonds,
        &bad,
        &tmp.path().join("x"),
        &dev,
        &mut |_, _, _| {},
    )
    .err()
    .expect("must fail")
    .to_string();
    assert!(e.contains("rounds"), "{e}");
}

/// The round's selection rule: Rec-F keeps verified candidates only, Rec-NF
/// keeps unverified ones too, ActFlow keeps verified candidates with a new
/// graph class; every mode respects the per-round budget.
#[test]
fn baselines_select_by_the_filter() {
    let verified = [false, true, false, true, true];
    let keys = [Some(1), Some(2), Some(3), Some(2), None];
    let mut known = std::collections::HashSet::new();
    assert_eq!(
        select_designs(ActFlowMode::RecF, &verified, &keys, &mut known, 10),
        [1, 3, 4]
    );
    assert_eq!(
        select_designs(ActFlowMode::RecNf, &verified, &keys, &mut known, 10),
        [0, 1, 2, 3, 4]
    );
    assert!(known.is_empty(), "baselines have no novelty requirement");
    assert_eq!(
        select_designs(ActFlowMode::RecNf, &verified, &keys, &mut known, 2),
        [0, 1]
    );
    assert_eq!(
        select_designs(ActFlowMode::RecF, &verified, &keys, &mut known, 2),
        [1, 3]
    );
    // ActFlow: verified, class key present and new (2 only once)
    assert_eq!(
        select_designs(ActFlowMode::ActFlow, &verified, &keys, &mut known, 10),
        [1]
    );
    assert!(known.contains(&2));
    assert!(select_designs(ActFlowMode::ActFlow, &verified, &keys, &mut known, 10).is_empty());
}

/// Rec-NF / Rec-F through the round loop: Rec-F adds only verified designs,
/// Rec-NF fills the budget whatever the verifier says; the report names the
/// method; runs are reproducible.
#[test]
fn baselines_through_the_round_loop() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("model");
    common::trained(&src, 5);
    let dev = Device::Cpu;
    let ver = Stability {
        protocol: Protocol::Bonds,
    };
    let base = MorphActFlowConfig {
        rounds: 2,
        n_candidates: 8,
        max_accept: 5,
        train_steps: 2,
        batch_size: 4,
        n_eval: 6,
        sample_steps: 6,
        seed: 5,
        ..Default::default()
    };
    let mut any_unverified = false;
    for mode in [ActFlowMode::RecNf, ActFlowMode::RecF] {
        let cfg = MorphActFlowConfig {
            mode,
            ..base.clone()
        };
        let run = |o: &str| {
            actflow_morph(
                &src,
                None,
                None,
                &ver,
                &cfg,
                &tmp.path().join(o),
                &dev,
                &mut |_, _, _| {},
            )
            .expect("baseline")
        };
        let r = run(&format!("{}_a", mode.name()));
        assert_eq!(r.method, mode.name());
        in_range(&r.before);
        in_range(&r.after);
        assert!(r.before.novel_valid.is_none(), "no training set given");
        let r2 = run(&format!("{}_b", mode.name()));
        assert_eq!(
            (r.before, r.after),
            (r2.before, r2.after),
            "not reproducible"
        );
        for round in r.details["rounds"].as_array().expect("rounds") {
            let acc = round["accepted"].as_u64().expect("accepted");
            let accv = round["accepted_verified"].as_u64().expect("verified");
            let valid = round["valid"].as_u64().expect("valid");
            match mode {
                ActFlowMode::RecNf => {
                    assert_eq!(acc, 5, "Rec-NF keeps every sample up to the budget");
                    any_unverified |= accv < acc;
                }
                _ => {
                    assert_eq!(acc, accv, "Rec-F kept an unverified design");
                    assert_eq!(acc, valid.min(5));
                }
            }
        }
    }
    // the tiny model makes unstable molecules, so Rec-NF must have kept some
    assert!(any_unverified, "Rec-NF never kept an unverified design");
}

/// Fingerprint Vendi: copies of one molecule count once, two different
/// molecules between one and two, and the fingerprint sees bond orders.
#[test]
fn fingerprint_vendi() {
    let mk = |elements: &[&str], bonds: &[(usize, usize, molecules::BondOrder)]| {
        let els: Vec<molecules::Element> = elements
            .iter()
            .map(|e| molecules::Element::from_symbol(e).expect("element"))
            .collect();
        let n = els.len();
        let mut m = molecules::Molecule::new(els, ndarray::Array2::zeros((n, 3))).expect("mol");
        for &(a, b, o) in bonds {
            m.add_bond(a, b, o).expect("bond");
        }
        m
    };
    use molecules::BondOrder::{Double, Single};
    let ethane = mk(&["C", "C"], &[(0, 1, Single)]);
    let ethene = mk(&["C", "C"], &[(0, 1, Double)]);
    let propanol = mk(
        &["C", "C", "C", "O"],
        &[(0, 1, Single), (1, 2, Single), (2, 3, Single)],
    );
    let (fa, fb, fc) = (
        fingerprint(&ethane),
        fingerprint(&ethene),
        fingerprint(&propanol),
    );
    assert_ne!(fa, fb, "bond orders must change the fingerprint");
    let same = vendi_tanimoto(&[fa.clone(), fa.clone(), fa.clone()]).expect("v");
    assert!((same - 1.0).abs() < 1e-9, "{same}");
    let two = vendi_tanimoto(&[fa.clone(), fc.clone()]).expect("v");
    assert!(two > 1.0 && two <= 2.0 + 1e-9, "{two}");
    let three = vendi_tanimoto(&[fa, fb, fc]).expect("v");
    assert!(three > two && three <= 3.0 + 1e-9, "{three}");
    assert_eq!(vendi_tanimoto(&[]).expect("v"), 0.0);
}
