//! EGNN training-step benchmark (BENCHMARKS.md, "Morph training"): the Morph
//! EGNN backbone (`morph::egnn::Egnn`, per-layer layer norm, edge-list pair
//! work) with an input embedding, a type head and a position loss, on a real
//! QM9 batch padded to its largest molecule; forward + backward + AdamW step.
//! The same model in PyTorch is benches/compare/morph_egnn_torch.py, which
//! reads the batch this program writes with `--dump`.
//!
//! `egnn_step_bench [--data SDF] [--batch 64] [--hidden 256] [--layers 9]
//!  [--reps 5] [--dump batch.json] [--device cpu|cuda:N]` prints one JSON line with the median
//! step time and molecules/s.
//!
//! `egnn_step_bench --train quick|paper [--data SDF] [--reps 5]` times the
//! full Morph training step (`Trainer::step`: interpolant, network, all
//! losses, backward, AdamW, EMA) of that preset instead.
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use datasets::molbatch::MolSet;
use morph::config::MorphConfig;
use morph::egnn::{Egnn, Lin};
use morph::interpolant::{collate, make_batch, Prior};
use morph::io::ModelMeta;
use morph::model::one_hot;
use morph::train::Trainer;

struct Args {
    data: PathBuf,
    batch: usize,
    hidden: usize,
    layers: usize,
    reps: usize,
    dump: Option<PathBuf>,
    train: Option<String>,
    device: Device,
}

fn args() -> Result<Args> {
    let mut a = Args {
        data: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/qm9_64.sdf"),
        batch: 64,
        hidden: 256,
        layers: 9,
        reps: 5,
        dump: None,
        train: None,
        device: Device::Cpu,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        let val = v
            .get(i + 1)
            .with_context(|| format!("{} needs a value", v[i]))?;
        match v[i].as_str() {
            "--data" => a.data = PathBuf::from(val),
            "--batch" => a.batch = val.parse().context("--batch")?,
            "--hidden" => a.hidden = val.parse().context("--hidden")?,
            "--layers" => a.layers = val.parse().context("--layers")?,
            "--reps" => a.reps = val.parse().context("--reps")?,
            "--dump" => a.dump = Some(PathBuf::from(val)),
            "--train" => a.train = Some(val.clone()),
            "--device" => {
                a.device = match val.as_str() {
                    "cpu" => Device::Cpu,
                    s => Device::new_cuda(
                        s.strip_prefix("cuda:")
                            .and_then(|n| n.parse().ok())
                            .with_context(|| format!("--device {s}: expected cpu or cuda:N"))?,
                    )?,
                }
            }
            o => bail!("unknown argument {o}"),
        }
        i += 2;
    }
    Ok(a)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn threads() -> usize {
    candle_core::utils::get_num_threads()
}

/// Keep freed tensor memory in the process (glibc): with the default dynamic
/// mmap threshold every multi-MB tensor is a fresh mmap that the kernel
/// zero-fills page by page, and half the step is page faults. The `cellmol`
/// binary needs the same at start-up (as `morph_acceptance.sh` does with
/// GLIBC_TUNABLES); set MORPH_BENCH_DEFAULT_MALLOC=1 to measure without it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn keep_freed_memory() {
    use std::os::raw::c_int;
    extern "C" {
        fn mallopt(param: c_int, value: c_int) -> c_int;
    }
    const M_TRIM_THRESHOLD: c_int = -1;
    const M_MMAP_THRESHOLD: c_int = -3;
    if std::env::var_os("MORPH_BENCH_DEFAULT_MALLOC").is_some() {
        return;
    }
    // SAFETY: mallopt only changes allocator parameters; called before any
    // other thread exists.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, 32 << 20);
        mallopt(M_TRIM_THRESHOLD, c_int::MAX);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

fn main() -> Result<()> {
    keep_freed_memory();
    let a = args()?;
    let mols = molecules::read_molecules_path(&a.data)
        .with_context(|| format!("reading {}", a.data.display()))?;
    let mut set = MolSet::from_molecules(&mols, None)?;
    let stats = set.stats()?;
    set.normalise(stats.coord_std);
    if set.len() < a.batch {
        bail!(
            "{}: {} molecules, batch {} asked",
            a.data.display(),
            set.len(),
            a.batch
        );
    }
    if let Some(preset) = &a.train {
        return train_bench(&set, &stats, preset, a.reps, &a.device);
    }
    let dev = a.device.clone();
    let recs = &set.records[..a.batch];
    let n = recs.iter().map(|r| r.n_atoms()).max().unwrap_or(1);
    let (b, na, ne) = (a.batch, set.vocab.n_types(), set.vocab.n_bonds());
    let mut x1 = vec![0f32; b * n * 3];
    let mut x = vec![0f32; b * n * 3];
    let mut ty = vec![0u32; b * n];
    let mut e = vec![0u32; b * n * n];
    let mut mask = vec![0f32; b * n];
    for (k, r) in recs.iter().enumerate() {
        let bm = r.bond_matrix();
        for i in 0..r.n_atoms() {
            mask[k * n + i] = 1.0;
            ty[k * n + i] = r.types[i] as u32;
            for d in 0..3 {
                let o = (k * n + i) * 3 + d;
                x1[o] = r.pos[[i, d]] as f32;
                // deterministic "noise" so both sides see the same input
                x[o] = x1[o] + 0.1 * (((o * 7919) % 1000) as f32 / 500.0 - 1.0);
            }
            for j in 0..r.n_atoms() {
                e[(k * n + i) * n + j] = bm[[i, j]] as u32;
            }
        }
    }
    if let Some(p) = &a.dump {
        let j = serde_json::json!({
            "b": b, "n": n, "n_types": na, "n_bonds": ne, "hidden": a.hidden,
            "layers": a.layers, "coords_range": 15.0, "agg_norm": 10.0,
            "x": x, "x1": x1, "types": ty, "e": e, "mask": mask,
        });
        std::fs::write(p, j.to_string()).with_context(|| format!("writing {}", p.display()))?;
    }
    let xt = Tensor::from_vec(x, (b, n, 3), &dev)?;
    let x1t = Tensor::from_vec(x1, (b, n, 3), &dev)?;
    let tyt = Tensor::from_vec(ty, (b, n), &dev)?;
    let et = Tensor::from_vec(e, (b, n, n), &dev)?;
    let mt = Tensor::from_vec(mask, (b, n), &dev)?;
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
    let embed = Lin::new(na, a.hidden, true, vb.pp("embed"))?;
    let egnn = Egnn::new(a.hidden, a.layers, ne, 15.0, 10.0, true, vb.pp("egnn"))?;
    let head = Lin::new(a.hidden, na, true, vb.pp("head"))?;
    let mut opt = AdamW::new(
        vm.all_vars(),
        ParamsAdamW {
            lr: 1e-4,
            ..Default::default()
        },
    )?;
    let mut times = Vec::new();
    let mut last = 0f32;
    for rep in 0..a.reps + 1 {
        let t0 = Instant::now();
        let oh_a = one_hot(&tyt, na, &dev)?;
        let oh_e = one_hot(&et, ne, &dev)?;
        let h0 = embed.forward(&oh_a)?.broadcast_mul(&mt.unsqueeze(2)?)?;
        let (h, xo) = egnn.forward(&h0, &xt, &oh_e, &mt)?;
        let cnt = mt.sum_all()?;
        let l_pos = xo
            .sub(&x1t)?
            .sqr()?
            .sum(2)?
            .mul(&mt)?
            .sum_all()?
            .div(&cnt)?;
        let lp = candle_nn::ops::log_softmax(&head.forward(&h)?, 2)?;
        let l_ty = lp
            .gather(&tyt.unsqueeze(2)?.contiguous()?, 2)?
            .squeeze(2)?
            .mul(&mt)?
            .sum_all()?
            .div(&cnt)?
            .neg()?;
        let loss = l_pos.add(&l_ty)?;
        opt.backward_step(&loss)?;
        last = loss.to_scalar::<f32>()?;
        let dt = t0.elapsed().as_secs_f64();
        if rep > 0 {
            times.push(dt); // the first step warms up allocations
        }
    }
    let med = median(times.clone());
    let j = serde_json::json!({
        "impl": "candle", "device": if dev.is_cpu() { "cpu" } else { "cuda" }, "batch": b, "n_pad": n, "hidden": a.hidden, "layers": a.layers,
        "threads": threads(), "ms_step": med * 1e3, "mol_per_s": b as f64 / med,
        "times_ms": times.iter().map(|t| t * 1e3).collect::<Vec<_>>(), "loss": last,
    });
    println!("{j}");
    Ok(())
}

fn train_bench(
    set: &MolSet,
    stats: &datasets::molbatch::MolStats,
    preset: &str,
    reps: usize,
    dev: &Device,
) -> Result<()> {
    let cfg = MorphConfig::preset(preset)?;
    let bs = cfg.train.batch_size;
    if set.len() < bs * (reps + 1) {
        bail!(
            "need {} molecules for {} steps of {bs}",
            bs * (reps + 1),
            reps + 1
        );
    }
    let meta = ModelMeta::new(cfg, set, stats)?;
    let mut tr = Trainer::new(meta, dev)?;
    let mut times = Vec::new();
    let mut losses = Vec::new();
    for step in 0..reps + 1 {
        let idx: Vec<usize> = (step * bs..(step + 1) * bs).collect();
        let t0 = Instant::now();
        let log = tr.step(set, &idx, step)?;
        let dt = t0.elapsed().as_secs_f64();
        losses.push(log.loss);
        if step > 0 {
            times.push(dt);
        }
    }
    // Where one step goes (same pieces as Trainer::step, without the update).
    let cfg = &tr.meta.config;
    let prior = Prior::new(stats, cfg.flow.prior_extra)?;
    let mut parts = [0f64; 5];
    for step in 0..reps {
        let idx: Vec<usize> = (step * bs..(step + 1) * bs).collect();
        let recs: Vec<_> = idx.iter().map(|&i| &set.records[i]).collect();
        let props = tr.meta.cond_values(&recs);
        let t0 = Instant::now();
        let samples = make_batch(&recs, &props, &prior, &cfg.flow, 0.1, step as u64);
        let t1 = Instant::now();
        let batch = collate(&samples, dev)?;
        let t2 = Instant::now();
        let out = tr.net.forward(&batch.input)?;
        let t3 = Instant::now();
        let l = morph::loss::compute(&tr.net, &out, &batch)?;
        let t4 = Instant::now();
        let _g = l.total.backward()?;
        dev.synchronize()?;
        let t5 = Instant::now();
        for (p, d) in parts
            .iter_mut()
            .zip([t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4])
        {
            *p += d.as_secs_f64() * 1e3 / reps as f64;
        }
    }
    let med = median(times.clone());
    let j = serde_json::json!({
        "mean_ms": {"interpolant": parts[0], "collate": parts[1], "forward": parts[2],
                    "loss": parts[3], "backward": parts[4]},
        "impl": "morph-train", "preset": preset, "batch": bs, "threads": threads(),
        "ms_step": med * 1e3, "mol_per_s": bs as f64 / med,
        "times_ms": times.iter().map(|t| t * 1e3).collect::<Vec<_>>(), "losses": losses,
    });
    println!("{j}");
    Ok(())
}
