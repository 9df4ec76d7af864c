//! The fused CPU step against candle's own matmul path end to end
//! (`blas::set_enabled(false)`: candle autograd with candle's gemm, as
//! before the OpenBLAS path). One test per binary: the switch is global.
mod common;

use candle_core::{Device, Tensor};
use lcd::rng::TensorRng;
use lcd::stage2::ScoreNet;

#[test]
fn fused_step_matches_candle_matmul_autograd() -> anyhow::Result<()> {
    let dev = Device::Cpu;
    let (d, h, v, b) = (50, 72, 4, 90);
    let mut rng = TensorRng::new(4, &dev)?;
    let sigmas: Vec<f64> = (0..6).map(|i| 3.0 * 0.4f64.powi(i)).collect();
    let net = ScoreNet::init(d, v, sigmas, h, &mut rng, &dev)?;
    // Random biases and embeddings too (they start at zero / tiny).
    common::randomise(&net, &mut rng)?;
    let state = rng.normal(&[120, d])?;
    let rows: Vec<u32> = rng.indices(b, 120).into_iter().map(|r| r as u32).collect();
    let mh = Tensor::from_vec(vec![0f32, 1.0, 1.0, 0.0], (1, v), &dev)?;

    lcd::blas::set_enabled(false);
    assert!(!net.fused_step_available()?);
    let (l_ref, g_ref) =
        net.dsm_gradients(&state, &rows, &mh, &mut TensorRng::new(9, &dev)?, false)?;
    lcd::blas::set_enabled(true);
    let (l_fus, g_fus) =
        net.dsm_gradients(&state, &rows, &mh, &mut TensorRng::new(9, &dev)?, true)?;

    assert!(
        (l_ref - l_fus).abs() <= 1e-5 * l_ref,
        "loss {l_ref} vs {l_fus}"
    );
    assert_eq!(g_ref.len(), net.params.names().len());
    let norm = |t: &Tensor| -> anyhow::Result<f64> {
        Ok(f64::from(t.sqr()?.sum_all()?.to_scalar::<f32>()?).sqrt())
    };
    for (name, a) in &g_ref {
        let f = g_fus
            .get(name)
            .ok_or_else(|| anyhow::anyhow!("fused step lacks gradient {name}"))?;
        let (na, nf, dn) = (norm(a)?, norm(f)?, norm(&(a - f)?)?);
        assert!(
            na > 0.0 && dn <= 1e-4 * na,
            "{name}: |g| {na} vs {nf}, |Δ| {dn}"
        );
    }
    Ok(())
}
