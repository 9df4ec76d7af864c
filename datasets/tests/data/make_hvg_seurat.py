"""Reference for the HVG test (datasets/tests/screen_view.rs): scanpy's
`highly_variable_genes(flavor="seurat")` on a small generated screen.

usage: python make_hvg_seurat.py [OUT.h5ad]   (default: hvg_seurat.h5ad next to this script)

Counts: 240 cells x 150 genes, negative binomial with gene-specific means and
a few strongly over-dispersed genes, two all-zero genes and one gene with a
far larger mean than the rest (alone in its mean bin). All cells are
`control`. The file stores the raw counts in X (float32 CSR) and scanpy's
results on log1p(normalize_total(target_sum=1e4)) of float64 counts in var:
`scanpy_means`, `scanpy_dispersions`, `scanpy_dispersions_norm` (NaN where
scanpy has none) and `scanpy_hv_<n>` for n_top_genes in N_TOP.
"""
import os
import sys
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp

warnings.simplefilter("ignore")
N_TOP = [10, 25, 60]
rng = np.random.default_rng(11)
n_cells, n_genes = 240, 150
mu = np.exp(rng.normal(0.0, 1.2, n_genes))
mu[7] = 400.0  # alone in the top mean bin
theta = np.full(n_genes, 20.0)
theta[rng.choice(n_genes, 12, replace=False)] = 0.3  # over-dispersed
lib = rng.uniform(0.6, 1.6, n_cells)
lam = rng.gamma(theta[None, :], (mu[None, :] * lib[:, None]) / theta[None, :])
counts = rng.poisson(lam).astype(np.float64)
counts[:, [20, 21]] = 0.0  # unexpressed genes
a = ad.AnnData(
    X=sp.csr_matrix(counts.astype(np.float32)),
    obs=pd.DataFrame({"perturbation": pd.Categorical(["control"] * n_cells)}, index=[f"c{i}" for i in range(n_cells)]),
    var=pd.DataFrame(index=[f"G{j}" for j in range(n_genes)]),
)
b = ad.AnnData(X=counts.copy())
sc.pp.normalize_total(b, target_sum=1e4)
sc.pp.log1p(b)
for n in N_TOP:
    r = sc.pp.highly_variable_genes(b, flavor="seurat", n_top_genes=n, inplace=False)
    a.var[f"scanpy_hv_{n}"] = r["highly_variable"].to_numpy()
a.var["scanpy_means"] = r["means"].to_numpy().astype(np.float64)
a.var["scanpy_dispersions"] = r["dispersions"].to_numpy().astype(np.float64)
a.var["scanpy_dispersions_norm"] = r["dispersions_norm"].to_numpy().astype(np.float64)
a.uns["n_top"] = np.array(N_TOP, dtype=np.int64)
a.uns["scanpy_version"] = sc.__version__
out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "hvg_seurat.h5ad")
a.write_h5ad(out, compression="gzip")
print(out, os.path.getsize(out), "bytes;", {n: int(a.var[f"scanpy_hv_{n}"].sum()) for n in N_TOP})
