//! The fused CPU Langevin step (drift, update and row-keyed noise in one
//! pass; chains split between threads) against the same step in candle ops
//! with candle's matmul (`blas::set_enabled(false)`). One test per binary:
//! the switch is global.
mod common;

use candle_core::{Device, Tensor};
use lcd::rng::TensorRng;
use lcd::stage2::ScoreNet;

fn max_abs(t: &Tensor) -> anyhow::Result<f32> {
    Ok(t.abs()?.max_all()?.to_scalar::<f32>()?)
}

#[test]
fn fused_langevin_step_matches_candle_ops() -> anyhow::Result<()> {
    let dev = Device::Cpu;
    // enough chains that a 2-thread run splits them (128 rows per part)
    let (d, h, v, n) = (40, 64, 3, 700);
    let mut rng = TensorRng::new(11, &dev)?;
    let sigmas: Vec<f64> = (0..5).map(|i| 2.0 * 0.5f64.powi(i)).collect();
    let net = ScoreNet::init(d, v, sigmas, h, &mut rng, &dev)?;
    common::randomise(&net, &mut rng)?;
    let w = net.params.detached();
    let x = (rng.normal(&[n, d])? * 2.0)?;
    // per-chain condition embeddings (the per-row paths of the kernel)
    let e = (rng.normal(&[n, h])? * 0.3)?;
    let cond = net.condition_terms(&w, &e)?;
    let temb = net.level_table(&w)?.narrow(0, 2, 1)?;
    let sigma = Tensor::from_vec(vec![net.sigmas[2] as f32], (1, 1), &dev)?;
    let eps = 1e-3;

    let step = |seed: Option<u64>| -> anyhow::Result<Tensor> {
        let mut r = seed.map(|s| TensorRng::new(s, &dev)).transpose()?;
        Ok(net.langevin_step(&w, &x, &temb, &sigma, &cond, eps, r.as_mut())?)
    };
    let fused_noisy = step(Some(5))?;
    let fused_plain = step(None)?;
    assert_eq!(
        max_abs(&(&fused_noisy - &step(Some(5))?)?)?,
        0.0,
        "same seed, same device: identical steps"
    );
    lcd::blas::set_enabled(false);
    let ref_noisy = step(Some(5))?;
    let ref_plain = step(None)?;
    lcd::blas::set_enabled(true);

    let scale = max_abs(&x)?;
    for (what, a, b) in [
        ("noise-free", &fused_plain, &ref_plain),
        ("noisy", &fused_noisy, &ref_noisy),
    ] {
        let diff = max_abs(&(a - b)?)?;
        assert!(diff <= 1e-4 * scale, "{what} step: max |Δ| {diff}");
    }
    // the noise is really there, with the Euler–Maruyama scale √(2ε)
    let z = ((&fused_noisy - &fused_plain)? / (2.0 * eps).sqrt())?;
    let var = z.sqr()?.mean_all()?.to_scalar::<f32>()?;
    assert!((var - 1.0).abs() < 0.03, "noise variance {var}");
    // and the update moved x by ε·drift
    let drift = net.drift_pre(&w, &x, &temb, &sigma, &cond)?;
    let expect = (&x + (drift * eps)?)?;
    let diff = max_abs(&(&fused_plain - &expect)?)?;
    assert!(diff <= 1e-5 * scale, "x + ε f: max |Δ| {diff}");
    Ok(())
}
