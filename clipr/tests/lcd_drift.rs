//! The LCD adapter: unit conversion and batching agree with LCD's own
//! single-condition drift and noise-free sampler.
use candle_core::{Device, Tensor};
use clipr::lcd_drift::LcdDrift;
use clipr::PerturbableDrift;
use lcd::{LcdConfig, LcdModel};
use ndarray::{array, Array2};

fn tiny_model() -> LcdModel {
    let d = 4;
    let mut cfg = LcdConfig::quick();
    cfg.noise_model = false;
    cfg.stage2.hidden = 16;
    cfg.sampler.steps_per_level = 5;
    let dev = Device::Cpu;
    let mut rng = lcd::rng::TensorRng::new(1, &dev).expect("rng");
    let genes: Vec<String> = (0..d).map(|g| format!("G{g}")).collect();
    // G3 is never perturbed in training
    let vocab: Vec<String> = genes[..3].to_vec();
    let net =
        lcd::stage2::ScoreNet::init(d, vocab.len(), cfg.sigmas(), 16, &mut rng, &dev).expect("net");
    LcdModel {
        cfg,
        genes,
        vocabulary: vocab,
        train_conditions: vec!["control".into()],
        mean_ctrl: vec![1.0, -2.0, 0.5, 3.0],
        std_all: vec![2.0, 0.5, 1.0, 4.0],
        pi: vec![],
        u: vec![],
        net,
        stage1: None,
        curves: vec![],
        seed: 1,
        device: dev,
    }
}

fn t2a(t: &Tensor) -> Array2<f64> {
    let (n, d) = t.dims2().expect("2-D");
    let v: Vec<f32> = t.flatten_all().and_then(|t| t.to_vec1()).expect("vec");
    Array2::from_shape_vec((n, d), v.into_iter().map(f64::from).collect()).expect("shape")
}

#[test]
fn lcd_drift_converts_units_and_batches_conditions() {
    let drift = LcdDrift::new(tiny_model()).expect("drift");
    assert_eq!(drift.perturbable(), vec![0, 1, 2]);
    let perts: Vec<Vec<usize>> = vec![vec![], vec![1], vec![0, 2], vec![3]];
    assert_eq!(drift.unseen(&perts), vec!["G3".to_string()]);
    let (shift, scale) = drift.standardisation();
    let (shift, scale) = (shift.clone(), scale.clone());
    // initial response = f_z(−shift/scale) / scale at σ_min, per condition
    let v = drift.initial_response(&perts).expect("v");
    let l = drift.limit_response(&perts).expect("l");
    let m = &drift.model;
    let names = |t: &Vec<usize>| t.iter().map(|&g| m.genes()[g].clone()).collect::<Vec<_>>();
    for (r, t) in perts.iter().enumerate() {
        let z0 = (-&shift / &scale)
            .insert_axis(ndarray::Axis(0))
            .mapv(|x| x as f32);
        let z0 = Tensor::from_vec(z0.iter().cloned().collect::<Vec<_>>(), (1, 4), m.device())
            .expect("t");
        let f = t2a(&m.drift(&z0, m.n_levels() - 1, &names(t)).expect("drift")) / &scale;
        for j in 0..4 {
            assert!(
                (f[[0, j]] - v[[r, j]]).abs() < 1e-4 * (1.0 + f[[0, j]].abs()),
                "row {r} gene {j}: {} vs {}",
                f[[0, j]],
                v[[r, j]]
            );
        }
        let x0 = Tensor::zeros((1, 4), candle_core::DType::F32, m.device()).expect("zeros");
        let lz = t2a(&m.sample_noise_free(&x0, &names(t)).expect("sample"));
        let want = lz.row(0).to_owned() * &scale + &shift;
        for j in 0..4 {
            assert!(
                (want[j] - l[[r, j]]).abs() < 1e-3 * (1.0 + want[j].abs()),
                "limit row {r} gene {j}: {} vs {}",
                want[j],
                l[[r, j]]
            );
        }
    }
    // the drift at a latent state equals the standardised drift divided by the scale
    let x = array![[0.3, -1.0, 2.0, 5.0]];
    let f = drift.drift(x.view(), &perts[1..2]).expect("f");
    let z = ((&x - &shift) / &scale).mapv(|v| v as f32);
    let zt =
        Tensor::from_vec(z.iter().cloned().collect::<Vec<_>>(), (1, 4), m.device()).expect("t");
    let fz = t2a(&m
        .drift(&zt, m.n_levels() - 1, &names(&perts[1]))
        .expect("drift"))
        / &scale;
    assert!((&fz - &f)
        .iter()
        .all(|e| e.abs() < 1e-4 * (1.0 + fz.iter().fold(0.0f64, |a, b| a.max(b.abs())))));
}
