"""Write an .h5ad with every anndata element type (used by h5ad_interop.rs).

usage: python h5ad_make_reference.py OUT.h5ad
"""
import sys

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

rng = np.random.default_rng(0)
n_obs, n_vars = 12, 7
X = sp.random(n_obs, n_vars, density=0.4, format="csr", random_state=1, dtype=np.float32)
obs = pd.DataFrame(
    {
        "perturbation": pd.Categorical(["control", "G1", "G1+G2", None] * 3),
        "dose": pd.Categorical(["lo", "hi", "mid"] * 4, categories=["lo", "mid", "hi"], ordered=True),
        "n_counts": rng.random(n_obs).astype(np.float64),
        "n_genes": np.arange(n_obs, dtype=np.int64),
        "flag": np.arange(n_obs) % 2 == 0,
        "batch_str": np.array([f"b{i % 3}" for i in range(n_obs)], dtype=object),
        "nint": pd.array([1, None, 3] * 4, dtype="Int64"),
        "nbool": pd.array([True, None, False] * 4, dtype="boolean"),
    },
    index=[f"cell{i}" for i in range(n_obs)],
)
var = pd.DataFrame(
    {"gene_ids": [f"ENSG{i:05d}" for i in range(n_vars)], "mean": rng.random(n_vars).astype(np.float32)},
    index=[f"G{i}" for i in range(n_vars)],
)
a = ad.AnnData(X=X, obs=obs, var=var)
a.layers["counts"] = sp.random(n_obs, n_vars, density=0.3, format="csc", random_state=2, dtype=np.float64)
a.layers["dense"] = rng.integers(0, 5, size=(n_obs, n_vars)).astype(np.int32)
idx64 = sp.random(n_obs, n_vars, density=0.3, format="csr", random_state=3, dtype=np.float64)
idx64.indices = idx64.indices.astype(np.int64)
idx64.indptr = idx64.indptr.astype(np.int64)
a.layers["int64_idx"] = idx64
ints = sp.random(n_obs, n_vars, density=0.3, format="csr", random_state=4)
ints.data = (ints.data * 10).astype(np.int64)
a.layers["int_data"] = ints
a.obsm["X_pca"] = rng.random((n_obs, 3)).astype(np.float32)
a.obsm["X_3d"] = rng.random((n_obs, 2, 2))
a.varm["PCs"] = rng.random((n_vars, 3))
a.obsp["distances"] = sp.random(n_obs, n_obs, density=0.2, format="csr", random_state=5)
a.varp["true_effects"] = rng.normal(size=(n_vars, n_vars))
a.uns["simulation"] = {
    "kind": "linear",
    "seed": 42,
    "noise": 0.5,
    "flag": True,
    "genes": np.array(["G0", "G1"], dtype=object),
    "nested": {"w": np.arange(4, dtype=np.float64).reshape(2, 2), "labels": ["a", "b", "c"]},
}
a.uns["colors"] = np.array(["#ff0000", "#00ff00"], dtype=object)
a.uns["int_array"] = np.array([1, 2, 3], dtype=np.int16)
a.uns["frame"] = pd.DataFrame({"x": [1.0, 2.0]}, index=["r0", "r1"])
a.uns["sparse"] = sp.random(3, 3, density=0.5, format="csr", random_state=6)
a.raw = a[:, :5].copy()
a.write_h5ad(sys.argv[1])
