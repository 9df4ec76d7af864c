"""Write an .h5ad with a CSC X and a nullable-string-array obs column, and
print what anndata reads back (used by h5ad_interop.rs).

usage: python h5ad_make_csc_nullable.py OUT.h5ad   (prints JSON on stdout)
 - X: 257 x 31 float32 csc_matrix (canonical: row indices sorted per column),
   two all-zero columns;
 - obs["guide"]: pandas "string" dtype with missing values, written as
   `nullable-string-array` (convert_strings_to_categoricals=False);
 - var["symbol"]: the same encoding without missing values.
JSON: {"guide": [label or null per cell], "symbol": [...], "X_dense": rows}.
"""
import json
import sys
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

warnings.simplefilter("ignore")
ad.settings.allow_write_nullable_strings = True
rng = np.random.default_rng(3)
n_obs, n_vars = 257, 31
X = sp.random(n_obs, n_vars, density=0.15, format="csc", random_state=3, dtype=np.float32)
X = X.tolil()
X[:, 4] = 0
X[:, 30] = 0
X = sp.csc_matrix(X)
X.eliminate_zeros()
X.sort_indices()
X.data = np.round(X.data * 100).astype(np.float32) + 1
guides = [None if i % 11 == 0 else ("ctrl" if i % 3 == 0 else f"g{i % 13}") for i in range(n_obs)]
obs = pd.DataFrame({"guide": pd.array(guides, dtype="string")}, index=[f"cell{i}" for i in range(n_obs)])
var = pd.DataFrame({"symbol": pd.array([f"S{j}" for j in range(n_vars)], dtype="string")}, index=[f"G{j}" for j in range(n_vars)])
a = ad.AnnData(X=X, obs=obs, var=var)
a.write_h5ad(sys.argv[1], convert_strings_to_categoricals=False)

import h5py  # noqa: E402

with h5py.File(sys.argv[1], "r") as f:
    assert f["obs/guide"].attrs["encoding-type"] == "nullable-string-array", dict(f["obs/guide"].attrs)
    assert f["X"].attrs["encoding-type"] == "csc_matrix"
b = ad.read_h5ad(sys.argv[1])
print(
    json.dumps(
        {
            "guide": [None if pd.isna(x) else str(x) for x in b.obs["guide"]],
            "symbol": [None if pd.isna(x) else str(x) for x in b.var["symbol"]],
            "X_dense": b.X.toarray().astype(float).tolist(),
        }
    )
)
