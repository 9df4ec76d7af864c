//! End-to-end tests of `cellmol expand toy` (reduced sizes through --config).
use std::process::Command;

const SMALL: &str = r#"
n_data = 800
n_eval = 500
vendi_n = 120
[pretrain]
steps = 200
[actflow]
rounds = 1
n_candidates = 400
[actflow.train]
steps = 150
"#;

fn run(
    dir: &std::path::Path,
    cfg: &std::path::Path,
    seed: &str,
) -> anyhow::Result<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_cellmol"))
        .args([
            "expand", "toy", "--task", "ring", "--method", "rec-f", "--json", "--quiet", "--seed",
            seed, "--config",
        ])
        .arg(cfg)
        .arg("-o")
        .arg(dir)
        .output()?;
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

#[test]
fn toy_json_contract_pictures_and_reproducibility() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let cfg = tmp.path().join("small.toml");
    std::fs::write(&cfg, SMALL)?;
    let (d1, d2) = (tmp.path().join("a"), tmp.path().join("b"));
    let j1 = run(&d1, &cfg, "3")?;
    for side in ["before", "after"] {
        let obj = j1[side]
            .as_object()
            .ok_or_else(|| anyhow::anyhow!("missing {side}"))?;
        let mut keys: Vec<&str> = obj.keys().map(|k| k.as_str()).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["coverage", "validity", "vendi"]);
        for k in keys {
            let v = obj[k]
                .as_f64()
                .ok_or_else(|| anyhow::anyhow!("{side}.{k} not a number"))?;
            assert!(v.is_finite() && v >= 0.0);
        }
    }
    for f in [
        "before.png",
        "after.png",
        "data.png",
        "compare.png",
        "metrics.json",
    ] {
        let p = d1.join(f);
        assert!(
            std::fs::metadata(&p)?.len() > 100,
            "{} missing or empty",
            p.display()
        );
    }
    let png = std::fs::read(d1.join("after.png"))?;
    assert_eq!(&png[1..4], b"PNG");
    let j2 = run(&d2, &cfg, "3")?;
    assert_eq!(j1, j2, "same seed must give the same numbers");
    Ok(())
}

#[test]
fn bad_task_is_rejected() {
    let out = Command::new(env!("CARGO_BIN_EXE_cellmol"))
        .args([
            "expand",
            "toy",
            "--task",
            "spiral",
            "--method",
            "fe",
            "-o",
            "/tmp/never",
        ])
        .output()
        .expect("run cellmol");
    assert!(!out.status.success());
}
