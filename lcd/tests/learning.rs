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
    c.stage1.steps = 300;
    c.stage1.latent_per_env = 500;
    c.stage2.hidden = 128;
    c.stage2.steps = 1500;
    c.stage2.batch = 256;
    c.sampler.steps_per_level = 20;
    c.sampler.chains = 300;
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
    let pred = model.predict(&[vec!["G6".into(), "G7".into()], vec![]], 300, 2, |_, _| {})?;
    let truth = sim.mean(&[6, 7]);
    let got: Vec<f64> = pred[0].cells.mean_axis(Axis(0)).map(|m| m.iter().map(|&v| f64::from(v)).collect()).unwrap_or_default();
    let ctrl = sim.mean(&[]);
    let e_lcd = rmse(&got, &truth);
    let e_ctrl = rmse(&ctrl, &truth);
    eprintln!("rmse lcd {e_lcd:.3} control {e_ctrl:.3} total {:.1}s", t.elapsed().as_secs_f64());
    assert!(e_lcd < 0.5 * e_ctrl, "lcd {e_lcd} vs control {e_ctrl}");
    Ok(())
}
