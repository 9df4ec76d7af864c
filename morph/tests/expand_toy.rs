//! Integration tests of verifier-based expansion on the 2-D toy tasks, at a
//! reduced size (the default-size acceptance table is produced by
//! `cellmol expand toy`, see the issue report).
use candle_core::Device;
use morph::expand::actflow::ActFlowConfig;
use morph::expand::fe::ProjectMode;
use morph::expand::mlp::CfmConfig;
use morph::expand::toy::{run_toy, ToyConfig, ToyMethod, ToyTask};

fn small() -> ToyConfig {
    let mut c = ToyConfig::default();
    c.n_data = 1000;
    c.pretrain.steps = 400;
    c.n_eval = 800;
    c.vendi_n = 150;
    c.fe.iterations = 3;
    c.fe.expand.rounds = 6;
    c.fe.project_mode = ProjectMode::Rejection {
        n_samples: 1000,
        train: CfmConfig {
            steps: 300,
            batch: 256,
            lr: 2e-3,
            grad_clip: 1.0,
            ..CfmConfig::default()
        },
    };
    c.actflow = ActFlowConfig {
        rounds: 3,
        n_candidates: 900,
        train: CfmConfig {
            steps: 500,
            ..CfmConfig::default()
        },
        ..ActFlowConfig::default()
    };
    c
}

#[test]
fn fe_and_actflow_raise_ring_coverage() -> anyhow::Result<()> {
    let cfg = small();
    for method in [ToyMethod::Fe, ToyMethod::Actflow] {
        let out = run_toy(ToyTask::Ring, method, &cfg, &Device::Cpu, |_| {})?;
        eprintln!("{method:?}: before {:?} after {:?}", out.before, out.after);
        assert!(
            out.after.coverage > out.before.coverage + 0.05,
            "{method:?} coverage {} -> {}",
            out.before.coverage,
            out.after.coverage
        );
        // small runs: validity may move by a few points either way
        assert!(
            out.after.validity > out.before.validity - 0.05,
            "{method:?} validity {} -> {}",
            out.before.validity,
            out.after.validity
        );
    }
    Ok(())
}

#[test]
fn toy_runs_are_reproducible_from_the_seed() -> anyhow::Result<()> {
    let mut cfg = small();
    cfg.pretrain.steps = 150;
    cfg.actflow.rounds = 1;
    cfg.actflow.train.steps = 100;
    let a = run_toy(ToyTask::Boxes, ToyMethod::RecF, &cfg, &Device::Cpu, |_| {})?;
    let b = run_toy(ToyTask::Boxes, ToyMethod::RecF, &cfg, &Device::Cpu, |_| {})?;
    assert_eq!(a.after, b.after);
    assert_eq!(a.samples_after, b.samples_after);
    cfg.seed = 1;
    let c = run_toy(ToyTask::Boxes, ToyMethod::RecF, &cfg, &Device::Cpu, |_| {})?;
    assert_ne!(a.samples_after, c.samples_after);
    Ok(())
}

#[test]
fn invalid_config_names_the_field() {
    let mut cfg = ToyConfig::default();
    cfg.fe.epsilon = 0.7;
    let err = run_toy(ToyTask::Ring, ToyMethod::Fe, &cfg, &Device::Cpu, |_| {})
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("epsilon") && err.contains("0.7"), "{err}");
}
