//! Estimators on true drifts with a known answer.
#![allow(clippy::unwrap_used)]
mod common;

use clipr::estimate::{relative_error, symmetry_ratio};
use clipr::{
    causal_metrics, direction_aware, published, responses, LinearDrift, MetricOptions,
    PerturbableDrift, Targets,
};
use ndarray::{Array2, ArrayView2, Axis};
use ndarray_linalg::Inverse;

/// Row-normalise a drift matrix to unit self-decay: `A_ij / (−A_ii)`.
fn unit_decay(a: &Array2<f64>) -> Array2<f64> {
    let dg = a.diag().mapv(|v| -v);
    a / &dg.insert_axis(Axis(1))
}

#[test]
fn published_recovers_the_true_linear_drift() {
    common::big_stack(|| {
        let lin = common::er_linear(40, 10.0, 1);
        let resp = responses(&lin, None).unwrap();
        assert_eq!(resp.conditions.len(), 41);
        let eff = published(&resp, 1e-10).unwrap();
        let err = relative_error(&eff.a_causal, &lin.a.t().to_owned());
        assert!(err <= 1e-6, "relative error {err:e}");
        assert!(eff.identified, "{}", eff.note);
        // the published default λ = 1e-4 is a small, measurable bias
        let eff4 = published(&resp, 1e-4).unwrap();
        let err4 = relative_error(&eff4.a_causal, &lin.a.t().to_owned());
        assert!(err4 < 1e-3, "λ = 1e-4: relative error {err4:e}");
        // b̂ and ĉ_q recover the bias and the shifts
        let b = eff.b_hat.as_ref().unwrap();
        assert!(
            relative_error(
                &b.clone().insert_axis(Axis(0)),
                &lin.b.clone().insert_axis(Axis(0))
            ) < 1e-6
        );
        let c = eff.c_hat.as_ref().unwrap();
        for (r, t) in resp.conditions.iter().enumerate().skip(1) {
            let j = t[0];
            assert!((c[[r, j]] - lin.shifts[j]).abs() < 1e-6 * lin.shifts[j].abs());
        }
    })
}

#[test]
fn published_says_when_not_identified() {
    common::big_stack(|| {
        let lin = common::er_linear(20, 5.0, 2);
        let half: Vec<usize> = (0..10).collect();
        let resp = responses(&lin, Some(&half)).unwrap();
        let eff = published(&resp, 1e-4).unwrap();
        assert!(!eff.identified);
        assert!(eff.note.contains("NOT IDENTIFIED"), "{}", eff.note);
    })
}

#[test]
fn direction_aware_recovers_the_unit_decay_drift() {
    common::big_stack(|| {
        let lin = common::er_linear(40, 10.0, 3);
        let resp = responses(&lin, None).unwrap();
        let eff = direction_aware(&resp).unwrap();
        let want = unit_decay(&lin.a).t().to_owned();
        let err = relative_error(&eff.a_causal, &want);
        assert!(err < 1e-8, "relative error {err:e}");
        assert!(eff.identified);
    })
}

#[test]
fn direction_aware_on_a_subset_is_the_schur_complement() {
    common::big_stack(|| {
        let d = 12;
        let lin = common::er_linear(d, 4.0, 4);
        let p: Vec<usize> = (0..8).collect();
        let u: Vec<usize> = (8..d).collect();
        let resp = responses(&lin, Some(&p)).unwrap();
        let eff = direction_aware(&resp).unwrap();
        assert!(!eff.identified && eff.note.contains("NOT IDENTIFIED"));
        let a = &lin.a;
        let a_pp = a.select(Axis(0), &p).select(Axis(1), &p);
        let a_pu = a.select(Axis(0), &p).select(Axis(1), &u);
        let a_up = a.select(Axis(0), &u).select(Axis(1), &p);
        let a_uu = a.select(Axis(0), &u).select(Axis(1), &u);
        let schur = &a_pp - &a_pu.dot(&a_uu.inv().unwrap().dot(&a_up));
        let want = unit_decay(&schur).t().to_owned();
        let got = eff.a_causal.select(Axis(0), &p).select(Axis(1), &p);
        assert!(relative_error(&got, &want) < 1e-8);
        // effects on unperturbed genes: −A_UU⁻¹ A_UP; effects of unperturbed genes: 0
        let k = -a_uu.inv().unwrap().dot(&a_up);
        let got_pu = eff.a_causal.select(Axis(0), &p).select(Axis(1), &u);
        assert!(relative_error(&got_pu, &k.t().to_owned()) < 1e-8);
        for &g in &u {
            for j in 0..d {
                if j != g {
                    assert_eq!(eff.a_causal[[g, j]], 0.0);
                }
            }
        }
    })
}

/// The drift a perfect score model learns for the linear SDE: the score of
/// `N(μ_q, Σ)`, `f_q(x) = −Σ⁻¹ (x − μ_q)` with `μ_q = −A⁻¹ (b + c_q)`.
struct GaussianScore {
    prec: Array2<f64>,
    lin: LinearDrift,
}

impl PerturbableDrift for GaussianScore {
    fn dim(&self) -> usize {
        self.lin.dim()
    }
    fn gene_names(&self) -> Vec<String> {
        self.lin.gene_names()
    }
    fn perturbable(&self) -> Vec<usize> {
        self.lin.perturbable()
    }
    fn drift(&self, x: ArrayView2<f64>, perts: &[Targets]) -> clipr::Result<Array2<f64>> {
        let mu = self.lin.limit_response(perts)?;
        Ok(-(&x - &mu).dot(&self.prec.t()))
    }
}

#[test]
fn score_model_drift_gives_a_symmetric_published_answer_but_directions_survive() {
    common::big_stack(|| {
        let d = 10;
        let lin = common::er_linear(d, 3.0, 5);
        let sigma = common::lyapunov(&lin.a);
        // check the Lyapunov solve: AΣ + ΣAᵀ + I = 0
        let resid = lin.a.dot(&sigma) + sigma.dot(&lin.a.t()) + Array2::<f64>::eye(d);
        assert!(resid.iter().all(|v| v.abs() < 1e-9));
        let prec = sigma.inv().unwrap();
        let score = GaussianScore {
            prec: prec.clone(),
            lin: lin.clone(),
        };
        let resp = responses(&score, None).unwrap();
        let pubd = published(&resp, 1e-10).unwrap();
        assert!(relative_error(&pubd.a_causal, &(-&prec)) < 1e-6);
        assert!(symmetry_ratio(&pubd.a_causal) < 1e-6);
        let dirw = direction_aware(&resp).unwrap();
        assert!(relative_error(&dirw.a_causal, &unit_decay(&lin.a).t().to_owned()) < 1e-8);
        assert!(symmetry_ratio(&dirw.a_causal) > 0.3);
        let truth = lin.a.t().to_owned();
        let mp = causal_metrics(
            pubd.a_causal.view(),
            truth.view(),
            &MetricOptions::default(),
        )
        .unwrap();
        let md = causal_metrics(
            dirw.a_causal.view(),
            truth.view(),
            &MetricOptions::default(),
        )
        .unwrap();
        assert!(
            md.directed_auprc > mp.directed_auprc,
            "published {mp:?} vs direction-aware {md:?}"
        );
        assert!((md.directed_auprc - 1.0).abs() < 1e-12);
    })
}

#[test]
fn nonlinear_truth_runs_and_is_scored() {
    common::big_stack(|| {
        let nl = common::er_nonlinear(30, 4.0, 6);
        let resp = responses(&nl, None).unwrap();
        let f = nl.drift(resp.limit.view(), &resp.conditions).unwrap();
        assert!(f.iter().all(|v| v.abs() < 1e-10));
        // truth: Jacobian at the control fixed point, causal orientation
        let truth = nl.jacobian(resp.limit.row(0)).t().to_owned();
        for eff in [
            published(&resp, 1e-4).unwrap(),
            direction_aware(&resp).unwrap(),
        ] {
            let m = causal_metrics(eff.a_causal.view(), truth.view(), &MetricOptions::default())
                .unwrap();
            assert!(
                m.pearson > 0.3 && m.auroc3 > 0.7,
                "{:?}: {m:?}",
                eff.estimator
            );
        }
    })
}
