//! Diagnostic (not a test of behaviour): dump conformers of real graphs under
//! several integration settings as JSON for offline analysis.
//! `FE_DIAG_MODEL=dir FE_DIAG_SDF=file FE_DIAG_OUT=out.json cargo test -p morph
//! --test expand_diag_dump -- --ignored --nocapture`.
use candle_core::{Device, Tensor};
use morph::expand::flow::{Flow, Interpolant};
use morph::expand::molecular::{select_graphs, MorphFlow};
use morph::expand::verifier::rows;
use rand::SeedableRng;

#[test]
#[ignore]
fn dump_conformers() {
    let (Ok(dir), Ok(sdf), Ok(out)) = (
        std::env::var("FE_DIAG_MODEL"),
        std::env::var("FE_DIAG_SDF"),
        std::env::var("FE_DIAG_OUT"),
    ) else {
        return;
    };
    let n_graphs: usize = std::env::var("FE_DIAG_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    let dev = Device::Cpu;
    let model = morph::io::ModelDir::load(std::path::Path::new(&dir), &dev).expect("model");
    let meta = &model.meta;
    let w =
        candle_core::safetensors::load(std::path::Path::new(&dir).join("model.safetensors"), &dev)
            .expect("w");
    let mols = molecules::read_molecules_path(std::path::Path::new(&sdf)).expect("sdf");
    let chosen = select_graphs(&mols, &sdf, meta, n_graphs, 0).expect("select");
    let std = meta.stats.coord_std;
    let mut all = Vec::new();
    let nb = 16;
    for c in &chosen {
        let f = MorphFlow::from_weights(
            meta.dims(),
            meta.config.net.backbone_spec(),
            &w,
            c.graph.clone(),
            false,
            &dev,
        )
        .expect("flow");
        let n = c.graph.n();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let z = f.noise(nb, &mut rng).expect("noise");
        let xr = Tensor::from_vec(c.reference.clone(), (1, n, 3), &dev)
            .expect("t")
            .broadcast_as((nb, n, 3))
            .expect("b")
            .contiguous()
            .expect("c");
        let mut sets = serde_json::Map::new();
        for &(t0, steps, sde) in &[
            (0.0, 20, false),
            (0.0, 100, false),
            (0.3, 20, false),
            (0.5, 20, false),
            (0.6, 20, false),
            (0.7, 20, false),
            (0.8, 20, false),
            (0.9, 20, false),
            (0.5, 20, true),
            (0.7, 20, true),
        ] {
            let mut x = ((&xr * t0).expect("a") + (&z * (1.0 - t0)).expect("b")).expect("c");
            let ts: Vec<f64> = (0..=steps)
                .map(|k| t0 + (1.0 - t0) * k as f64 / steps as f64)
                .collect();
            let mut nrng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
            for k in 0..steps {
                let (t, t2) = (ts[k], ts[k + 1]);
                let v = f.velocity_at(&x, t).expect("v");
                if sde && t > 0.0 && t2 < 1.0 {
                    let xi = morph::expand::flow::randn(&mut nrng, x.dims(), &dev).expect("r");
                    let ip = Interpolant;
                    let h = t2 - t;
                    let drift =
                        ((&v * 2.0).expect("d") - (&x * ip.kappa(t)).expect("k")).expect("e");
                    x = ((&x + (drift * h).expect("f")).expect("g")
                        + (xi * (ip.sigma(t) * h.sqrt())).expect("h"))
                    .expect("i");
                } else {
                    x = (&x + (v * (t2 - t)).expect("d")).expect("e");
                }
            }
            let x = x.broadcast_sub(&x.mean_keepdim(1).expect("m")).expect("s");
            let r: Vec<Vec<f64>> = rows(&x)
                .expect("rows")
                .iter()
                .map(|r| r.iter().map(|v| f64::from(*v) * std).collect())
                .collect();
            sets.insert(
                format!("t0={t0} steps={steps} sde={sde}"),
                serde_json::json!(r),
            );
        }
        let m = c.graph.molecule(&c.reference, &meta.vocab, std).expect("m");
        let els: Vec<u8> = m.elements.iter().map(|e| e.0).collect();
        let bonds: Vec<(usize, usize, u8)> = m
            .bond_list()
            .map(|(i, j, o, _)| (i, j, o.mdl_code()))
            .collect();
        all.push(serde_json::json!({
            "index": c.index,
            "smiles": c.smiles,
            "elements": els,
            "bonds": bonds,
            "reference": c.reference.iter().map(|v| f64::from(*v) * std).collect::<Vec<_>>(),
            "sets": sets,
        }));
        eprintln!("graph #{} done", c.index);
    }
    std::fs::write(&out, serde_json::to_string(&all).expect("json")).expect("write");
}
