//! Per-device training steps (issue 8): the LCD stage-2 DSM step and the Morph
//! training step run on every device this build can open — the CPU always,
//! CUDA when the binary was built with `--features cuda` and a GPU is present —
//! and must give the same losses as the CPU within a tolerance.
//!
//! Everything random is drawn on the host (weights, noise, levels, Morph's
//! batches), so the devices see identical inputs. On the CPU the test checks
//! that a repeated run is bit-for-bit identical. Without a GPU it says so on
//! stderr; `scripts/gpu-bundle.sh` builds this test for the lent GPU machine.
use candle_core::{Device, Tensor, Var};
use datasets::molbatch::MolSet;
use lcd::rng::TensorRng;
use lcd::stage2::ScoreNet;
use morph::config::MorphConfig;
use morph::io::ModelMeta;
use morph::train::Trainer;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use std::path::{Path, PathBuf};

/// Relative tolerance between CPU and GPU losses (f32, other reduction orders).
const REL_TOL: f64 = 2e-3;

/// The CPU plus every CUDA device this build can open.
fn devices() -> Vec<(String, Device)> {
    let mut out = vec![("cpu".to_string(), Device::Cpu)];
    if candle_core::utils::cuda_is_available() {
        match Device::new_cuda(0) {
            Ok(d) => out.push(("cuda:0".to_string(), d)),
            Err(e) => eprintln!("devices: built with CUDA, but no GPU opened ({e}); CPU only"),
        }
    } else {
        eprintln!("devices: built without the `cuda` feature; CPU only");
    }
    out
}

fn host_normal(r: &mut ChaCha8Rng, shape: &[usize], dev: &Device) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| r.sample::<f32, _>(StandardNormal)).collect();
    Tensor::from_vec(v, shape, dev).unwrap()
}

/// Two LCD stage-2 steps (DSM loss, backward, SGD update) at d = 40, H = 64,
/// batch 256: the two losses and the first gradient norm.
fn lcd_steps(dev: &Device) -> Vec<f64> {
    let (d, h, n, vocab) = (40, 64, 256, 6);
    let cfg = lcd::LcdConfig::quick();
    let mut rng = TensorRng::new(11, dev).unwrap();
    let net = ScoreNet::init(d, vocab, cfg.sigmas(), h, &mut rng, dev).unwrap();
    let mut host = ChaCha8Rng::seed_from_u64(5);
    let x = host_normal(&mut host, &[n, d], dev);
    let mut mh = vec![0f32; vocab];
    mh[1] = 1.0;
    mh[4] = 1.0;
    let multi_hot = Tensor::from_vec(mh, (1, vocab), dev).unwrap();
    let vars: Vec<Var> = net.params.vars();
    let mut out = Vec::new();
    for step in 0..2 {
        let lv: Vec<u32> = (0..n)
            .map(|_| host.random_range(0..net.sigmas.len()) as u32)
            .collect();
        let sigma = net.sigma_of(&lv, dev).unwrap();
        let levels = Tensor::from_vec(lv, n, dev).unwrap();
        let eps = host_normal(&mut host, &[n, d], dev);
        let xt = (&x + eps.broadcast_mul(&sigma).unwrap()).unwrap();
        let w = net.params.live();
        let e = net.condition_embedding(&w, &multi_hot).unwrap();
        let f = net.drift(&w, &xt, &levels, &sigma, &e).unwrap();
        let r = (f.broadcast_mul(&sigma).unwrap() + &eps).unwrap();
        let loss = (r.sqr().unwrap().sum(1).unwrap().mean_all().unwrap() * 0.5).unwrap();
        out.push(loss.to_scalar::<f32>().unwrap() as f64);
        let grads = loss.backward().unwrap();
        let mut sq = 0f64;
        for v in &vars {
            if let Some(g) = grads.get(v) {
                sq += g
                    .sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap() as f64;
                v.set(&(v.as_tensor() - (g * 1e-3).unwrap()).unwrap())
                    .unwrap();
            }
        }
        if step == 0 {
            out.push(sq.sqrt());
        }
    }
    out
}

fn qm9_fixture() -> PathBuf {
    let rel = Path::new("morph/tests/data/qm9_64.sdf");
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    // the GPU machine runs a carried test binary from a copy of the repository
    if built.exists() {
        built
    } else {
        rel.to_path_buf()
    }
}

/// Two Morph training steps (quick network, batch 16 QM9 molecules): losses.
fn morph_steps(dev: &Device) -> Vec<f64> {
    let mols = molecules::read_molecules_path(&qm9_fixture()).expect("read QM9 fixture");
    let mut set = MolSet::from_molecules(&mols, None).unwrap();
    let stats = set.stats().unwrap();
    set.normalise(stats.coord_std);
    let mut cfg = MorphConfig::preset("quick").unwrap();
    cfg.train.batch_size = 16;
    let meta = ModelMeta::new(cfg, &set, &stats).unwrap();
    let mut tr = Trainer::new(meta, dev).unwrap();
    let mut out = Vec::new();
    for (step, chunk) in [(0usize, 0..16usize), (1, 16..32)] {
        let idx: Vec<usize> = chunk.collect();
        let log = tr.step(&set, &idx, step).unwrap();
        out.push(log.loss as f64);
        if step == 0 {
            out.push(log.grad_norm);
        }
    }
    out
}

fn check(what: &str, cpu: &[f64], other: &[f64], dev: &str) {
    assert_eq!(cpu.len(), other.len());
    for (k, (a, b)) in cpu.iter().zip(other).enumerate() {
        assert!(
            a.is_finite() && b.is_finite(),
            "{what} on {dev}: value {k} not finite ({a}, {b})"
        );
        let rel = (a - b).abs() / a.abs().max(1e-12);
        assert!(
            rel <= REL_TOL,
            "{what}: value {k} is {b} on {dev} but {a} on the CPU (relative difference {rel:.2e} > {REL_TOL:e})"
        );
    }
    eprintln!("devices: {what} on {dev} matches the CPU: {other:?}");
}

#[test]
fn lcd_stage2_step_is_the_same_on_every_device() {
    let cpu = lcd_steps(&Device::Cpu);
    assert_eq!(cpu, lcd_steps(&Device::Cpu), "CPU run is not deterministic");
    assert!(
        cpu[2] < cpu[0] * 1.5,
        "loss went wild after one step: {cpu:?}"
    );
    for (name, dev) in devices().into_iter().skip(1) {
        check("LCD stage-2 step", &cpu, &lcd_steps(&dev), &name);
    }
}

#[test]
fn morph_training_step_is_the_same_on_every_device() {
    let cpu = morph_steps(&Device::Cpu);
    assert_eq!(
        cpu,
        morph_steps(&Device::Cpu),
        "CPU run is not deterministic"
    );
    for (name, dev) in devices().into_iter().skip(1) {
        check("Morph training step", &cpu, &morph_steps(&dev), &name);
    }
}
