"""Make tests/data/small_screen.h5ad (used by tests/data_cli.rs).

usage: .venv/bin/python tests/data/make_small_screen.py
A 60-cell x 8-gene screen written by anndata 0.12: CSR X, perturbation
categorical (control, G1, G2, G1+G2 and missing), a counts layer, obsm, obsp,
varm, varp and nested uns.
"""
import os

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

rng = np.random.default_rng(42)
n, m = 60, 8
labels = np.array(["control", "G1", "G2", "G1+G2", None], dtype=object)[np.arange(n) % 5]
X = sp.random(n, m, density=0.4, format="csr", random_state=3, dtype=np.float32)
obs = pd.DataFrame(
    {"perturbation": pd.Categorical(labels, categories=["control", "G1", "G2", "G1+G2"]), "batch": pd.Categorical(["a", "b"] * 30)},
    index=[f"cell{i}" for i in range(n)],
)
var = pd.DataFrame({"mean": rng.random(m)}, index=[f"G{j}" for j in range(m)])
a = ad.AnnData(X=X, obs=obs, var=var)
a.layers["counts"] = sp.random(n, m, density=0.4, format="csr", random_state=4, dtype=np.float32)
a.obsm["X_pca"] = rng.random((n, 2)).astype(np.float32)
a.varm["loadings"] = rng.random((m, 2))
a.obsp["connectivities"] = sp.random(n, n, density=0.05, format="csr", random_state=5)
a.varp["true_effects"] = rng.normal(size=(m, m))
a.uns["simulation"] = {"kind": "linear", "seed": 7}
a.write_h5ad(os.path.join(os.path.dirname(os.path.abspath(__file__)), "small_screen.h5ad"))
