"""h5ad read / partial read: cellmol (Rust) vs anndata, same run, same machine.

usage: python h5ad_read.py BENCH_BIN WORKDIR [REPS]
 - generates WORKDIR/screen.h5ad once: 100 000 cells x 2 000 genes CSR float32
   counts (~5 % dense), obs with 3 categoricals (perturbation: 200 conditions,
   batch, phase), written by anndata;
 - full read: anndata.read_h5ad vs datasets::anndata::read_h5ad;
 - partial read: cells of 5 conditions x the first 1 000 genes, with the
   selected cells' obs (names and columns) and the genes' var rows on both
   sides: anndata.read_h5ad(backed="r") + slicing (the view holds
   obs.iloc[rows], var.iloc[:1000]) + .X vs H5adReader::open_lazy (obs
   columns; names left on disk) + read_submatrix + LazyObs::select_rows (only
   the selected names read; CELLMOL_H5AD_NAMES=1: all names read and checked
   first, as anndata reads them all);
 - every measurement is a fresh process (timing of the read call only, peak RSS
   = VmHWM of that process); prints medians and ratios (Rust / anndata).
"""
import json
import os
import statistics
import subprocess
import sys
import time

N_OBS, N_VARS, DENSITY, N_COND = 100_000, 2_000, 0.05, 200
CONDS = ["C000", "C037", "C074", "C111", "C148"]


def peak_rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def generate(path):
    import anndata as ad
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    blocks = []
    for start in range(0, N_OBS, 10_000):
        n = min(10_000, N_OBS - start)
        mask = rng.random((n, N_VARS), dtype=np.float32) < DENSITY
        vals = np.where(mask, rng.poisson(2.0, size=(n, N_VARS)).astype(np.float32) + 1.0, 0).astype(np.float32)
        blocks.append(sp.csr_matrix(vals))
    X = sp.vstack(blocks, format="csr")
    X.indices = X.indices.astype(np.int32)
    X.indptr = X.indptr.astype(np.int32)
    conds = np.array([f"C{i:03d}" for i in range(N_COND)])
    obs = pd.DataFrame(
        {
            "perturbation": pd.Categorical(conds[rng.integers(0, N_COND, N_OBS)]),
            "batch": pd.Categorical(rng.choice(["b1", "b2", "b3", "b4"], N_OBS)),
            "phase": pd.Categorical(rng.choice(["G1", "S", "G2M"], N_OBS)),
        },
        index=[f"cell{i}" for i in range(N_OBS)],
    )
    var = pd.DataFrame(index=[f"G{j}" for j in range(N_VARS)])
    ad.AnnData(X=X, obs=obs, var=var).write_h5ad(path)


def peer(mode, path):
    import warnings

    warnings.simplefilter("ignore")
    import anndata as ad

    if mode == "full":
        t = time.perf_counter()
        a = ad.read_h5ad(path)
        secs = time.perf_counter() - t
        print(json.dumps({"seconds": secs, "peak_rss_mb": peak_rss_mb(), "nnz": int(a.X.nnz)}))
    else:
        t = time.perf_counter()
        a = ad.read_h5ad(path, backed="r")
        rows = a.obs["perturbation"].isin(CONDS).to_numpy().nonzero()[0]
        v = a[rows, :1000]  # the view materialises obs.iloc[rows] and var.iloc[:1000]
        X = v.X
        obs, var = v.obs, v.var
        secs = time.perf_counter() - t
        print(
            json.dumps(
                {
                    "seconds": secs,
                    "peak_rss_mb": peak_rss_mb(),
                    "rows": int(X.shape[0]),
                    "nnz": int(X.nnz),
                    "obs_rows": int(obs.shape[0]),
                    "obs_columns": int(obs.shape[1]),
                    "first_name": str(obs.index[0]),
                    "last_name": str(obs.index[-1]),
                    "last_gene": str(var.index[-1]),
                }
            )
        )


def run(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    if sys.argv[1] == "--peer":
        return peer(sys.argv[2], sys.argv[3])
    bench, work = sys.argv[1], sys.argv[2]
    reps = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    os.makedirs(work, exist_ok=True)
    path = os.path.join(work, "screen.h5ad")
    if not os.path.exists(path):
        t = time.perf_counter()
        generate(path)
        print(f"generated {path} ({os.path.getsize(path) / 1e6:.0f} MB) in {time.perf_counter() - t:.1f}s", flush=True)
    me = [sys.executable, os.path.abspath(__file__), "--peer"]
    # warm the page cache once for both sides
    run(me + ["full", path])
    results = {}
    for mode in ("full", "partial"):
        rust_cmd = [bench, mode, path] + ([",".join(CONDS), "1000"] if mode == "partial" else [])
        r, p = [], []
        for _ in range(reps):  # interleaved so both sides see the same machine state
            r.append(run(rust_cmd))
            p.append(run(me + [mode, path]))
        if mode == "partial":
            # same result on both sides: X submatrix, selected obs rows (names
            # and columns) and var rows
            keys = ("rows", "nnz", "obs_rows", "obs_columns", "first_name", "last_name", "last_gene")
            assert all(r[0][k] == p[0][k] for k in keys), (r[0], p[0])
        else:
            assert r[0]["nnz"] == p[0]["nnz"], (r[0], p[0])
        med = lambda xs, k: statistics.median(x[k] for x in xs)
        results[mode] = {
            "rust_s": med(r, "seconds"),
            "anndata_s": med(p, "seconds"),
            "rust_peak_mb": max(x["peak_rss_mb"] for x in r),
            "anndata_peak_mb": max(x["peak_rss_mb"] for x in p),
            "rust_all_s": [round(x["seconds"], 4) for x in r],
            # CPU time (all threads) of the read: steadier than wall time on a busy machine
            "rust_cpu_s": [round(x["cpu_s"], 4) for x in r if "cpu_s" in x],
            "anndata_all_s": [round(x["seconds"], 4) for x in p],
        }
    print(f"\n{'workload':<10}{'rust s':>10}{'anndata s':>12}{'ratio':>8}{'rust MB':>10}{'anndata MB':>12}{'mem ratio':>11}")
    for mode, x in results.items():
        print(
            f"{mode:<10}{x['rust_s']:>10.4f}{x['anndata_s']:>12.4f}{x['rust_s'] / x['anndata_s']:>8.3f}"
            f"{x['rust_peak_mb']:>10.0f}{x['anndata_peak_mb']:>12.0f}{x['rust_peak_mb'] / x['anndata_peak_mb']:>11.3f}"
        )
    print("targets: full <= 0.5x time and <= 1.1x peak memory; partial <= 0.3x time")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
