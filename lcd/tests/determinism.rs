//! Same seed + same device → identical predictions; different seed → different.
use candle_core::Device;
use lcd::synthetic::Synthetic;
use lcd::{LcdConfig, LcdModel};

fn cfg() -> LcdConfig {
    let mut c = LcdConfig::quick();
    c.stage1.steps = 15;
    c.stage1.warmup = 3;
    c.stage1.mc_samples = 96;
    c.stage1.mc_chunk = 32; // exercises the chunked two-pass gradient
    c.stage1.latent_per_env = 200;
    c.stage2.hidden = 32;
    c.stage2.steps = 30;
    c.stage2.batch = 64;
    c.sampler.steps_per_level = 2;
    c.sampler.chains = 20;
    c.sampler.decodes_per_chain = 2;
    c
}

#[test]
fn same_seed_same_predictions() -> anyhow::Result<()> {
    let sim = Synthetic::new(5, 3);
    let data = sim.training(&[(0, 1)], 60, true, 9);
    let run = |seed: u64| -> anyhow::Result<(Vec<f32>, Vec<f32>)> {
        let m = LcdModel::fit(&data, &cfg(), seed, &Device::Cpu, &mut |_, _, _, _| {})?;
        let p = m.predict(&[vec!["G2".into(), "G3".into()]], 20, 5, |_, _| {})?;
        Ok((
            p[0].cells.iter().cloned().collect(),
            p[0].latent.iter().cloned().collect(),
        ))
    };
    let a = run(1)?;
    let b = run(1)?;
    assert_eq!(a.0, b.0);
    assert_eq!(a.1, b.1);
    let c = run(2)?;
    assert_ne!(a.1, c.1);
    Ok(())
}

#[test]
fn save_load_round_trip_and_refuse_overwrite() -> anyhow::Result<()> {
    let sim = Synthetic::new(4, 5);
    let data = sim.training(&[], 40, false, 2);
    let mut c = cfg();
    c.noise_model = false;
    let m = LcdModel::fit(&data, &c, 0, &Device::Cpu, &mut |_, _, _, _| {})?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("model");
    m.save(&path, false, serde_json::json!({"fold": null}))?;
    let err = m
        .save(&path, false, serde_json::Value::Null)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("--force"), "{err}");
    let (back, _) = LcdModel::load(&path, &Device::Cpu)?;
    assert_eq!(back.genes(), m.genes());
    let x = candle_core::Tensor::zeros((3, 4), candle_core::DType::F32, &Device::Cpu)?;
    let t = vec!["G1".to_string()];
    let d1 = m.drift(&x, 29, &t)?.flatten_all()?.to_vec1::<f32>()?;
    let d2 = back.drift(&x, 29, &t)?.flatten_all()?.to_vec1::<f32>()?;
    assert_eq!(d1, d2);
    // Unseen-but-known gene → mean embedding; unknown name → error.
    let (_, unseen) = back.embedding(&["G1".to_string()])?;
    assert!(unseen.is_empty());
    assert!(back.embedding(&["NOPE".to_string()]).is_err());
    // A half-written directory (no COMPLETE marker) does not load.
    let broken = dir.path().join("broken");
    std::fs::create_dir_all(&broken)?;
    std::fs::write(broken.join("weights.safetensors"), b"partial")?;
    let err = LcdModel::load(&broken, &Device::Cpu)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("COMPLETE"), "{err}");
    Ok(())
}
