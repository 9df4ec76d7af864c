//! Throughput of the stage-2 DSM training step and of the annealed sampler,
//! same shapes as `benches/compare/lcd_jax.py` (BENCHMARKS.md). Prints one
//! JSON line. Usage:
//! `cargo run --release -p lcd --example lcd_step_bench -- D H BATCH CHAINS STEPS`
//! `CELLMOL_DEVICE=cuda:0` runs it on a GPU (build with `--features cuda`,
//! see scripts/build-cuda.sh); timings then wait for the device to finish.
use std::time::Instant;

use candle_core::{Device, Tensor};
use lcd::config::SamplerConfig;
use lcd::rng::TensorRng;
use lcd::sampler::annealed_langevin;
use lcd::stage2::ScoreNet;
use lcd::LcdConfig;

fn main() -> anyhow::Result<()> {
    let a: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|s| s.parse().ok())
        .collect();
    let (d, h, batch, chains, reps) = (
        a.first().copied().unwrap_or(1000),
        a.get(1).copied().unwrap_or(1024),
        a.get(2).copied().unwrap_or(8192),
        a.get(3).copied().unwrap_or(1000),
        a.get(4).copied().unwrap_or(5),
    );
    let spec = std::env::var("CELLMOL_DEVICE").unwrap_or_else(|_| "cpu".into());
    let dev = match spec.as_str() {
        "cpu" => Device::Cpu,
        s => {
            let ordinal: usize = s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| anyhow::anyhow!("CELLMOL_DEVICE={s}: expected cpu or cuda:N"))?;
            Device::new_cuda(ordinal)?
        }
    };
    let mut rng = TensorRng::new(0, &dev)?;
    let cfg = LcdConfig::paper();
    let mut net = ScoreNet::init(d, 100, cfg.sigmas(), h, &mut rng, &dev)?;
    let states = vec![rng.normal(&[batch * 2, d])?];
    let mh = vec![Tensor::zeros((1, 100), candle_core::DType::F32, &dev)?];
    let mut s2 = cfg.stage2.clone();
    s2.batch = batch;
    s2.steps = 1;
    net.train(&states, &mh, &s2, &mut rng, None, |_, _, _, _, _| Ok(()))?; // warm-up
    s2.steps = reps;
    dev.synchronize()?;
    let t = Instant::now();
    net.train(&states, &mh, &s2, &mut rng, None, |_, _, _, _, _| Ok(()))?;
    dev.synchronize()?;
    let step_s = t.elapsed().as_secs_f64() / reps as f64;
    // Dense FLOPs per step: forward 2·B·(dH + H² + Hd), backward ≈ 2× forward.
    let flops = 3.0 * 2.0 * batch as f64 * (2.0 * (d * h) as f64 + (h * h) as f64);
    let sc = SamplerConfig {
        steps_per_level: reps,
        ..cfg.sampler.clone()
    };
    let w = net.params.detached();
    let x0 = rng.normal(&[chains, d])?;
    let e = Tensor::zeros((1, h), candle_core::DType::F32, &dev)?;
    dev.synchronize()?;
    let t = Instant::now();
    annealed_langevin(&net, &w, &x0, &e, &sc, Some(&mut rng), |_| {})?;
    dev.synchronize()?;
    let chain_steps = (chains * reps * cfg.stage2.n_levels) as f64 / t.elapsed().as_secs_f64();
    // CPU products: OpenBLAS (kernel family) with the fused stage-2 path, or
    // candle's gemm (`CELLMOL_LCD_GEMM=candle`).
    let gemm = if !dev.is_cpu() {
        "-".to_string()
    } else if lcd::blas::enabled() {
        format!("openblas-{}", lcd::blas::openblas_core())
    } else {
        "candle".to_string()
    };
    println!(
        "{{\"impl\":\"candle\",\"device\":\"{spec}\",\"cpu_gemm\":\"{gemm}\",\"d\":{d},\"hidden\":{h},\"batch\":{batch},\"step_s\":{step_s:.5},\"samples_per_s\":{:.1},\"gflops\":{:.2},\"chain_steps_per_s\":{chain_steps:.1}}}",
        batch as f64 / step_s,
        flops / step_s / 1e9
    );
    Ok(())
}
