//! Where the stage-2 CPU step spends its time: GFLOP/s of candle's matmul
//! and of OpenBLAS sgemm ([`lcd::blas`]) at the step's shapes (forward and
//! the transposed backward products), the timing of the elementwise passes
//! on `[B, H]` tensors, and the step split into forward / backward /
//! optimiser with either matmul. Prints one JSON object per line. Usage:
//! `cargo run --release -p lcd --example lcd_matmul_bench -- D H BATCH REPS`
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use lcd::blas;
use lcd::optim::{Adam, AdamParams};
use lcd::rng::TensorRng;
use lcd::stage2::ScoreNet;
use lcd::LcdConfig;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Median seconds of `reps` calls after one warm-up call.
fn time<T>(reps: usize, mut f: impl FnMut() -> anyhow::Result<T>) -> anyhow::Result<f64> {
    f()?;
    let mut v = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        std::hint::black_box(f()?);
        v.push(t.elapsed().as_secs_f64());
    }
    Ok(median(v))
}

fn main() -> anyhow::Result<()> {
    let a: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|s| s.parse().ok())
        .collect();
    let (d, h, b, reps) = (
        a.first().copied().unwrap_or(1000),
        a.get(1).copied().unwrap_or(1024),
        a.get(2).copied().unwrap_or(8192),
        a.get(3).copied().unwrap_or(5),
    );
    let dev = Device::Cpu;
    println!(
        "{{\"openblas_core\":\"{}\",\"threads\":{{\"openblas\":{},\"rayon\":{}}}}}",
        blas::openblas_core(),
        blas::openblas_threads(),
        rayon::current_num_threads()
    );
    let mut rng = TensorRng::new(0, &dev)?;
    let r = |rng: &mut TensorRng, s: &[usize]| rng.normal(s);
    // (label, lhs, rhs): forward products, then the backward ones
    // (dW = Xᵀ·G with a transposed view, dX = G·Wᵀ).
    let x_d = r(&mut rng, &[b, d])?;
    let x_h = r(&mut rng, &[b, h])?;
    let w_dh = r(&mut rng, &[d, h])?;
    let w_hh = r(&mut rng, &[h, h])?;
    let w_hd = r(&mut rng, &[h, d])?;
    let cases: Vec<(&str, Tensor, Tensor)> = vec![
        ("fwd l0 [B,d]x[d,H]", x_d.clone(), w_dh.clone()),
        ("fwd l1 [B,H]x[H,H]", x_h.clone(), w_hh.clone()),
        ("fwd out [B,H]x[H,d]", x_h.clone(), w_hd.clone()),
        ("dW l0 [B,d]^T x[B,H]", x_d.t()?, x_h.clone()),
        ("dW l1 [B,H]^T x[B,H]", x_h.t()?, x_h.clone()),
        ("dW out [B,H]^T x[B,d]", x_h.t()?, x_d.clone()),
        ("dX out [B,d]x[H,d]^T", x_d.clone(), w_hd.t()?),
        ("dX l1 [B,H]x[H,H]^T", x_h.clone(), w_hh.t()?),
    ];
    for (label, l, rr) in &cases {
        let (m, k) = l.dims2()?;
        let n = rr.dim(1)?;
        let fl = 2.0 * (m * k * n) as f64;
        let tc = time(reps, || Ok(blas::matmul_candle(l, rr)?))?;
        let tb = time(reps, || Ok(blas::matmul_blas(l, rr)?))?;
        println!(
            "{{\"matmul\":\"{label}\",\"candle_gflops\":{:.1},\"openblas_gflops\":{:.1}}}",
            fl / tc / 1e9,
            fl / tb / 1e9
        );
    }
    // Elementwise passes on [B, H] (what each layer adds beside its product).
    let bias = r(&mut rng, &[1, h])?;
    let sig = r(&mut rng, &[b, 1])?;
    let ew: Vec<(&str, f64)> = vec![
        (
            "broadcast_add bias",
            time(reps, || Ok(x_h.broadcast_add(&bias)?))?,
        ),
        ("add", time(reps, || Ok((&x_h + &x_h)?))?),
        ("tanh", time(reps, || Ok(x_h.tanh()?))?),
        ("mul", time(reps, || Ok((&x_h * &x_h)?))?),
        (
            "broadcast_mul col",
            time(reps, || Ok(x_h.broadcast_mul(&sig)?))?,
        ),
        ("sqr", time(reps, || Ok(x_h.sqr()?))?),
        ("affine", time(reps, || Ok(x_h.affine(2.0, 1.0)?))?),
        ("sum_keepdim(0)", time(reps, || Ok(x_h.sum_keepdim(0)?))?),
        ("sum(1)", time(reps, || Ok(x_h.sum(1)?))?),
        (
            "normal [B,d] (host rng)",
            time(reps, || Ok(rng.normal(&[b, d])?))?,
        ),
    ];
    for (label, t) in ew {
        println!("{{\"elementwise\":\"{label}\",\"ms\":{:.2}}}", t * 1e3);
    }
    // One sampler step at 1 000 chains: the drift (fused on the CPU unless
    // CELLMOL_LCD_GEMM=candle) and the rest of `annealed_langevin`'s update.
    {
        let cfg = LcdConfig::paper();
        let chains = 1000;
        let mut rng = TensorRng::new(2, &dev)?;
        let net = ScoreNet::init(d, 100, cfg.sigmas(), h, &mut rng, &dev)?;
        let w = net.params.detached();
        let x = rng.normal(&[chains, d])?;
        let temb = net.level_table(&w)?.narrow(0, 3, 1)?;
        let sigma = Tensor::from_vec(vec![net.sigmas[3] as f32], (1, 1), &dev)?;
        let e = Tensor::zeros((1, h), DType::F32, &dev)?;
        let cond = net.condition_terms(&w, &e)?;
        let t_drift = time(reps, || Ok(net.drift_pre(&w, &x, &temb, &sigma, &cond)?))?;
        let f = net.drift_pre(&w, &x, &temb, &sigma, &cond)?;
        let t_update = time(reps, || Ok((&x + (&f * 1e-4)?)?))?;
        let t_noise = time(reps, || Ok((&x + (rng.normal(&[chains, d])? * 0.01)?)?))?;
        let fl = 2.0 * chains as f64 * (2.0 * (d * h) as f64 + (h * h) as f64);
        println!(
            "{{\"sampler_step\":{{\"chains\":{chains},\"drift_ms\":{:.2},\"drift_gflops\":{:.1},\"update_ms\":{:.2},\"noise_ms\":{:.2}}}}}",
            t_drift * 1e3,
            fl / t_drift / 1e9,
            t_update * 1e3,
            t_noise * 1e3
        );
    }
    // The step, split into gradients (forward + backward) and Adam: candle
    // autograd with candle's matmul, candle autograd with the OpenBLAS
    // custom op, and the fused CPU step.
    let cfg = LcdConfig::paper();
    for (label, gemm_on, fused) in [
        ("candle", false, false),
        ("autograd+openblas", true, false),
        ("fused", true, true),
    ] {
        blas::set_enabled(gemm_on);
        let mut rng = TensorRng::new(1, &dev)?;
        let net = ScoreNet::init(d, 100, cfg.sigmas(), h, &mut rng, &dev)?;
        let state = rng.normal(&[b, d])?;
        let rows: Vec<u32> = (0..b as u32).collect();
        let mh = Tensor::zeros((1, 100), DType::F32, &dev)?;
        let vars = net.params.vars();
        let names = net.params.names();
        let hp = AdamParams {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.3,
            clip: None,
        };
        let mut opt = Adam::new(vars.clone(), hp)?;
        let (mut tg, mut to) = (Vec::new(), Vec::new());
        for i in 0..=reps {
            let t0 = Instant::now();
            let (_, g) = net.dsm_gradients(&state, &rows, &mh, &mut rng, fused)?;
            let grads: Vec<Option<Tensor>> = names.iter().map(|n| g.get(n).cloned()).collect();
            let t1 = Instant::now();
            opt.step(&grads, 1e-4)?;
            let t2 = Instant::now();
            if i > 0 {
                tg.push((t1 - t0).as_secs_f64());
                to.push((t2 - t1).as_secs_f64());
            }
        }
        let (g, o) = (median(tg), median(to));
        println!(
            "{{\"step\":\"{label}\",\"grad_ms\":{:.1},\"adam_ms\":{:.1},\"samples_per_s\":{:.1},\"grad_gflops\":{:.1}}}",
            g * 1e3,
            o * 1e3,
            b as f64 / (g + o),
            2.0 * b as f64 * (5.0 * (d * h) as f64 + 3.0 * (h * h) as f64) / g / 1e9
        );
    }
    Ok(())
}
