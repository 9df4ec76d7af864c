//! The fused CPU stage-2 step (OpenBLAS products, hand-written backward)
//! against candle autograd: same loss, same gradients, same drift; and
//! repeatable bit for bit.
mod common;

use candle_core::{DType, Device, Tensor};
use lcd::config::ConditionPath;
use lcd::rng::TensorRng;
use lcd::stage2::ScoreNet;

const D: usize = 70;
const H: usize = 96; // > one column block of the fused reductions
const V: usize = 5;
const B: usize = 100; // > one row block of the fused passes

/// A network whose every parameter (biases and zero-initialised condition
/// paths included) is random, so no gradient term is trivially zero.
fn net(path: ConditionPath) -> anyhow::Result<ScoreNet> {
    // these tests are about the fused path: on even under CELLMOL_LCD_GEMM=candle
    lcd::blas::set_enabled(true);
    let dev = Device::Cpu;
    let mut rng = TensorRng::new(3, &dev)?;
    let sigmas: Vec<f64> = (0..7).map(|i| 5.0 * 0.5f64.powi(i)).collect();
    let n = ScoreNet::init_with(D, V, sigmas, H, path, &mut rng, &dev)?;
    common::randomise(&n, &mut rng)?;
    Ok(n)
}

fn norm(t: &Tensor) -> anyhow::Result<f64> {
    Ok(f64::from(t.sqr()?.sum_all()?.to_scalar::<f32>()?).sqrt())
}

fn compare(path: ConditionPath) -> anyhow::Result<()> {
    let dev = Device::Cpu;
    let n = net(path)?;
    assert!(n.fused_step_available()?);
    let mut r0 = TensorRng::new(11, &dev)?;
    let state = (r0.normal(&[150, D])? * 2.0)?;
    let rows: Vec<u32> = r0.indices(B, 150).into_iter().map(|v| v as u32).collect();
    let mh = Tensor::from_vec(vec![1f32, 0.0, 1.0, 0.0, 0.0], (1, V), &dev)?;
    let (l_ref, g_ref) =
        n.dsm_gradients(&state, &rows, &mh, &mut TensorRng::new(5, &dev)?, false)?;
    let (l_fus, g_fus) =
        n.dsm_gradients(&state, &rows, &mh, &mut TensorRng::new(5, &dev)?, true)?;
    assert!(l_ref.is_finite() && l_ref > 0.0);
    assert!(
        (l_ref - l_fus).abs() <= 1e-5 * l_ref,
        "{path:?}: loss {l_ref} (candle) vs {l_fus} (fused)"
    );
    let mut names: Vec<&String> = g_ref.keys().collect();
    names.sort();
    assert_eq!(names.len(), n.params.names().len(), "{path:?}: {names:?}");
    for name in names {
        let a = &g_ref[name];
        let b = g_fus
            .get(name)
            .ok_or_else(|| anyhow::anyhow!("{path:?}: fused step lacks gradient {name}"))?;
        assert_eq!(a.dims(), b.dims(), "{name}");
        let (na, nb) = (norm(a)?, norm(b)?);
        let diff = norm(&(a - b)?)?;
        assert!(na > 0.0, "{path:?}: zero reference gradient {name}");
        assert!(
            diff <= 1e-4 * na,
            "{path:?}: {name}: |g| {na} (candle) vs {nb} (fused), |Δ| {diff}"
        );
    }
    // Drift: detached weights take the fused forward; live (tracked) weights
    // take candle's graph.
    let x = (r0.normal(&[B, D])? * 3.0)?;
    let lv: Vec<u32> = (0..B as u32).map(|i| i % 7).collect();
    let levels = Tensor::from_vec(lv.clone(), B, &dev)?;
    let sigma = n.sigma_of(&lv, &dev)?;
    let e = n.condition_embedding(&n.params.detached(), &mh)?;
    let f_fused = n.drift(&n.params.detached(), &x, &levels, &sigma, &e)?;
    let f_ref = n.drift(&n.params.live(), &x, &levels, &sigma, &e)?.detach();
    let dn = norm(&(&f_fused - &f_ref)?)?;
    assert!(
        dn <= 1e-5 * norm(&f_ref)?,
        "{path:?}: drift |Δ| {dn} vs |f| {}",
        norm(&f_ref)?
    );
    Ok(())
}

#[test]
fn fused_step_matches_autograd_paper_network() -> anyhow::Result<()> {
    compare(ConditionPath::None)
}

#[test]
fn fused_step_matches_autograd_output_path() -> anyhow::Result<()> {
    compare(ConditionPath::Output)
}

#[test]
fn fused_drift_matches_for_shift_path_and_shared_rows() -> anyhow::Result<()> {
    // Shift path (training falls back to autograd; the drift is fused), one
    // σ and one level row for all chains as in the sampler.
    let dev = Device::Cpu;
    let n = net(ConditionPath::Shift)?;
    assert!(!n.fused_step_available()?);
    let mut r = TensorRng::new(8, &dev)?;
    let x = r.normal(&[B, D])?;
    let w = n.params.detached();
    let table = n.level_table(&w)?;
    let temb = table.narrow(0, 2, 1)?;
    let sigma = Tensor::from_vec(vec![n.sigmas[2] as f32], (1, 1), &dev)?;
    let e = r.normal(&[B, H])?; // per-chain embeddings
    let cond = n.condition_terms(&w, &e)?;
    let fused = n.drift_pre(&w, &x, &temb, &sigma, &cond)?;
    let wl = n.params.live();
    let cond_l = n.condition_terms(&wl, &e)?;
    let reference = n.drift_pre(&wl, &x, &temb, &sigma, &cond_l)?.detach();
    let dn = norm(&(&fused - &reference)?)?;
    assert!(dn <= 1e-5 * norm(&reference)?, "|Δ| {dn}");
    Ok(())
}

#[test]
fn fused_training_is_repeatable() -> anyhow::Result<()> {
    let dev = Device::Cpu;
    let run = || -> anyhow::Result<Vec<f32>> {
        let mut n = net(ConditionPath::None)?;
        let mut rng = TensorRng::new(21, &dev)?;
        let states = vec![rng.normal(&[120, D])?, rng.normal(&[90, D])?];
        let mh = vec![
            Tensor::zeros((1, V), DType::F32, &dev)?,
            Tensor::from_vec(vec![0f32, 1.0, 0.0, 0.0, 0.0], (1, V), &dev)?,
        ];
        let mut cfg = lcd::LcdConfig::quick().stage2;
        cfg.batch = 64;
        cfg.steps = 4;
        let mut losses = Vec::new();
        n.train(&states, &mh, &cfg, &mut rng, None, |_, l, _, _, _| {
            losses.push(l as f32);
            Ok(())
        })?;
        let mut v = losses;
        v.extend(n.params.get("l1.w")?.flatten_all()?.to_vec1::<f32>()?);
        Ok(v)
    };
    let a = run()?;
    assert!(a[..4].iter().all(|l| l.is_finite()));
    assert_eq!(a, run()?);
    Ok(())
}
