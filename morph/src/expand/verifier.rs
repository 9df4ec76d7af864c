//! Verifiers: `verify(sample) ∈ [0, 1]` (strong verifier: exact 0/1 validity;
//! weak verifier: a score or a noisy/partial check), optionally with
//! `∇ log c(x)` where a differentiable surrogate exists (`design/expand.md`,
//! "Verifiers"). Molecules plug in by wrapping `molecules`' verifier in a type
//! that decodes a flattened sample into a molecule.
//!
//! For a 0/1 verifier without gradient, [`grad_log_batch`] estimates the
//! gradient of the Gaussian-smoothed log-verifier
//! `∇ log c_s(x) = E[c(x + sξ) ξ] / (s · (E[c(x + sξ)] + δ))`, `ξ ~ N(0, I)`
//! (Stein / zeroth-order estimator; Nesterov & Spokoiny 2017).
use candle_core::Tensor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;

use super::Result;

/// A verifier on flattened samples (`x.len()` = product of the event shape).
pub trait Verifier: Sync {
    /// Validity score in [0, 1] (1 = valid).
    fn verify(&self, x: &[f32]) -> f64;
    /// `∇_x log c(x)` of a differentiable surrogate, if the verifier has one.
    fn grad_log(&self, _x: &[f32]) -> Option<Vec<f32>> {
        None
    }
    /// `g` (a vector at `x`, flattened like `x`) with the components removed
    /// that would change, to first order, the quantities the verifier holds
    /// fixed: the orthogonal projection onto the tangent space of its valid
    /// set at `x`. `None` when the verifier defines no such set (its valid
    /// region is full-dimensional) or cannot decode `x`.
    fn tangent(&self, _x: &[f32], _g: &[f32]) -> Option<Vec<f32>> {
        None
    }
}

/// Rows of a `[batch, event…]` tensor as flattened vectors.
pub fn rows(x: &Tensor) -> Result<Vec<Vec<f32>>> {
    let n = x.dim(0)?;
    Ok(x.reshape((n, ()))?
        .to_dtype(candle_core::DType::F32)?
        .to_vec2::<f32>()?)
}

/// Verify every sample of a batch (parallel over samples).
pub fn verify_batch<V: Verifier + ?Sized>(v: &V, x: &Tensor) -> Result<Vec<f64>> {
    Ok(rows(x)?.par_iter().map(|r| v.verify(r)).collect())
}

/// Each row of `g` ([batch, event…]) projected onto the verifier's tangent
/// space at the matching row of `x` ([`Verifier::tangent`]); rows where the
/// verifier has none are left as they are.
pub fn tangent_batch<V: Verifier + ?Sized>(v: &V, x: &Tensor, g: &Tensor) -> Result<Tensor> {
    let (xs, gs) = (rows(x)?, rows(g)?);
    let flat: Vec<f32> = xs
        .par_iter()
        .zip(gs.par_iter())
        .map(|(x, g)| {
            v.tangent(x, g)
                .filter(|t| t.len() == g.len())
                .unwrap_or_else(|| g.clone())
        })
        .flatten_iter()
        .collect();
    Ok(Tensor::from_vec(flat, g.dims(), g.device())?.to_dtype(g.dtype())?)
}

/// Gaussian smoothing used to estimate `∇ log c` for non-differentiable verifiers.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Smoothing {
    /// Smoothing scale `s` (> 0), in data units.
    pub scale: f64,
    /// Perturbations per sample (≥ 1).
    pub n_draws: usize,
    /// Floor `δ` added to the smoothed verifier before taking the log.
    pub floor: f64,
}

impl Default for Smoothing {
    fn default() -> Self {
        Self {
            scale: 0.15,
            n_draws: 64,
            floor: 0.05,
        }
    }
}

/// `∇ log c(x)` for each sample, [batch, event…]: the verifier's own gradient
/// when `smoothing` is `None` and it has one, otherwise the smoothed estimate
/// (seeded per sample from `seed`, so results do not depend on thread order).
pub fn grad_log_batch<V: Verifier + ?Sized>(
    v: &V,
    x: &Tensor,
    smoothing: Option<Smoothing>,
    seed: u64,
) -> Result<Tensor> {
    let rs = rows(x)?;
    let d = rs.first().map_or(0, |r| r.len());
    let grads: Vec<Vec<f32>> = rs
        .par_iter()
        .enumerate()
        .map(|(i, r)| match (smoothing, v.grad_log(r)) {
            (None, Some(g)) => g,
            (sm, _) => smoothed_grad_log(v, r, sm.unwrap_or_default(), seed.wrapping_add(i as u64)),
        })
        .collect();
    let flat: Vec<f32> = grads
        .into_iter()
        .flat_map(|g| g.into_iter().chain(std::iter::repeat(0.0)).take(d))
        .collect();
    Ok(Tensor::from_vec(flat, x.dims(), x.device())?)
}

fn smoothed_grad_log<V: Verifier + ?Sized>(v: &V, x: &[f32], sm: Smoothing, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let d = x.len();
    let mut acc = vec![0f64; d];
    let mut mean_c = 0f64;
    let mut xp = vec![0f32; d];
    let mut xi = vec![0f64; d];
    for _ in 0..sm.n_draws.max(1) {
        for j in 0..d {
            xi[j] = rng.sample::<f64, _>(StandardNormal);
        }
        // antithetic pair: baseline-free, lower variance
        for s in [1.0, -1.0] {
            for j in 0..d {
                xp[j] = x[j] + (s * sm.scale * xi[j]) as f32;
            }
            let c = v.verify(&xp);
            mean_c += c;
            for j in 0..d {
                acc[j] += s * c * xi[j];
            }
        }
    }
    let m = 2.0 * sm.n_draws.max(1) as f64;
    mean_c /= m;
    acc.iter()
        .map(|a| (a / m / (sm.scale * (mean_c + sm.floor))) as f32)
        .collect()
}

// ------------------------------------------------------ conformer geometry ----

/// PoseBusters-style geometry checks of a conformer against its own bond
/// graph (Buttenschoen, Morris, Deane 2024, "PoseBusters", intramolecular
/// checks, with our own reference tables): a `molecules::Verifier` that
/// accepts a molecule when
///
/// 1. **bond lengths**: every bond of the graph has a length within
///    `bond_tol` (relative) of the reference length of its element pair and
///    order ([`reference_bond_length`]);
/// 2. **bond angles**: every pair of atoms bonded to a common atom (and not to
///    each other) is at a distance within `angle_tol` (relative) of the
///    distance the ideal angle of the central atom gives (law of cosines with
///    the reference bond lengths; 180° for an atom with a triple bond or two
///    double bonds, 120° for one double or an aromatic bond, 109.47°
///    otherwise; 90° for a pair across a four-membered ring, i.e. with two or
///    more common neighbours);
/// 3. **no internal clash**: every pair of atoms three or more bonds apart is
///    at least `clash_factor` × the sum of their van der Waals radii apart
///    (Bondi radii, [`vdw_radius`]).
///
/// The defaults (0.25, 0.25, 0.7) are PoseBusters' tolerances. A conformer
/// with an element or bond type without a reference fails (it cannot be
/// checked). Unlike the EDM validity protocol, the bonds are the graph's own,
/// not inferred from distances: the question is "is this a plausible
/// geometry of THIS graph". On the 2 000 molecules of the QM9 training
/// subset used for issue 7 (DFT conformers, Kekulé bonds) 1 983 pass
/// (99.15 %; 16 fail the clash check, 2 the angle check; the ignored test
/// `geometry_pass_rate_of_file` in `morph/tests/expand_geometry.rs`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Geometry {
    /// Relative tolerance of bond lengths (> 0).
    pub bond_tol: f64,
    /// Relative tolerance of 1–3 distances (> 0).
    pub angle_tol: f64,
    /// Minimum distance of atoms ≥ 3 bonds apart, as a fraction of the sum of
    /// their van der Waals radii (≥ 0).
    pub clash_factor: f64,
    /// Tightening of the checks in the smooth surrogate of Flow Expander's
    /// projection ([`Geometry::surrogate`]), in (0, 1].
    pub surrogate_margin: f64,
}

impl Default for Geometry {
    fn default() -> Self {
        Self {
            bond_tol: 0.25,
            angle_tol: 0.25,
            clash_factor: 0.7,
            surrogate_margin: 0.5,
        }
    }
}

/// Outcome of [`Geometry::check`]: the worst relative deviations and the
/// closest clash ratio (`None` when the molecule could not be checked).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct GeometryReport {
    /// max over bonds of `|d / d_ref − 1|` (0 without bonds).
    pub worst_bond: f64,
    /// max over 1–3 pairs of `|d / d_ideal − 1|` (0 without angles).
    pub worst_angle: f64,
    /// min over pairs ≥ 3 bonds apart of `d / (r_vdW,i + r_vdW,j)` (∞ without).
    pub closest_contact: f64,
}

/// Bondi van der Waals radius (Å) of an element, for the clash check.
pub fn vdw_radius(e: molecules::Element) -> Option<f64> {
    Some(match e.symbol() {
        "H" => 1.20,
        "B" => 1.92,
        "C" => 1.70,
        "N" => 1.55,
        "O" => 1.52,
        "F" => 1.47,
        "Si" => 2.10,
        "P" => 1.80,
        "S" => 1.80,
        "Cl" => 1.75,
        "As" => 1.85,
        "Br" => 1.85,
        "I" => 1.98,
        _ => return None,
    })
}

/// Reference length (Å) of a bond from the EDM bond tables of
/// `molecules::bonds` (the tables of EDM bond inference); aromatic bonds the
/// mean of the single and double lengths. `None` for a pair or order
/// without a reference.
pub fn reference_bond_length(
    a: molecules::Element,
    b: molecules::Element,
    order: molecules::BondOrder,
) -> Option<f64> {
    use molecules::BondOrder as O;
    let t = molecules::bonds::BondTables::edm();
    let pm = match order {
        O::Single => t.single_pm(a, b)?,
        O::Double => t.double_pm(a, b)?,
        O::Triple => t.triple_pm(a, b)?,
        O::Aromatic => {
            return Some(
                0.5 * (f64::from(t.single_pm(a, b)?) + f64::from(t.double_pm(a, b)?)) / 100.0,
            )
        }
    };
    Some(f64::from(pm) / 100.0)
}

impl Geometry {
    /// Check the settings (bad values are a configuration error).
    pub fn validate(&self) -> Result<()> {
        let c = "Geometry";
        if !(self.bond_tol > 0.0 && self.bond_tol.is_finite()) {
            return Err(super::bad_config(
                c,
                "bond_tol",
                self.bond_tol,
                "a finite value > 0",
            ));
        }
        if !(self.angle_tol > 0.0 && self.angle_tol.is_finite()) {
            return Err(super::bad_config(
                c,
                "angle_tol",
                self.angle_tol,
                "a finite value > 0",
            ));
        }
        if !(self.clash_factor >= 0.0 && self.clash_factor.is_finite()) {
            return Err(super::bad_config(
                c,
                "clash_factor",
                self.clash_factor,
                "a finite value >= 0",
            ));
        }
        if !(self.surrogate_margin > 0.0 && self.surrogate_margin <= 1.0) {
            return Err(super::bad_config(
                c,
                "surrogate_margin",
                self.surrogate_margin,
                "a value in (0, 1]",
            ));
        }
        Ok(())
    }

    /// Worst deviations of `m`'s conformer from its own graph's references;
    /// `None` when an element or bond has no reference or a position is not
    /// finite.
    pub fn check(&self, m: &molecules::Molecule) -> Option<GeometryReport> {
        let p = &m.positions;
        if p.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let dist = |i: usize, j: usize| {
            (0..3)
                .map(|d| (p[[i, d]] - p[[j, d]]).powi(2))
                .sum::<f64>()
                .sqrt()
        };
        let mut r = GeometryReport {
            worst_bond: 0.0,
            worst_angle: 0.0,
            closest_contact: f64::INFINITY,
        };
        for (i, j, term) in Self::terms(m)? {
            let d = dist(i, j);
            match term {
                Term::Bond(l, _) => r.worst_bond = r.worst_bond.max((d / l - 1.0).abs()),
                Term::Angle(l) => r.worst_angle = r.worst_angle.max((d / l - 1.0).abs()),
                Term::Clash(s) => r.closest_contact = r.closest_contact.min(d / s),
            }
        }
        Some(r)
    }

    /// Whether a report passes the tolerances.
    pub fn passes(&self, r: &GeometryReport) -> bool {
        r.worst_bond <= self.bond_tol
            && r.worst_angle <= self.angle_tol
            && r.closest_contact >= self.clash_factor
    }
}

/// Relative scale of the geometry surrogate ([`Geometry::surrogate`]).
pub const SURROGATE_SCALE: f64 = 0.05;

/// Terms of the geometry checks: `(i, j, kind)` with kind bond (reference
/// length), angle (ideal 1–3 distance) or clash (sum of vdW radii).
#[derive(Debug, Clone, Copy)]
enum Term {
    /// Reference length and the EDM window of the bond's order
    /// ([`edm_window`]; `None` for aromatic bonds or pairs without one).
    Bond(f64, Option<(f64, f64)>),
    Angle(f64),
    Clash(f64),
}

impl Geometry {
    /// The pairs [`Geometry::check`] looks at, with their references;
    /// `None` as in `check`.
    fn terms(m: &molecules::Molecule) -> Option<Vec<(usize, usize, Term)>> {
        use molecules::BondOrder as O;
        let n = m.n_atoms();
        let mut nbr: Vec<Vec<(usize, f64)>> = vec![Vec::new(); n];
        let mut kinds = vec![(0u8, 0u8, 0u8); n];
        let mut out = Vec::new();
        for (i, j, o, _) in m.bond_list() {
            let l = reference_bond_length(m.elements[i], m.elements[j], o)?;
            let w = edm_window(m.elements[i], m.elements[j], o);
            out.push((i, j, Term::Bond(l, w)));
            nbr[i].push((j, l));
            nbr[j].push((i, l));
            for k in [i, j] {
                match o {
                    O::Triple => kinds[k].0 += 1,
                    O::Double => kinds[k].1 += 1,
                    O::Aromatic => kinds[k].2 += 1,
                    O::Single => {}
                }
            }
        }
        let bonded = |i: usize, j: usize| nbr[i].iter().any(|&(k, _)| k == j);
        for c in 0..n {
            let (tr, db, ar) = kinds[c];
            let theta = if tr > 0 || db >= 2 {
                std::f64::consts::PI
            } else if db == 1 || ar > 0 {
                120f64.to_radians()
            } else {
                109.47f64.to_radians()
            };
            for (u, &(i, li)) in nbr[c].iter().enumerate() {
                for &(j, lj) in &nbr[c][u + 1..] {
                    if bonded(i, j) {
                        continue; // three-membered ring: a bond
                    }
                    // across a four-membered ring (≥ 2 common neighbours):
                    // the ring angle, 90°
                    let common = nbr[i].iter().filter(|&&(k, _)| bonded(k, j)).count();
                    let th = if common >= 2 {
                        std::f64::consts::FRAC_PI_2
                    } else {
                        theta
                    };
                    let ideal = (li * li + lj * lj - 2.0 * li * lj * th.cos()).sqrt();
                    out.push((i, j, Term::Angle(ideal)));
                }
            }
        }
        let radii: Vec<f64> = m
            .elements
            .iter()
            .map(|&e| vdw_radius(e))
            .collect::<Option<_>>()?;
        let mut near = vec![usize::MAX; n];
        for i in 0..n {
            near[i] = i;
            for &(j, _) in &nbr[i] {
                near[j] = i;
                for &(k, _) in &nbr[j] {
                    near[k] = i;
                }
            }
            for j in i + 1..n {
                if near[j] != i {
                    out.push((i, j, Term::Clash(radii[i] + radii[j])));
                }
            }
        }
        Some(out)
    }

    /// Smooth surrogate of `log c` and its gradient with respect to the
    /// positions (Å): `−½ Σ (v/s)²` over the violations `v` of the checks
    /// tightened by `margin` (bonds and 1–3 distances: `v = max(0, |d/d_ref −
    /// 1| − margin·tol)`; clashes: `v = max(0, factor·(1 + (1 − margin)/5) −
    /// d/(r_i + r_j))`), `s` =
    /// [`SURROGATE_SCALE`]. 0 with zero gradient well inside the checks;
    /// `None` as in [`Geometry::check`]. Used as the differentiable verifier
    /// of Flow Expander's projection (`design/expand.md`: `η ∇log c`).
    pub fn surrogate(&self, m: &molecules::Molecule, margin: f64) -> Option<(f64, Vec<[f64; 3]>)> {
        self.surrogate_with(m, margin, false)
    }

    /// [`Geometry::surrogate`] with each bond held inside the distance window
    /// in which EDM bond inference gives the bond's own order
    /// ([`edm_window`] ∩ the `bond_tol` window), tightened towards the
    /// reference length: `[l − margin·(l − lo), l + margin·(hi − l)]`, with
    /// `v = distance outside / l`. Zero where the conformer's EDM bonds
    /// reproduce the graph with room to spare; the smooth stand-in for the
    /// strict EDM validity verifier of a fixed graph. Aromatic bonds (which
    /// EDM never infers) keep the relative window of `surrogate`.
    pub fn surrogate_edm(
        &self,
        m: &molecules::Molecule,
        margin: f64,
    ) -> Option<(f64, Vec<[f64; 3]>)> {
        self.surrogate_with(m, margin, true)
    }

    fn surrogate_with(
        &self,
        m: &molecules::Molecule,
        margin: f64,
        edm: bool,
    ) -> Option<(f64, Vec<[f64; 3]>)> {
        let p = &m.positions;
        if p.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let n = m.n_atoms();
        let mut grad = vec![[0f64; 3]; n];
        let mut val = 0f64;
        let s2 = SURROGATE_SCALE * SURROGATE_SCALE;
        let clash_target = self.clash_factor * (1.0 + 0.2 * (1.0 - margin.clamp(0.0, 1.0)));
        for (i, j, term) in Self::terms(m)? {
            let diff = [0, 1, 2].map(|d| p[[i, d]] - p[[j, d]]);
            let d = diff.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-6);
            // v and dv/dd
            let (v, dv) = match term {
                Term::Bond(l, Some((lo, hi))) if edm => {
                    let lo = lo.max((1.0 - self.bond_tol) * l);
                    let hi = hi.min((1.0 + self.bond_tol) * l);
                    if !(lo < l && l < hi) {
                        continue; // no window around the reference
                    }
                    let (a, b) = (l - margin * (l - lo), l + margin * (hi - l));
                    if d < a {
                        ((a - d) / l, -1.0 / l)
                    } else if d > b {
                        ((d - b) / l, 1.0 / l)
                    } else {
                        continue;
                    }
                }
                Term::Bond(l, _) | Term::Angle(l) => {
                    let tol = if matches!(term, Term::Bond(..)) {
                        self.bond_tol
                    } else {
                        self.angle_tol
                    };
                    let u = d / l - 1.0;
                    let v = u.abs() - margin * tol;
                    if v <= 0.0 {
                        continue;
                    }
                    (v, u.signum() / l)
                }
                Term::Clash(r) => {
                    let v = clash_target - d / r;
                    if v <= 0.0 {
                        continue;
                    }
                    (v, -1.0 / r)
                }
            };
            val -= 0.5 * v * v / s2;
            // d(−½ v²/s²)/dx_i = −(v/s²) dv/dd · diff/d
            let k = -(v / s2) * dv / d;
            for dd in 0..3 {
                grad[i][dd] += k * diff[dd];
                grad[j][dd] -= k * diff[dd];
            }
        }
        Some((val, grad))
    }

    /// `g` (one 3-vector per atom) projected onto the null space of the
    /// Jacobian of the distances the checks pin (bonds and 1–3 distances):
    /// the part of `g` that moves the conformer without stretching a bond or
    /// bending an angle to first order (rigid motions and torsions). The
    /// rows `∇d_ij` are orthonormalised by modified Gram–Schmidt (dependent
    /// rows, e.g. in rings, dropped) and removed from `g`. Scale-free, so
    /// `g` may be in any uniform units. `None` as in [`Geometry::check`] or
    /// when `g` does not have one row per atom.
    pub fn tangent(&self, m: &molecules::Molecule, g: &[[f64; 3]]) -> Option<Vec<[f64; 3]>> {
        let p = &m.positions;
        let n = m.n_atoms();
        if g.len() != n || p.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let mut basis: Vec<Vec<f64>> = Vec::new();
        for (i, j, term) in Self::terms(m)? {
            if matches!(term, Term::Clash(_)) {
                continue;
            }
            let u = [0, 1, 2].map(|d| p[[i, d]] - p[[j, d]]);
            let norm = u.iter().map(|v| v * v).sum::<f64>().sqrt();
            if norm < 1e-9 {
                continue; // coincident atoms: no direction to pin
            }
            let mut row = vec![0f64; 3 * n];
            for d in 0..3 {
                row[3 * i + d] = u[d] / norm;
                row[3 * j + d] = -u[d] / norm;
            }
            // ‖row‖² = 2 before orthogonalisation
            remove_span(&mut row, &basis);
            let r = row.iter().map(|v| v * v).sum::<f64>().sqrt();
            if r > 1e-6 {
                row.iter_mut().for_each(|v| *v /= r);
                basis.push(row);
            }
        }
        let mut t: Vec<f64> = g.iter().flatten().copied().collect();
        remove_span(&mut t, &basis);
        Some(t.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect())
    }
}

/// Subtract from `v` its components along the orthonormal vectors `basis`
/// (one modified Gram–Schmidt sweep).
fn remove_span(v: &mut [f64], basis: &[Vec<f64>]) {
    for q in basis {
        let c: f64 = v.iter().zip(q).map(|(a, b)| a * b).sum();
        v.iter_mut().zip(q).for_each(|(a, b)| *a -= c * b);
    }
}

/// The distance window (Å) `[lo, hi)` in which EDM bond inference
/// (`molecules::bonds`) assigns a pair of elements `order`: below the order's
/// cutoff (`b_k + m_k`), at or above the next order's (0 without one).
/// `None` for aromatic bonds or a pair without a length of that order.
pub fn edm_window(
    a: molecules::Element,
    b: molecules::Element,
    order: molecules::BondOrder,
) -> Option<(f64, f64)> {
    use molecules::bonds::MARGINS_PM as M;
    use molecules::BondOrder as O;
    let t = molecules::bonds::BondTables::edm();
    t.single_pm(a, b)?; // EDM never bonds a pair without a single length
    let cut = |pm: Option<u16>, k: usize| pm.map(|v| (f64::from(v) + M[k]) / 100.0);
    let (hi, lo) = match order {
        O::Single => (cut(t.single_pm(a, b), 0)?, cut(t.double_pm(a, b), 1)),
        O::Double => (cut(t.double_pm(a, b), 1)?, cut(t.triple_pm(a, b), 2)),
        O::Triple => (cut(t.triple_pm(a, b), 2)?, None),
        O::Aromatic => return None,
    };
    Some((lo.unwrap_or(0.0), hi))
}

impl molecules::Verifier for Geometry {
    fn name(&self) -> String {
        format!(
            "geometry(graph bonds within {:.0} %, 1-3 distances within {:.0} %, no clash below {} x vdW sum)",
            100.0 * self.bond_tol,
            100.0 * self.angle_tol,
            self.clash_factor
        )
    }
    fn verify(&self, m: &molecules::Molecule) -> bool {
        self.check(m).is_some_and(|r| self.passes(&r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Half-plane x0 > 0 without a gradient.
    struct Half;
    impl Verifier for Half {
        fn verify(&self, x: &[f32]) -> f64 {
            f64::from(u8::from(x[0] > 0.0))
        }
    }

    #[test]
    fn smoothed_gradient_points_into_the_valid_region() {
        let x = Tensor::from_vec(vec![-0.1f32, 0.3, 0.05, -0.2], (2, 2), &Device::Cpu).expect("x");
        let g = grad_log_batch(&Half, &x, None, 3)
            .expect("grad")
            .to_vec2::<f32>()
            .expect("vec");
        for row in &g {
            assert!(row[0] > 0.5, "gradient should push towards x0 > 0: {row:?}");
            assert!(
                row[1].abs() < row[0] / 2.0,
                "no systematic push along x1: {row:?}"
            );
        }
    }
}
