"""LCD on a simulated linear screen, scored against the exact stationary law.

The `linear` simulator knows each condition's law in closed form,
N(mu_q, Sigma) with mu_q = -A^-1 (b + c_q) and A Sigma + Sigma A^T + I = 0
(`uns["simulation"]`: A, b, shift). `cellmol lcd evaluate` compares against
the held-out cells (200 per condition), whose own sampling noise dominates
energy distance and MMD at the accuracy of `additive` (exact up to its mean
estimates for shift interventions). This script scores the same two
predictions against a large sample of the exact law instead:

  lcd       cells from `cellmol lcd predict` (PRED.h5ad)
  additive  control cells + the training singles' mean shifts (as evaluate)

usage: lcd_linear_truth.py SCREEN.h5ad PRED.h5ad [N_TRUE] [SEED]
Energy distance (U-statistics within samples) and unbiased MMD^2 averaged
over RBF bandwidths logspace(-2, 1, 10) * sqrt(d), the definitions of
lcd/src/metrics.rs; mean error = RMS over genes of the mean difference.
"""
import sys

import anndata as ad
import numpy as np
import scipy.linalg as sl
from scipy.spatial.distance import cdist


def key(label):
    return "+".join(sorted(label.split("+"))) if label != "control" else label


def energy(x, y):
    n, m = len(x), len(y)
    dxx, dyy = cdist(x, x), cdist(y, y)
    return 2 * cdist(x, y).mean() - dxx.sum() / (n * (n - 1)) - dyy.sum() / (m * (m - 1))


def mmd(x, y):
    d = x.shape[1]
    hs = np.logspace(-2, 1, 10) * np.sqrt(d)
    dxx, dyy, dxy = (cdist(a, b, "sqeuclidean") for a, b in ((x, x), (y, y), (x, y)))
    n, m = len(x), len(y)
    out = []
    for h in hs:
        kxx, kyy, kxy = (np.exp(-q / (2 * h * h)) for q in (dxx, dyy, dxy))
        out.append(
            (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
            + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2 * kxy.mean()
        )
    return float(np.mean(out))


def main():
    screen, pred = ad.read_h5ad(sys.argv[1]), ad.read_h5ad(sys.argv[2])
    n_true = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    rng = np.random.default_rng(int(sys.argv[4]) if len(sys.argv) > 4 else 0)
    sim = screen.uns["simulation"]
    if str(sim["kind"]) != "linear":
        sys.exit(f"{sys.argv[1]}: uns/simulation/kind is {sim['kind']!r}, expected 'linear'")
    a, b, shift = (np.asarray(sim[k], dtype=float) for k in ("A", "b", "shift"))
    genes = list(screen.var_names)
    if list(pred.var_names) != genes:
        sys.exit(f"{sys.argv[2]}: var_names differ from {sys.argv[1]}")
    sigma = sl.solve_continuous_lyapunov(a, -np.eye(len(b)))
    chol = np.linalg.cholesky(sigma)
    x = np.asarray(screen.X.todense() if hasattr(screen.X, "todense") else screen.X, float)
    p = np.asarray(pred.X.todense() if hasattr(pred.X, "todense") else pred.X, float)
    lab = np.array([key(s) for s in screen.obs["perturbation"].astype(str)])
    plab = np.array([key(s) for s in pred.obs["perturbation"].astype(str)])
    ctrl = x[lab == "control"]
    cmean = ctrl.mean(0)

    def law_mean(targets):
        c = np.zeros(len(b))
        for t in targets:
            c[genes.index(t)] = shift[genes.index(t)]
        return -np.linalg.solve(a, b + c)

    rows = []
    print(f"{'condition':12s} {'method':9s} {'mean err':>9s} {'ED truth':>9s} {'MMD truth':>10s} {'ED cells':>9s} {'MMD cells':>10s}")
    for q in sorted(set(plab) - {"control"}):
        targets = q.split("+")
        mu = law_mean(targets)
        truth = mu + rng.standard_normal((n_true, len(b))) @ chol.T
        cells = x[lab == q]
        preds = {"lcd": p[plab == q]}
        if all((lab == t).any() for t in targets):
            preds["additive"] = ctrl + sum(x[lab == t].mean(0) - cmean for t in targets)
        for name, y in preds.items():
            r = {
                "condition": q,
                "method": name,
                "mean_err": float(np.sqrt(((y.mean(0) - mu) ** 2).mean())),
                "ed_truth": energy(y, truth),
                "mmd_truth": mmd(y, truth),
                "ed_cells": energy(y, cells) if len(cells) > 1 else np.nan,
                "mmd_cells": mmd(y, cells) if len(cells) > 1 else np.nan,
            }
            rows.append(r)
            print(f"{q:12s} {name:9s} {r['mean_err']:9.4f} {r['ed_truth']:9.4f} {r['mmd_truth']:10.5f} {r['ed_cells']:9.4f} {r['mmd_cells']:10.5f}")
    print()
    for name in ("lcd", "additive"):
        sel = [r for r in rows if r["method"] == name]
        if sel:
            print(
                f"mean over {len(sel)} conditions, {name:9s}: "
                + "  ".join(f"{k} {np.nanmean([r[k] for r in sel]):.5f}" for k in ("mean_err", "ed_truth", "mmd_truth", "ed_cells", "mmd_cells"))
            )


if __name__ == "__main__":
    main()
