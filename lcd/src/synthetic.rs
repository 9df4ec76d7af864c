//! A tiny self-contained screen generator for tests and examples (the full
//! simulators live in `datasets::simulate`): latent states of condition S are
//! `s = μ_0 + B c_S + L ξ`, `ξ ~ N(0, I)`, where `c_S` shifts each target by
//! `shift` and `B = (I − W)^{-1}` propagates it along a random sparse
//! acyclic `W` (so the mean of a double is additive in the shifts, as for a
//! linear SDE). With `counts`, cells are ZIP(π, u·softplus(s)) counts.
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use crate::data::{Environment, TrainingData};

pub struct Synthetic {
    pub genes: Vec<String>,
    /// Mean latent state of each condition is `mu0 + b · c_S`.
    pub mu0: Vec<f64>,
    pub b: Array2<f64>,
    pub l: Array2<f64>,
    pub shift: f64,
    pub pi: f64,
    pub u: f64,
    /// Optional squashing nonlinearity applied to the latent state (tanh-scaled).
    pub nonlinear: bool,
}

impl Synthetic {
    pub fn new(d: usize, seed: u64) -> Self {
        let mut r = ChaCha8Rng::seed_from_u64(seed);
        let mut w = Array2::<f64>::zeros((d, d));
        for i in 0..d {
            for j in 0..i {
                if r.random::<f64>() < 2.0 / d as f64 {
                    w[[i, j]] = r.random_range(-0.8..0.8);
                }
            }
        }
        // B = (I − W)^{-1} by forward substitution (W strictly lower triangular).
        let mut b = Array2::<f64>::eye(d);
        for col in 0..d {
            for i in 0..d {
                let mut s = if i == col { 1.0 } else { 0.0 };
                for j in 0..i {
                    s += w[[i, j]] * b[[j, col]];
                }
                b[[i, col]] = s;
            }
        }
        let mut l = Array2::<f64>::zeros((d, d));
        for i in 0..d {
            l[[i, i]] = 0.5;
            if i > 0 {
                l[[i, i - 1]] = 0.2;
            }
        }
        let mu0 = (0..d).map(|_| r.random_range(0.5..2.0)).collect();
        Synthetic {
            genes: (0..d).map(|g| format!("G{g}")).collect(),
            mu0,
            b,
            l,
            shift: 2.0,
            pi: 0.1,
            u: 5.0,
            nonlinear: false,
        }
    }

    /// True mean latent state of a condition (targets by gene index).
    pub fn mean(&self, targets: &[usize]) -> Vec<f64> {
        let d = self.genes.len();
        (0..d)
            .map(|i| {
                self.mu0[i]
                    + targets
                        .iter()
                        .map(|&j| self.b[[i, j]] * self.shift)
                        .sum::<f64>()
            })
            .collect()
    }

    /// `n` cells of a condition: latent states, or ZIP counts with `counts`.
    pub fn cells(&self, targets: &[usize], n: usize, counts: bool, seed: u64) -> Array2<f32> {
        let d = self.genes.len();
        let mut r = ChaCha8Rng::seed_from_u64(seed);
        let mu = self.mean(targets);
        let mut out = Array2::<f32>::zeros((n, d));
        for c in 0..n {
            let xi: Vec<f64> = (0..d).map(|_| r.sample(StandardNormal)).collect();
            for i in 0..d {
                let mut s = mu[i] + (0..d).map(|j| self.l[[i, j]] * xi[j]).sum::<f64>();
                if self.nonlinear {
                    s = 2.0 * (s / 2.0).tanh() + 0.3 * s;
                }
                out[[c, i]] = if counts {
                    if r.random::<f64>() < self.pi {
                        0.0
                    } else {
                        let lam = self.u * (s.exp().ln_1p());
                        rand_distr::Distribution::sample(
                            &rand_distr::Poisson::new(lam.max(1e-9)).unwrap_or_else(|_| {
                                rand_distr::Poisson::new(1e-9).expect("positive rate")
                            }),
                            &mut r,
                        ) as f32
                    }
                } else {
                    s as f32
                };
            }
        }
        out
    }

    /// Training data: control, every single, and the given doubles.
    pub fn training(
        &self,
        doubles: &[(usize, usize)],
        n: usize,
        counts: bool,
        seed: u64,
    ) -> TrainingData {
        let d = self.genes.len();
        let mut envs = vec![Environment {
            name: "ctrl".into(),
            targets: vec![],
            x: self.cells(&[], n, counts, seed),
        }];
        for j in 0..d {
            envs.push(Environment {
                name: self.genes[j].clone(),
                targets: vec![self.genes[j].clone()],
                x: self.cells(&[j], n, counts, seed + 1 + j as u64),
            });
        }
        for (k, &(a, b)) in doubles.iter().enumerate() {
            envs.push(Environment {
                name: format!("{}+{}", self.genes[a], self.genes[b]),
                targets: vec![self.genes[a].clone(), self.genes[b].clone()],
                x: self.cells(&[a, b], n, counts, seed + 1000 + k as u64),
            });
        }
        TrainingData {
            genes: self.genes.clone(),
            envs,
        }
    }
}
