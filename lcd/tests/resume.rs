//! Resumable training (issue 8): a run stopped in stage 1 and again in stage 2,
//! then resumed from its checkpoints, ends bit-for-bit where an uninterrupted
//! run ends (CPU).
use std::collections::HashMap;

use candle_core::{Device, Tensor};
use datasets::train::{RunDir, StopSignal};
use datasets::DatasetsError;
use lcd::fit::{checkpoint_position, FitRun};
use lcd::synthetic::Synthetic;
use lcd::{LcdConfig, LcdError, LcdModel};

fn cfg() -> LcdConfig {
    let mut c = LcdConfig::quick();
    c.stage1.steps = 16;
    c.stage1.mc_samples = 64;
    c.stage1.mc_chunk = 32; // chunked two-pass gradient
    c.stage1.warmup = 4;
    c.stage1.latent_per_env = 100;
    c.stage2.hidden = 32;
    c.stage2.steps = 30;
    c.stage2.batch = 64;
    c.sampler.steps_per_level = 2;
    c.sampler.chains = 10;
    c.sampler.decodes_per_chain = 2;
    c.checkpoint_every = 5;
    c
}

fn weights(m: &LcdModel) -> anyhow::Result<Vec<(String, Vec<f32>)>> {
    let mut map: HashMap<String, Tensor> = HashMap::new();
    m.net.params.export("score.", &mut map);
    if let Some(s1) = &m.stage1 {
        s1.params.export("stage1.", &mut map);
    }
    let mut out: Vec<(String, Vec<f32>)> = map
        .into_iter()
        .map(|(k, t)| Ok((k, t.flatten_all()?.to_vec1::<f32>()?)))
        .collect::<anyhow::Result<_>>()?;
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Fit in `dir`, requesting a stop after (stage, step) if given.
fn fit(
    data: &lcd::data::TrainingData,
    c: &LcdConfig,
    dir: &RunDir,
    resume: bool,
    stop_at: Option<(&str, usize)>,
) -> lcd::Result<LcdModel> {
    let ck = dir.prepare(resume, false)?;
    let stop = StopSignal::never();
    let hook = stop.clone();
    let run = FitRun {
        dir,
        resume: ck,
        stop,
    };
    LcdModel::fit_run(data, c, 4, &Device::Cpu, &run, &mut |stage, step, _, _| {
        if stop_at == Some((stage, step)) {
            hook.request(15);
        }
    })
}

#[test]
fn stopped_twice_and_resumed_is_bit_for_bit() -> anyhow::Result<()> {
    let sim = Synthetic::new(5, 3);
    let data = sim.training(&[(0, 1)], 50, true, 9);
    let tmp = tempfile::tempdir()?;
    let c = cfg();

    let full_dir = RunDir::new(tmp.path().join("full"));
    let full = fit(&data, &c, &full_dir, false, None)?;

    let dir = RunDir::new(tmp.path().join("stopped"));
    // Stop after stage-1 step 8 (1-based progress count): checkpoint at step 8.
    match fit(&data, &c, &dir, false, Some(("stage 1", 8))) {
        Err(LcdError::Datasets(DatasetsError::Interrupted { step, signal, .. })) => {
            assert_eq!((step, signal), (8, 15));
        }
        Err(e) => return Err(e.into()),
        Ok(_) => anyhow::bail!("the stop request was ignored"),
    }
    // Without --resume the interrupted directory is refused.
    let e = dir
        .prepare(false, false)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("interrupted at step 8") && e.contains("--resume"),
        "{e}"
    );
    let ck = dir.load_checkpoint()?;
    assert_eq!(checkpoint_position(&ck), ("stage1".to_string(), 8));
    // A different seed cannot continue this checkpoint.
    let run = FitRun {
        dir: &dir,
        resume: Some(ck),
        stop: StopSignal::never(),
    };
    let e = LcdModel::fit_run(&data, &c, 5, &Device::Cpu, &run, &mut |_, _, _, _| {})
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("different config or seed"), "{e}");
    // Resume, stop again in stage 2 after step 12.
    match fit(&data, &c, &dir, true, Some(("stage 2", 12))) {
        Err(LcdError::Datasets(DatasetsError::Interrupted { step, .. })) => assert_eq!(step, 12),
        Err(e) => return Err(e.into()),
        Ok(_) => anyhow::bail!("the second stop request was ignored"),
    }
    assert_eq!(
        checkpoint_position(&dir.load_checkpoint()?),
        ("stage2".to_string(), 12)
    );
    let resumed = fit(&data, &c, &dir, true, None)?;

    assert_eq!(weights(&full)?, weights(&resumed)?);
    assert_eq!(full.mean_ctrl, resumed.mean_ctrl);
    assert_eq!(full.std_all, resumed.std_all);
    assert_eq!(full.pi, resumed.pi);
    let cond = [vec!["G1".to_string(), "G2".to_string()]];
    let p = full.predict(&cond, 10, 3, |_, _| {})?;
    let q = resumed.predict(&cond, 10, 3, |_, _| {})?;
    assert_eq!(p[0].cells, q[0].cells);
    assert_eq!(p[0].latent, q[0].latent);
    // Curves: the resumed run's history is complete (nothing lost, nothing repeated).
    let steps = |m: &LcdModel| {
        m.curves
            .iter()
            .map(|c| (c.stage.clone(), c.step, c.loss.to_bits()))
            .collect::<Vec<_>>()
    };
    assert_eq!(steps(&full), steps(&resumed));
    // The metrics log was appended across the three processes' worth of fitting.
    let log = datasets::train::read_metrics(&dir.path.join("curves.jsonl"))?;
    assert_eq!(log.len(), full.curves.len());

    // A hard kill leaves the last periodic checkpoint (stage 2 step 25 of 30)
    // and log lines after it: resuming from it also ends bit-for-bit, without
    // duplicated log lines.
    assert_eq!(
        checkpoint_position(&full_dir.load_checkpoint()?),
        ("stage2".to_string(), 25)
    );
    let again = fit(&data, &c, &full_dir, true, None)?;
    assert_eq!(weights(&full)?, weights(&again)?);
    let log = datasets::train::read_metrics(&full_dir.path.join("curves.jsonl"))?;
    assert_eq!(log.len(), full.curves.len());

    // Finishing: COMPLETE marker, checkpoint dropped, loads; a finished model is refused.
    resumed.save_run(&dir, serde_json::json!({}), false)?;
    assert!(dir.path.join(datasets::train::COMPLETE_MARKER).is_file());
    assert!(!dir.path.join("checkpoint").exists());
    let (back, _) = LcdModel::load(&dir.path, &Device::Cpu)?;
    assert_eq!(back.curves.len(), full.curves.len());
    assert!(dir.prepare(true, false).is_err());
    Ok(())
}

#[test]
fn interrupted_directory_does_not_load() -> anyhow::Result<()> {
    let sim = Synthetic::new(4, 5);
    let data = sim.training(&[], 40, false, 2);
    let mut c = cfg();
    c.noise_model = false;
    let tmp = tempfile::tempdir()?;
    let dir = RunDir::new(tmp.path().join("m"));
    assert!(fit(&data, &c, &dir, false, Some(("stage 2", 3))).is_err());
    let e = LcdModel::load(&dir.path, &Device::Cpu)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("interrupted at step 3"), "{e}");
    // and without the noise model it resumes bit-for-bit too
    let resumed = fit(&data, &c, &dir, true, None)?;
    let full = fit(
        &data,
        &c,
        &RunDir::new(tmp.path().join("full")),
        false,
        None,
    )?;
    assert_eq!(weights(&full)?, weights(&resumed)?);
    Ok(())
}
