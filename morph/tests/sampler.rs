//! Insertion/deletion mechanics of the rate integrator in isolation (hand-set
//! network outputs), plus an end-to-end tiny train → sample run checking size
//! limits and scaffold preservation.
use candle_core::Device;
use datasets::molbatch::{MolRecord, MolSet, MolVocab};
use morph::config::{FlowConfig, MorphConfig};
use morph::interpolant::Prior;
use morph::sampler::{finish_step, plan_step, sample_batch, HostOut, Limits, SampleSpec, State};
use rand::SeedableRng;
use std::collections::BTreeMap;

const DIMS: (usize, usize, usize, usize) = (3, 2, 5, 2); // types, charges, bonds, mixture

/// Outputs for one molecule of `n` atoms: nothing happens unless changed.
fn quiet_out(s: &State) -> HostOut {
    let n = s.n();
    let (a, c, e, k) = DIMS;
    HostOut {
        n,
        dims: DIMS,
        x1: s.x.iter().flat_map(|p| p.map(|v| v as f32)).collect(),
        type_logits: vec![0.0; n * a],
        charge_logits: (0..n * c)
            .map(|i| if i % c == 0 { 5.0 } else { 0.0 })
            .collect(),
        bond_logits: vec![0.0; n * n * e],
        sub_a: vec![-1e4; n],
        del: vec![-1e4; n],
        sub_e: vec![-1e4; n * n],
        ins_rate: vec![0.0; n],
        mix_logits: vec![0.0; n * k],
        mix_mean: vec![0.0; n * k * 3],
        mix_logstd: vec![-3.0; n * k],
        mix_type: vec![0.0; n * k * a],
        mix_charge: vec![0.0; n * k * c],
    }
}

fn chain(n: usize) -> State {
    let mut s = State::default();
    for i in 0..n {
        let bonds: Vec<usize> = (0..i).map(|j| usize::from(j + 1 == i)).collect();
        s.push([1.5 * i as f64, 0.0, 0.0], i % 3, 0, &bonds);
    }
    s
}

#[test]
fn forced_deletion_removes_exactly_that_atom() {
    let mut s = chain(6);
    let before = s.clone();
    let mut h = quiet_out(&s);
    h.del[3] = 1e4;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    // dt large enough that σ(del)·λ·dt ≥ 1.
    let (keep, ins) = plan_step(
        &mut s,
        &h,
        0,
        0.5,
        1.0,
        &FlowConfig::default(),
        Limits {
            min_atoms: 2,
            cap: 20,
        },
        &mut rng,
    );
    assert_eq!(keep, vec![true, true, true, false, true, true]);
    assert!(ins.is_empty());
    finish_step(&mut s, &keep, &ins, &[]);
    assert_eq!(s.n(), 5);
    // Remaining atoms keep their types in order and their mutual bonds.
    let kept = [0, 1, 2, 4, 5];
    assert_eq!(s.a, kept.iter().map(|&i| before.a[i]).collect::<Vec<_>>());
    for (p, &i) in kept.iter().enumerate() {
        for (q, &j) in kept.iter().enumerate() {
            assert_eq!(s.bond(p, q), before.bond(i, j));
        }
    }
    // Relative geometry is untouched (x1 = x, so no motion), only re-centred.
    let d = |st: &State, i: usize, j: usize| {
        (0..3)
            .map(|k| (st.x[i][k] - st.x[j][k]).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    assert!((d(&s, 0, 3) - d(&before, 0, 4)).abs() < 1e-9);
}

#[test]
fn deletions_respect_the_minimum_size() {
    let mut s = chain(4);
    let mut h = quiet_out(&s);
    h.del.iter_mut().for_each(|d| *d = 1e4);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let (keep, ins) = plan_step(
        &mut s,
        &h,
        0,
        0.5,
        1.0,
        &FlowConfig::default(),
        Limits {
            min_atoms: 2,
            cap: 20,
        },
        &mut rng,
    );
    finish_step(&mut s, &keep, &ins, &[]);
    assert_eq!(s.n(), 2);
}

#[test]
fn insertions_land_near_their_spawn_atom_and_respect_the_cap() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
    for spawn in 0..5 {
        let mut s = chain(5);
        let mut h = quiet_out(&s);
        h.ins_rate[spawn] = 1e6;
        let (_, _, _, k) = DIMS;
        for comp in 0..k {
            let o = spawn * k + comp;
            for d in 0..3 {
                // Mixture mean 1.0 above the spawn atom's predicted position.
                h.mix_mean[o * 3 + d] = h.x1[spawn * 3 + d] + if d == 1 { 1.0 } else { 0.0 };
            }
        }
        let t = 0.9;
        let (keep, ins) = plan_step(
            &mut s,
            &h,
            0,
            t,
            0.05,
            &FlowConfig::default(),
            Limits {
                min_atoms: 2,
                cap: 20,
            },
            &mut rng,
        );
        assert_eq!(ins.len(), 1);
        assert_eq!(ins[0].spawn, spawn);
        let sx = s.x[spawn];
        let bonds = vec![vec![0; 5]];
        finish_step(&mut s, &keep, &ins, &bonds);
        assert_eq!(s.n(), 6);
        // Distance of the new atom to its spawn atom ≈ 1 (σ = e^-3, noise (1−t)·0.25).
        let shift: [f64; 3] = [0, 1, 2].map(|d| s.x[spawn][d] - sx[d]);
        let new = [0, 1, 2].map(|d| s.x[5][d] - shift[d]);
        let dist = (0..3).map(|d| (new[d] - sx[d]).powi(2)).sum::<f64>().sqrt();
        assert!((dist - 1.0).abs() < 0.3, "spawn {spawn}: distance {dist}");
    }
    // Cap: every atom wants to insert but only 2 slots are left.
    let mut s = chain(5);
    let mut h = quiet_out(&s);
    h.ins_rate.iter_mut().for_each(|r| *r = 1e6);
    let (keep, ins) = plan_step(
        &mut s,
        &h,
        0,
        0.5,
        0.5,
        &FlowConfig::default(),
        Limits {
            min_atoms: 2,
            cap: 7,
        },
        &mut rng,
    );
    let b = vec![vec![0; 5]; ins.len()];
    finish_step(&mut s, &keep, &ins, &b);
    assert_eq!(s.n(), 7);
}

fn toy_set() -> MolSet {
    let vocab = MolVocab::new(vec!["H".into(), "C".into(), "O".into()], vec![0, 1]);
    let mk = |n: usize, gap: f64| {
        let mut pos = ndarray::Array2::zeros((n, 3));
        let mut types = vec![1; n];
        let mut bonds = Vec::new();
        for i in 0..n {
            pos[[i, 0]] = 1.5 * (i as f64 * 0.9).cos() * (i as f64);
            pos[[i, 1]] = 1.5 * (i as f64 * 0.9).sin();
            if i % 3 == 2 {
                types[i] = 0;
            }
            if i > 0 {
                bonds.push((i - 1, i, 1));
            }
        }
        types[0] = 2;
        MolRecord {
            types,
            charges: vec![0; n],
            pos,
            bonds,
            properties: BTreeMap::from([("gap".to_string(), gap)]),
        }
    };
    let recs = (0..12)
        .map(|k| mk(4 + k % 4, 0.2 + 0.01 * k as f64))
        .collect();
    MolSet::new(vocab, recs).expect("toy set")
}

#[test]
fn tiny_fit_then_sample_with_limits_and_scaffold() {
    let dev = Device::Cpu;
    let mut set = toy_set();
    let stats = set.stats().expect("stats");
    set.normalise(stats.coord_std);
    let mut cfg = MorphConfig::preset("tiny").expect("preset");
    cfg.condition = Some("gap".into());
    cfg.train.steps = 4;
    let dir = tempfile::tempdir().expect("tmp");
    let rep = morph::train::fit(&set, &stats, &cfg, &dev, dir.path(), &mut |_| {}).expect("fit");
    assert_eq!(rep.steps, 4);
    assert!(rep.final_loss.is_finite());
    let model = morph::io::ModelDir::load(dir.path(), &dev).expect("load");
    assert_eq!(model.meta.trained_steps, 4);
    let prior = Prior::new(&model.meta.stats, cfg.flow.prior_extra).expect("prior");
    let limits = Limits {
        min_atoms: 2,
        cap: stats.n_max + 3,
    };
    let spec = SampleSpec {
        steps: 8,
        seed: 5,
        cond: Some((0.5, 2.0)),
        scaffold: None,
        limits,
    };
    let out =
        sample_batch(&model.net, &prior, &cfg.flow, 6, &spec, &dev, &mut |_| {}).expect("sample");
    assert_eq!(out.len(), 6);
    for s in &out {
        assert!(s.n() >= 2 && s.n() <= limits.cap, "size {}", s.n());
        assert!(s.x.iter().flatten().all(|v| v.is_finite()));
    }
    // Scaffold: 3-atom fragment with two bonds, kept in every sample.
    let mut scaffold = State::default();
    scaffold.push([0.0, 0.0, 0.0], 1, 0, &[]);
    scaffold.push([0.5, 0.0, 0.0], 1, 0, &[1]);
    scaffold.push([1.0, 0.2, 0.0], 2, 1, &[0, 2]);
    let spec = SampleSpec {
        steps: 8,
        seed: 9,
        cond: None,
        scaffold: Some(scaffold.clone()),
        limits,
    };
    let out =
        sample_batch(&model.net, &prior, &cfg.flow, 6, &spec, &dev, &mut |_| {}).expect("sample");
    for s in &out {
        // Pinned atoms are never deleted; they stay first, in order.
        assert_eq!(&s.pinned[..3], &[true, true, true]);
        assert_eq!(&s.a[..3], &scaffold.a[..]);
        assert_eq!(&s.c[..3], &scaffold.c[..]);
        for i in 0..3 {
            for j in 0..3 {
                assert_eq!(s.bond(i, j), scaffold.bond(i, j));
            }
        }
        let d = |st: &State, i: usize, j: usize| {
            (0..3)
                .map(|k| (st.x[i][k] - st.x[j][k]).powi(2))
                .sum::<f64>()
                .sqrt()
        };
        assert!((d(s, 0, 2) - d(&scaffold, 0, 2)).abs() < 1e-9);
    }
}

/// Regression (found by a clean CI run): the prior draws sizes up to
/// `n_max + prior_extra`, which can exceed the sampling cap; the initial
/// states must already respect the limits.
#[test]
fn initial_sizes_respect_the_cap_when_the_prior_is_wider() {
    let set = toy_set();
    let stats = set.stats().expect("stats");
    let prior = Prior::new(&stats, 20).expect("prior");
    let limits = Limits {
        min_atoms: 2,
        cap: stats.n_max,
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let states = morph::sampler::initial_states(200, &prior, None, limits, &mut rng);
    assert!(
        states.iter().all(|s| s.n() >= 2 && s.n() <= limits.cap),
        "sizes {:?}",
        states.iter().map(State::n).collect::<Vec<_>>()
    );
    assert!(
        states.iter().any(|s| s.n() == limits.cap),
        "the clamp was never exercised"
    );
}
