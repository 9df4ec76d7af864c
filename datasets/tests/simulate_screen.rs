//! Simulated screens: layout of the AnnData, recovery of the truth from
//! `uns["simulation"]`, statistics of the cells against the closed forms,
//! and genetic interactions in the nonlinear simulator.
use std::collections::HashMap;

use datasets::anndata::{Column, DenseArray, Matrix, Scalar, Value};
use datasets::simulate::{
    simulate_screen, Drift, GraphKind, SimKind, SimulatedScreen, SimulationConfig, TrueSystem,
};
use ndarray::{Array1, Array2, Axis, Ix2};

fn run(cfg: &SimulationConfig) -> SimulatedScreen {
    simulate_screen(cfg, &|_, _| {}).expect("simulation")
}

fn dense_f64(m: &Matrix) -> Array2<f64> {
    match m {
        Matrix::Dense(a) => a
            .to_f64()
            .expect("numeric")
            .into_dimensionality::<Ix2>()
            .expect("2-D"),
        Matrix::Sparse(s) => {
            let mut out = Array2::zeros(s.shape);
            for r in 0..s.shape.0 {
                for k in s.indptr.get(r) as usize..s.indptr.get(r + 1) as usize {
                    out[[r, s.indices.get(k) as usize]] = s.data.get_f64(k);
                }
            }
            out
        }
    }
}

/// Mean state per condition label.
fn condition_means(sim: &SimulatedScreen, layer: Option<&str>) -> HashMap<String, Array1<f64>> {
    let x = match layer {
        None => dense_f64(sim.adata.x.as_ref().expect("X")),
        Some(l) => dense_f64(&sim.adata.layers[l]),
    };
    let labels = sim
        .adata
        .obs
        .column("perturbation")
        .expect("perturbation")
        .labels();
    let mut out = HashMap::new();
    for c in &sim.conditions {
        let rows: Vec<usize> = labels
            .iter()
            .enumerate()
            .filter(|(_, l)| l.as_deref() == Some(c.as_str()))
            .map(|(i, _)| i)
            .collect();
        let m = x
            .select(Axis(0), &rows)
            .mean_axis(Axis(0))
            .expect("non-empty");
        out.insert(c.clone(), m);
    }
    out
}

/// Additive prediction of every double, `m_a + m_b − m_ctrl`, against its
/// observed mean: (mean |error| over doubles and genes, mean z² where z is
/// the error over its sampling standard error; z² ≈ 1 when additivity holds).
pub fn additive_error(sim: &SimulatedScreen) -> (f64, f64) {
    let x = dense_f64(sim.adata.x.as_ref().expect("X"));
    let labels = sim
        .adata
        .obs
        .column("perturbation")
        .expect("perturbation")
        .labels();
    let stats = |c: &str| {
        let rows: Vec<usize> = labels
            .iter()
            .enumerate()
            .filter(|(_, l)| l.as_deref() == Some(c))
            .map(|(i, _)| i)
            .collect();
        let b = x.select(Axis(0), &rows);
        (
            b.mean_axis(Axis(0)).expect("mean"),
            b.var_axis(Axis(0), 1.0) / rows.len() as f64,
        )
    };
    let (mc, vc) = stats("control");
    let (mut abs, mut z2, mut n) = (0.0, 0.0, 0.0);
    for c in sim.conditions.iter().filter(|c| c.contains('+')) {
        let (a, b) = c.split_once('+').expect("double");
        let ((ma, va), (mb, vb), (mab, vab)) = (stats(a), stats(b), stats(c));
        let err = &ma + &mb - &mc - &mab;
        let var = &va + &vb + &vc + &vab;
        abs += err.mapv(f64::abs).mean().unwrap_or(0.0);
        z2 += (&err * &err / &var).mean().unwrap_or(0.0);
        n += 1.0;
    }
    (abs / n, z2 / n)
}

#[test]
fn linear_screen_layout_and_truth() {
    let cfg = SimulationConfig {
        genes: 30,
        perturbed: 6,
        doubles: 5,
        cells_per_condition: 400,
        seed: 3,
        ..Default::default()
    };
    let sim = run(&cfg);
    let ad = &sim.adata;
    assert_eq!(ad.n_obs(), (1 + 6 + 5) * 400);
    assert_eq!(ad.n_vars(), 30);
    assert_eq!(ad.var_names()[17], "G17");
    match ad.obs.column("perturbation") {
        Some(Column::Categorical { categories, .. }) => {
            let cats: Vec<String> = match categories {
                DenseArray::String(s) => s.iter().cloned().collect(),
                _ => panic!("string categories"),
            };
            assert_eq!(cats[0], "control");
            assert!(cats[1..7]
                .iter()
                .all(|c| c.starts_with('G') && !c.contains('+')));
            assert!(cats[7..].iter().all(|c| c.split('+').count() == 2));
        }
        other => panic!("expected a categorical perturbation column, got {other:?}"),
    }
    // Truth: varp[true_effects] = W = Aᵀ, and the system is rebuilt from uns.
    let rebuilt = TrueSystem::from_anndata(ad).expect("rebuild");
    assert_eq!(rebuilt, sim.system);
    let TrueSystem::Linear(lin) = &rebuilt else {
        panic!("linear")
    };
    let te = dense_f64(&ad.varp["true_effects"]);
    assert_eq!(te, lin.a.t().to_owned());
    let Some(Value::Dict(u)) = ad.uns.get("simulation") else {
        panic!("uns/simulation")
    };
    assert_eq!(u["kind"], Value::Scalar(Scalar::String("linear".into())));
    let res = sim.lyapunov_residual.expect("residual");
    assert!(res < 1e-8, "Lyapunov residual {res}");
    // Cells: per-condition means match −A⁻¹(b + c_q) within sampling error;
    // the control covariance matches Σ.
    let (sigma, _) = lin.stationary_covariance().expect("Σ");
    let means = condition_means(&sim, None);
    let labels = &sim.conditions;
    for c in labels {
        let targets: Vec<usize> = if c == "control" {
            vec![]
        } else {
            c.split('+').map(|g| g[1..].parse().expect("Gk")).collect()
        };
        let mu = lin.fixed_point(&targets).expect("mean");
        for g in 0..30 {
            let se = (sigma[[g, g]] / 400.0).sqrt();
            assert!(
                (means[c][g] - mu[g]).abs() < 5.0 * se + 1e-5,
                "{c} gene {g}: {} vs {}",
                means[c][g],
                mu[g]
            );
        }
    }
    let x = dense_f64(ad.x.as_ref().expect("X"));
    let ctrl = x.slice(ndarray::s![0..400, ..]).to_owned();
    let centred = &ctrl - &ctrl.mean_axis(Axis(0)).expect("mean");
    let cov = centred.t().dot(&centred) / 399.0;
    let scale = sigma.diag().iter().cloned().fold(0.0, f64::max);
    let err = (&cov - &sigma).iter().map(|v| v.abs()).fold(0.0, f64::max);
    assert!(err < 0.25 * scale, "covariance error {err} (scale {scale})");
    // Linear doubles are exactly additive in the mean: only sampling noise remains.
    let (_, z2) = additive_error(&sim);
    assert!(
        z2 < 1.5,
        "linear doubles should be additive up to noise, mean z² = {z2}"
    );
}

#[test]
fn deterministic_and_seed_sensitive() {
    let cfg = SimulationConfig {
        genes: 20,
        perturbed: 4,
        doubles: 3,
        cells_per_condition: 20,
        seed: 9,
        graph: GraphKind::Sf,
        degree: 2.0,
        ..Default::default()
    };
    let a = run(&cfg);
    let b = run(&cfg);
    assert_eq!(a.adata, b.adata);
    let c = run(&SimulationConfig {
        seed: 10,
        ..cfg.clone()
    });
    assert_ne!(a.adata.x, c.adata.x);
    let nl = SimulationConfig {
        kind: SimKind::Nonlinear,
        ..cfg
    };
    assert_eq!(run(&nl).adata, run(&nl).adata);
}

#[test]
fn counts_layer_is_zip_of_latent() {
    let cfg = SimulationConfig {
        genes: 15,
        perturbed: 3,
        doubles: 1,
        cells_per_condition: 500,
        counts: true,
        seed: 4,
        ..Default::default()
    };
    let sim = run(&cfg);
    let ad = &sim.adata;
    let Some(Matrix::Sparse(s)) = &ad.x else {
        panic!("counts in X should be CSR")
    };
    assert_eq!(s.shape, (5 * 500, 15));
    let counts = dense_f64(ad.x.as_ref().expect("X"));
    assert!(counts.iter().all(|v| *v >= 0.0 && v.fract() == 0.0));
    let latent = dense_f64(&ad.layers["latent"]);
    let Some(Value::Dict(u)) = ad.uns.get("simulation") else {
        panic!("uns")
    };
    let get = |k: &str| match &u[k] {
        Value::Array(a) => a
            .to_f64()
            .expect("num")
            .into_dimensionality::<ndarray::Ix1>()
            .expect("1-D"),
        _ => panic!("{k}"),
    };
    let (pi, uu) = (get("zip_pi"), get("zip_u"));
    // E[x_g] = (1 − π_g) u_g mean(softplus(s_g)), checked per gene over all cells.
    for g in 0..15 {
        let lam: Vec<f64> = latent
            .column(g)
            .iter()
            .map(|&s| uu[g] * datasets::simulate::counts::softplus(s))
            .collect();
        let expected = (1.0 - pi[g]) * lam.iter().sum::<f64>() / lam.len() as f64;
        let var_bound = lam.iter().map(|l| l * (1.0 + l)).sum::<f64>() / lam.len() as f64;
        let mean = counts.column(g).mean().expect("mean");
        let se = (var_bound / counts.nrows() as f64).sqrt();
        assert!(
            (mean - expected).abs() < 5.0 * se,
            "gene {g}: {mean} vs {expected}"
        );
    }
}

#[test]
fn nonlinear_doubles_are_not_additive() {
    let base = SimulationConfig {
        genes: 40,
        perturbed: 8,
        doubles: 12,
        cells_per_condition: 300,
        seed: 5,
        ..Default::default()
    };
    let nl = run(&SimulationConfig {
        kind: SimKind::Nonlinear,
        ..base.clone()
    });
    let lin = run(&base);
    let ((a_nl, z_nl), (a_lin, z_lin)) = (additive_error(&nl), additive_error(&lin));
    eprintln!("additive prediction of doubles: nonlinear mean|err| {a_nl:.4} mean z² {z_nl:.2}; linear {a_lin:.4}, z² {z_lin:.2}");
    assert!(z_lin < 1.5, "linear z² {z_lin}");
    assert!(
        z_nl > 2.5,
        "nonlinear doubles look additive: mean z² {z_nl}"
    );
    // The stored truth is the transposed Jacobian at the control fixed point.
    let TrueSystem::Nonlinear(sys) = TrueSystem::from_anndata(&nl.adata).expect("rebuild") else {
        panic!("nonlinear")
    };
    let x0 = sys.fixed_point(&[]).expect("fp");
    let te = dense_f64(&nl.adata.varp["true_effects"]);
    assert!((&te - &sys.jacobian(x0.view()).t())
        .iter()
        .all(|v| v.abs() < 1e-12));
}

/// Timing of a d = 1000 nonlinear screen (not a check; run with
/// `cargo test -p datasets --release --test simulate_screen -- --ignored --nocapture`).
#[test]
#[ignore]
fn nonlinear_d1000_timing() {
    let cfg = SimulationConfig {
        kind: SimKind::Nonlinear,
        genes: 1000,
        perturbed: 20,
        doubles: 20,
        cells_per_condition: 200,
        seed: 1,
        ..Default::default()
    };
    let t = std::time::Instant::now();
    let sim = run(&cfg);
    eprintln!(
        "nonlinear d=1000, {} cells: {:.2} s",
        sim.adata.n_obs(),
        t.elapsed().as_secs_f64()
    );
}
