//! `stage2.condition_path` (a linear path from the condition embedding,
//! not in the paper): zero-initialised it leaves the paper network
//! unchanged; the shift path is an exact input translation; the option
//! round-trips through model directories, and directories written before the
//! option existed still load as the paper network.
use candle_core::{Device, Tensor};
use lcd::config::ConditionPath;
use lcd::rng::TensorRng;
use lcd::stage2::ScoreNet;
use lcd::synthetic::Synthetic;
use lcd::{LcdConfig, LcdModel};

const D: usize = 6;
const V: usize = 4;
const H: usize = 16;

fn net(path: ConditionPath, seed: u64) -> anyhow::Result<ScoreNet> {
    let dev = Device::Cpu;
    let mut rng = TensorRng::new(seed, &dev)?;
    let sigmas = LcdConfig::quick().sigmas();
    Ok(ScoreNet::init_with(D, V, sigmas, H, path, &mut rng, &dev)?)
}

fn flat(t: &Tensor) -> anyhow::Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

/// Drift of `n` at `x` under the multi-hot condition `mh` (`[1, V]`) at `level`.
fn drift(n: &ScoreNet, x: &Tensor, mh: &Tensor, level: u32) -> anyhow::Result<Tensor> {
    let w = n.params.detached();
    let rows = x.dim(0)?;
    let e = n.condition_embedding(&w, mh)?;
    let levels = Tensor::from_vec(vec![level; rows], rows, x.device())?;
    let sigma = n.sigma_of(&vec![level; rows], x.device())?;
    Ok(n.drift(&w, x, &levels, &sigma, &e)?)
}

fn inputs() -> anyhow::Result<(Tensor, Tensor)> {
    let dev = Device::Cpu;
    let mut r = TensorRng::new(77, &dev)?;
    let x = r.normal(&[9, D])?;
    let mh = Tensor::from_vec(vec![1f32, 0., 1., 0.], (1, V), &dev)?;
    Ok((x, mh))
}

#[test]
fn zero_initialised_paths_equal_the_paper_network() -> anyhow::Result<()> {
    let (x, mh) = inputs()?;
    let paper = net(ConditionPath::None, 3)?;
    assert_eq!(paper.condition_path()?, ConditionPath::None);
    for path in [ConditionPath::Shift, ConditionPath::Output] {
        let n = net(path, 3)?;
        assert_eq!(n.condition_path()?, path);
        // Exactly one extra parameter, every shared one identical.
        assert_eq!(n.params.names().len(), paper.params.names().len() + 1);
        for name in paper.params.names() {
            assert_eq!(
                flat(&n.params.get(&name)?)?,
                flat(&paper.params.get(&name)?)?,
                "{name}"
            );
        }
        for level in [0, 14, 29] {
            assert_eq!(
                flat(&drift(&n, &x, &mh, level)?)?,
                flat(&drift(&paper, &x, &mh, level)?)?,
                "{path:?} level {level}"
            );
        }
    }
    Ok(())
}

#[test]
fn shift_path_translates_the_input_and_output_path_adds() -> anyhow::Result<()> {
    let (x, mh) = inputs()?;
    let dev = Device::Cpu;
    let paper = net(ConditionPath::None, 5)?;
    let mut r = TensorRng::new(8, &dev)?;
    let wmat = r.normal(&[H, D])?;
    let e = paper.condition_embedding(&paper.params.detached(), &mh)?; // [1, H]
    let lin = e.matmul(&wmat)?; // [1, D]

    // Shift: f(x, σ, e) = f_paper(x − e·W, σ, e).
    let shift = net(ConditionPath::Shift, 5)?;
    shift.params.get("cshift.w")?; // present
    let names = shift.params.names();
    let vars = shift.params.vars();
    let i = names
        .iter()
        .position(|n| n == "cshift.w")
        .expect("cshift.w");
    vars[i].set(&wmat)?;
    // Output: F += e·W, i.e. f = f_paper − e·W/σ.
    let out = net(ConditionPath::Output, 5)?;
    let names = out.params.names();
    let i = names.iter().position(|n| n == "cout.w").expect("cout.w");
    out.params.vars()[i].set(&wmat)?;
    let sigmas = LcdConfig::quick().sigmas();
    for level in [0u32, 10, 29] {
        let a = flat(&drift(&shift, &x, &mh, level)?)?;
        let b = flat(&drift(&paper, &x.broadcast_sub(&lin)?, &mh, level)?)?;
        let scale = a.iter().fold(1f32, |m, v| m.max(v.abs()));
        for (u, v) in a.iter().zip(&b) {
            assert!((u - v).abs() <= 1e-5 * scale, "level {level}: {u} vs {v}");
        }
        assert!(a != flat(&drift(&paper, &x, &mh, level)?)?);

        let s = sigmas[level as usize] as f32;
        let a = flat(&drift(&out, &x, &mh, level)?)?;
        let p = flat(&drift(&paper, &x, &mh, level)?)?;
        let l = flat(&lin.broadcast_as((9, D))?.contiguous()?)?;
        let scale = a.iter().fold(1f32, |m, v| m.max(v.abs()));
        for ((u, v), w) in a.iter().zip(&p).zip(&l) {
            assert!(
                (u - (v - w / s)).abs() <= 1e-3 * scale,
                "level {level}: {u} vs {}",
                v - w / s
            );
        }
    }
    Ok(())
}

fn tiny_cfg(path: ConditionPath) -> LcdConfig {
    let mut c = LcdConfig::quick();
    c.noise_model = false;
    c.stage2.hidden = 16;
    c.stage2.steps = 20;
    c.stage2.batch = 32;
    c.stage2.condition_path = path;
    c.sampler.steps_per_level = 2;
    c.sampler.chains = 5;
    c.sampler.decodes_per_chain = 1;
    c
}

#[test]
fn model_directories_round_trip_and_old_ones_load() -> anyhow::Result<()> {
    let sim = Synthetic::new(4, 11);
    let data = sim.training(&[(0, 1)], 30, false, 4);
    let tmp = tempfile::tempdir()?;
    let cond = [vec!["G0".to_string(), "G1".to_string()]];
    for path in [ConditionPath::None, ConditionPath::Shift] {
        let c = tiny_cfg(path);
        let m = LcdModel::fit(&data, &c, 2, &Device::Cpu, &mut |_, _, _, _| {})?;
        assert_eq!(m.net.condition_path()?, path);
        if path == ConditionPath::Shift {
            // Trained: the shift weights moved off zero.
            let w = flat(&m.net.params.get("cshift.w")?)?;
            assert!(w.iter().any(|v| *v != 0.0));
        }
        let dir = tmp.path().join(format!("{path:?}"));
        m.save(&dir, false, serde_json::json!({}))?;
        let (back, _) = LcdModel::load(&dir, &Device::Cpu)?;
        assert_eq!(back.cfg, c);
        assert_eq!(back.net.condition_path()?, path);
        let p = m.predict(&cond, 5, 1, |_, _| {})?;
        let q = back.predict(&cond, 5, 1, |_, _| {})?;
        assert_eq!(p[0].cells, q[0].cells);

        // A config.toml written before the option existed has no such key.
        let cfg_path = dir.join("config.toml");
        let text = std::fs::read_to_string(&cfg_path)?;
        assert!(text.contains("condition_path"), "{text}");
        let old: String = text
            .lines()
            .filter(|l| !l.starts_with("condition_path"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&cfg_path, old)?;
        match path {
            ConditionPath::None => {
                let (back, _) = LcdModel::load(&dir, &Device::Cpu)?;
                assert_eq!(back.cfg.stage2.condition_path, ConditionPath::None);
                assert_eq!(back.predict(&cond, 5, 1, |_, _| {})?[0].cells, p[0].cells);
            }
            _ => {
                // Weights and config disagree: a clear error, not a silent paper network.
                let e = LcdModel::load(&dir, &Device::Cpu)
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                assert!(e.contains("condition_path") && e.contains("Shift"), "{e}");
            }
        }
    }
    Ok(())
}
