"""Canonical JSON summary of an .h5ad as Python anndata reads it.

usage: python h5ad_summary.py FILE.h5ad   (prints JSON on stdout)
The Rust tests build the same summary from their own reader and compare.
Large numeric arrays are summarised by sum / sum of squares / first values.
"""
import json
import sys

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

BIG = 5000


def num_list(a):
    a = np.asarray(a)
    if a.dtype.kind == "b":
        return [bool(x) for x in a.ravel()]
    return [fl(x) for x in a.ravel()]


def fl(x):
    x = float(x)
    return x if x == x else None  # NaN -> null (as serde_json writes it)


def arr(a):
    a = np.asarray(a)
    if a.dtype.kind in "OUS":
        return {"shape": list(a.shape), "strings": [x.decode() if isinstance(x, bytes) else str(x) for x in a.ravel()]}
    if a.dtype.names:  # record array: like a data frame without index
        return {"frame": {n: col(a[n]) for n in a.dtype.names}}
    if a.size > BIG:
        f = a.astype(np.float64).ravel()
        return {"shape": list(a.shape), "sum": fl(f.sum()), "sumsq": fl((f * f).sum()), "head": num_list(f[:20])}
    return {"shape": list(a.shape), "values": num_list(a)}


def mat(m):
    if sp.issparse(m):
        return {"format": m.format, "nnz": int(m.nnz), "dense": arr(m.toarray())}
    return {"format": "array", "dense": arr(m)}


def col(c):
    if isinstance(c.dtype, pd.CategoricalDtype):
        return {
            "categorical": arr(np.asarray(c.cat.categories)),
            "codes": [int(x) for x in np.asarray(c.cat.codes)],
            "ordered": bool(c.cat.ordered),
        }
    if isinstance(c, pd.Series) and isinstance(c.dtype, (pd.Int64Dtype, pd.Int32Dtype, pd.BooleanDtype)) or str(c.dtype) in ("Int64", "boolean"):
        return {"nullable": [None if pd.isna(x) else (bool(x) if isinstance(x, (bool, np.bool_)) else float(x)) for x in c]}
    return arr(np.asarray(c))


def frame(df):
    return {"index": [str(x) for x in df.index], "columns": {k: col(df[k]) for k in df.columns}}


def uns(v):
    if isinstance(v, dict):
        return {"dict": {k: uns(x) for k, x in v.items()}}
    if isinstance(v, pd.DataFrame):
        return {"frame": {k: col(v[k]) for k in v.columns}}
    if sp.issparse(v):
        return mat(v)
    if isinstance(v, (str, bytes)):
        return {"scalar": v if isinstance(v, str) else v.decode()}
    if isinstance(v, (bool, np.bool_)):
        return {"scalar": bool(v)}
    if isinstance(v, (int, float, np.integer, np.floating)):
        return {"scalar": float(v)}
    if isinstance(v, list):
        v = np.asarray(v)
    return arr(v)


def summary(a):
    out = {
        "n_obs": a.n_obs,
        "n_vars": a.n_vars,
        "X": None if a.X is None else mat(a.X),
        "obs": frame(a.obs),
        "var": frame(a.var),
        "uns": {k: uns(v) for k, v in a.uns.items()},
        "raw": None if a.raw is None else {"X": mat(a.raw.X), "var": frame(a.raw.var), "varm": {k: mat(v) for k, v in a.raw.varm.items()}},
    }
    for name in ("obsm", "varm", "obsp", "varp", "layers"):
        out[name] = {k: mat(np.asarray(v) if isinstance(v, pd.DataFrame) else v) for k, v in getattr(a, name).items()}
    return out


if __name__ == "__main__":
    import warnings

    warnings.simplefilter("ignore")
    print(json.dumps(summary(ad.read_h5ad(sys.argv[1]))))
