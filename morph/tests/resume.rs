//! Training runs through `datasets::train`: a run stopped half-way (stop flag →
//! checkpoint + `Interrupted`) and resumed gives bit-for-bit the weights, EMA
//! and loss of the same run done straight; the checkpoint refuses other
//! settings; the metrics log has no duplicated steps after a resume.
use std::collections::BTreeMap;
use std::collections::HashMap;

use candle_core::{Device, Tensor};
use datasets::molbatch::{MolRecord, MolSet, MolStats, MolVocab};
use datasets::train::{RunDir, StopSignal};
use datasets::DatasetsError;
use morph::train::{fit_run, FitRun, StepLog};
use morph::{MorphConfig, MorphError};

fn toy_set() -> (MolSet, MolStats) {
    let vocab = MolVocab::new(vec!["H".into(), "C".into(), "O".into()], vec![0, 1]);
    let mk = |n: usize, gap: f64| {
        let mut pos = ndarray::Array2::zeros((n, 3));
        let mut types = vec![1; n];
        let mut bonds = Vec::new();
        for i in 0..n {
            pos[[i, 0]] = 1.4 * (i as f64 * 0.8).cos() * (1.0 + i as f64 * 0.3);
            pos[[i, 1]] = 1.4 * (i as f64 * 0.8).sin();
            pos[[i, 2]] = 0.3 * (i % 2) as f64;
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
    let recs = (0..14)
        .map(|k| mk(4 + k % 4, 0.2 + 0.01 * k as f64))
        .collect();
    let mut set = MolSet::new(vocab, recs).expect("toy set");
    let stats = set.stats().expect("stats");
    set.normalise(stats.coord_std);
    (set, stats)
}

fn config(steps: usize) -> MorphConfig {
    let mut cfg = MorphConfig::preset("tiny").expect("preset");
    cfg.condition = Some("gap".into());
    cfg.train.steps = steps;
    // epochs of 3 batches: the shuffle RNG state matters across the stop
    cfg.train.batch_size = 4;
    cfg.train.checkpoint_every = 3;
    cfg.train.seed = 11;
    cfg
}

fn all_values(map: &HashMap<String, Tensor>) -> Vec<(String, Vec<u32>)> {
    let mut v: Vec<(String, Vec<u32>)> = map
        .iter()
        .map(|(k, t)| {
            let bits = t
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .expect("values")
                .into_iter()
                .map(f32::to_bits)
                .collect();
            (k.clone(), bits)
        })
        .collect();
    v.sort();
    v
}

fn saved_weights(dir: &std::path::Path) -> Vec<(String, Vec<u32>)> {
    let map = candle_core::safetensors::load(dir.join(morph::io::WEIGHTS_FILE), &Device::Cpu)
        .expect("load");
    all_values(&map)
}

/// Run `fit_run` in `dir` (prepared with `resume`), asking for a stop after
/// `stop_after` steps of this invocation. Returns the per-step losses seen.
fn run(
    dir: &RunDir,
    set: &MolSet,
    stats: &MolStats,
    cfg: &MorphConfig,
    resume: bool,
    stop_after: Option<usize>,
) -> (morph::Result<morph::train::FitReport>, Vec<(usize, u32)>) {
    let ck = dir.prepare(resume, false).expect("prepare");
    let stop = StopSignal::never();
    let fr = FitRun {
        dir,
        resume: ck,
        stop: stop.clone(),
        init: None,
    };
    let mut losses = Vec::new();
    let mut seen = 0;
    let mut on_step = |l: &StepLog| {
        losses.push((l.step, l.loss.to_bits()));
        seen += 1;
        if Some(seen) == stop_after {
            stop.request(15);
        }
    };
    let rep = fit_run(set, stats, cfg, &Device::Cpu, &fr, &mut on_step);
    (rep, losses)
}

#[test]
fn stop_and_resume_is_bit_for_bit() {
    let (set, stats) = toy_set();
    let cfg = config(10);
    let tmp = tempfile::tempdir().expect("tmp");
    // Straight run.
    let straight = RunDir::new(tmp.path().join("straight"));
    let (rep, loss_a) = run(&straight, &set, &stats, &cfg, false, None);
    let rep_a = rep.expect("straight fit");
    assert_eq!(rep_a.steps, 10);
    assert!(rep_a.final_loss.is_finite());
    // The same run stopped after 5 steps (between the periodic checkpoints at
    // 3 and 6), then resumed.
    let split = RunDir::new(tmp.path().join("split"));
    let (rep, loss_b1) = run(&split, &set, &stats, &cfg, false, Some(5));
    match rep {
        Err(MorphError::Datasets(DatasetsError::Interrupted { step, signal, .. })) => {
            assert_eq!((step, signal), (5, 15));
        }
        other => panic!("expected Interrupted, got {:?}", other.map(|r| r.steps)),
    }
    assert!(split.path.join("checkpoint/state.json").is_file());
    // a plain prepare refuses the interrupted run; loaders refuse it too
    let e = split.prepare(false, false).unwrap_err().to_string();
    assert!(e.contains("interrupted at step 5"), "{e}");
    let e = morph::io::ModelDir::load(&split.path, &Device::Cpu)
        .err()
        .expect("loading an interrupted run must fail")
        .to_string();
    assert!(e.contains("interrupted"), "{e}");
    let (rep, loss_b2) = run(&split, &set, &stats, &cfg, true, None);
    let rep_b = rep.expect("resumed fit");
    assert_eq!(rep_b.resumed_from, Some(5));
    assert_eq!(rep_b.steps, 10);
    // identical losses step by step, identical final loss and weights
    let mut loss_b = loss_b1.clone();
    loss_b.extend(loss_b2.iter().copied());
    assert_eq!(loss_b2.first().map(|l| l.0), Some(5));
    assert_eq!(loss_a, loss_b, "per-step losses differ after resume");
    assert_eq!(rep_a.final_loss.to_bits(), rep_b.final_loss.to_bits());
    assert_eq!(
        rep_a.val_loss.map(f32::to_bits),
        rep_b.val_loss.map(f32::to_bits)
    );
    assert_eq!(
        saved_weights(&straight.path),
        saved_weights(&split.path),
        "EMA weights differ after resume"
    );
    // metrics log: every step once, in order, same numbers
    let rows = |d: &RunDir| -> Vec<(u64, f64)> {
        datasets::train::read_metrics(&d.path.join(morph::train::METRICS_FILE))
            .expect("metrics")
            .iter()
            .map(|r| {
                (
                    r["step"].as_u64().expect("step"),
                    r["loss"].as_f64().expect("loss"),
                )
            })
            .collect()
    };
    let (ra, rb) = (rows(&straight), rows(&split));
    assert_eq!(ra.len(), 10);
    assert_eq!(ra, rb);
}

#[test]
fn seeded_runs_repeat_and_seeds_differ() {
    let (set, stats) = toy_set();
    let tmp = tempfile::tempdir().expect("tmp");
    let mut w = Vec::new();
    for (name, seed) in [("a", 11), ("b", 11), ("c", 12)] {
        let mut cfg = config(3);
        cfg.train.seed = seed;
        let dir = tmp.path().join(name);
        morph::train::fit(&set, &stats, &cfg, &Device::Cpu, &dir, &mut |_| {}).expect("fit");
        w.push(saved_weights(&dir));
    }
    assert_eq!(w[0], w[1], "same seed, different weights");
    assert_ne!(w[0], w[2], "different seeds, same weights");
}

#[test]
fn resume_with_other_settings_is_refused() {
    let (set, stats) = toy_set();
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = RunDir::new(tmp.path().join("m"));
    let cfg = config(10);
    let (rep, _) = run(&dir, &set, &stats, &cfg, false, Some(2));
    assert!(rep.is_err());
    let mut other = cfg.clone();
    other.net.hidden = 24;
    let (rep, _) = run(&dir, &set, &stats, &other, true, None);
    let e = rep.err().expect("must refuse").to_string();
    assert!(e.contains("other training data or another config"), "{e}");
    // the time budget may change
    let mut budget = cfg.clone();
    budget.train.max_minutes = 30.0;
    let (rep, _) = run(&dir, &set, &stats, &budget, true, None);
    assert_eq!(rep.expect("resume with a new time budget").steps, 10);
}

/// Max |a − b| over all saved weights of two model directories.
fn max_weight_diff(a: &std::path::Path, b: &std::path::Path) -> f32 {
    let load = |d: &std::path::Path| {
        candle_core::safetensors::load(d.join(morph::io::WEIGHTS_FILE), &Device::Cpu).expect("load")
    };
    let (wa, wb) = (load(a), load(b));
    assert_eq!(wa.len(), wb.len());
    wa.iter()
        .map(|(k, ta)| {
            let fa = ta
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .expect("a");
            let fb = wb[k]
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .expect("b");
            fa.iter()
                .zip(&fb)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max)
        })
        .fold(0f32, f32::max)
}

#[test]
fn init_starts_from_a_trained_models_weights() {
    let (set, stats) = toy_set();
    let tmp = tempfile::tempdir().expect("tmp");
    let base = tmp.path().join("base");
    morph::train::fit(&set, &stats, &config(6), &Device::Cpu, &base, &mut |_| {}).expect("fit");
    let start = morph::train::InitModel::load(&base).expect("load start model");
    // One step at a negligible learning rate and another seed: from the start
    // model's weights the new model keeps them; from seeded random ones it
    // does not.
    let mut cfg = config(1);
    cfg.train.seed = 99;
    cfg.train.lr = 1e-12;
    cfg.train.warmup_steps = 0;
    let go = |name: &str, init: Option<&morph::train::InitModel>, cfg: &MorphConfig| {
        let dir = RunDir::new(tmp.path().join(name));
        let ck = dir.prepare(false, false).expect("prepare");
        let fr = FitRun {
            dir: &dir,
            resume: ck,
            stop: StopSignal::never(),
            init,
        };
        let rep = fit_run(&set, &stats, cfg, &Device::Cpu, &fr, &mut |_| {});
        (dir.path.clone(), rep)
    };
    let (warm, rep) = go("warm", Some(&start), &cfg);
    let rep = rep.expect("fit from the start model");
    assert_eq!(
        rep.init_from.as_deref(),
        Some(base.display().to_string().as_str())
    );
    let (cold, rep) = go("cold", None, &cfg);
    assert!(rep.expect("fit from scratch").init_from.is_none());
    let d_warm = max_weight_diff(&base, &warm);
    let d_cold = max_weight_diff(&base, &cold);
    assert!(d_warm < 1e-5, "continued weights moved by {d_warm}");
    assert!(
        d_cold > 1e-2,
        "fresh weights equal the start model's ({d_cold})"
    );
    // another network is refused with the start model's config named
    let mut other = cfg.clone();
    other.net.hidden = 24;
    let (_, rep) = go("other", Some(&start), &other);
    let e = rep.err().expect("must refuse another network").to_string();
    assert!(e.contains("config.json") && e.contains("network"), "{e}");
    // and so is a directory that holds no model
    let e = morph::train::InitModel::load(&tmp.path().join("none"))
        .err()
        .expect("no model")
        .to_string();
    assert!(e.contains("none"), "{e}");
}
