//! End-to-end learning checks on the tiny synthetic screen (both modes).
use candle_core::Device;
use lcd::synthetic::Synthetic;
use lcd::{LcdConfig, LcdModel};
use ndarray::Axis;

fn rmse(a: &[f64], b: &[f64]) -> f64 {
    (a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>() / a.len() as f64).sqrt()
}

fn tiny(noise: bool) -> LcdConfig {
    let mut c = LcdConfig::quick();
    c.noise_model = noise;
    c.stage1.steps = 200;
    c.stage1.lr = 1e-3;
    c.stage1.warmup = 20;
    c.stage1.latent_per_env = 500;
    c.stage2.hidden = 64;
    c.stage2.steps = 800;
    c.stage2.batch = 256;
    c.sampler.steps_per_level = 30;
    c.sampler.step_base = 1e-5;
    c.sampler.chains = 200;
    c.sampler.decodes_per_chain = 1;
    c
}

#[test]
fn no_noise_model_predicts_heldout_double() -> anyhow::Result<()> {
    let sim = Synthetic::new(8, 7);
    let data = sim.training(&[(0, 1), (2, 3), (4, 5)], 300, false, 1);
    let cfg = tiny(false);
    let t = std::time::Instant::now();
    let model = LcdModel::fit(&data, &cfg, 1, &Device::Cpu, &mut |_, _, _, _| {})?;
    eprintln!("fit {:.1}s", t.elapsed().as_secs_f64());
    let pred = model.predict(&[vec!["G6".into(), "G7".into()], vec![]], 200, 2, |_, _| {})?;
    let truth = sim.mean(&[6, 7]);
    let got: Vec<f64> = pred[0]
        .cells
        .mean_axis(Axis(0))
        .map(|m| m.iter().map(|&v| f64::from(v)).collect())
        .unwrap_or_default();
    let ctrl = sim.mean(&[]);
    let e_lcd = rmse(&got, &truth);
    let e_ctrl = rmse(&ctrl, &truth);
    eprintln!(
        "rmse lcd {e_lcd:.3} control {e_ctrl:.3} total {:.1}s",
        t.elapsed().as_secs_f64()
    );
    assert!(e_lcd < 0.5 * e_ctrl, "lcd {e_lcd} vs control {e_ctrl}");
    Ok(())
}

#[test]
fn noise_model_on_counts_beats_control() -> anyhow::Result<()> {
    let sim = Synthetic::new(8, 11);
    let data = sim.training(&[(0, 1), (2, 3), (4, 5)], 300, true, 5);
    let cfg = tiny(true);
    let t = std::time::Instant::now();
    let mut last = (0.0, 0.0);
    let model = LcdModel::fit(&data, &cfg, 3, &Device::Cpu, &mut |s, i, _, l| {
        if s == "stage 1" && i == 1 {
            last.0 = l;
        }
        if s == "stage 1" {
            last.1 = l;
        }
    })?;
    eprintln!(
        "fit {:.1}s stage-1 loss {:.3} -> {:.3}",
        t.elapsed().as_secs_f64(),
        last.0,
        last.1
    );
    assert!(last.1 < last.0, "stage 1 loss did not decrease: {last:?}");
    let pred = model.predict(&[vec!["G6".into(), "G7".into()]], 300, 2, |_, _| {})?;
    let truth = sim.cells(&[6, 7], 2000, true, 99);
    let tm: Vec<f64> = truth
        .mean_axis(Axis(0))
        .map(|m| m.iter().map(|&v| f64::from(v)).collect())
        .unwrap_or_default();
    let got: Vec<f64> = pred[0]
        .cells
        .mean_axis(Axis(0))
        .map(|m| m.iter().map(|&v| f64::from(v)).collect())
        .unwrap_or_default();
    let ctrl = data.envs[0]
        .x
        .mean_axis(Axis(0))
        .map(|m| m.iter().map(|&v| f64::from(v)).collect::<Vec<f64>>())
        .unwrap_or_default();
    let e_lcd = rmse(&got, &tm);
    let e_ctrl = rmse(&ctrl, &tm);
    eprintln!(
        "count-mean rmse lcd {e_lcd:.3} control {e_ctrl:.3} (total {:.1}s)",
        t.elapsed().as_secs_f64()
    );
    assert!(e_lcd < 0.6 * e_ctrl, "lcd {e_lcd} vs control {e_ctrl}");
    Ok(())
}
