"""Reference values for clipr's statistics tests (run from the repo root):

    .venv/bin/python clipr/tests/data/make_stats_reference.py

Writes clipr/tests/data/stats_reference.json with SciPy's
mannwhitneyu(two-sided, asymptotic, continuity) and false_discovery_control(bh).
"""
import json
import pathlib

import numpy as np
import scipy
from scipy.stats import false_discovery_control, mannwhitneyu

rng = np.random.default_rng(7)
cases = []


def add(name, x, y):
    x = [float(v) for v in x]
    y = [float(v) for v in y]
    r = mannwhitneyu(x, y, alternative="two-sided", method="asymptotic", use_continuity=True)
    cases.append({"name": name, "x": x, "y": y, "u": float(r.statistic), "p": float(r.pvalue)})


add("normal_shift", rng.normal(0.3, 1, 25), rng.normal(0, 1, 40))
add("no_shift", rng.normal(0, 1, 30), rng.normal(0, 1, 30))
add("counts_with_ties", rng.poisson(2.0, 50), rng.poisson(1.2, 60))
add("zero_inflated", np.where(rng.random(40) < 0.6, 0, rng.poisson(3, 40)), np.where(rng.random(35) < 0.8, 0, rng.poisson(3, 35)))
add("far_tail", rng.normal(5, 1, 200), rng.normal(0, 1, 200))
add("tiny", [1.0, 2.0], [3.0, 4.0, 5.0])
add("reversed", rng.normal(-1, 1, 15), rng.normal(0, 1, 12))

p = np.concatenate([rng.uniform(0, 1, 40), rng.uniform(0, 1e-3, 10), [1e-300, 0.05, 0.05, 1.0]])
bh = {"p": [float(v) for v in p], "q": [float(v) for v in false_discovery_control(p, method="bh")]}

out = {"scipy": scipy.__version__, "rank_sum": cases, "bh": bh}
path = pathlib.Path(__file__).with_name("stats_reference.json")
path.write_text(json.dumps(out, indent=1) + "\n")
print(path, path.stat().st_size, "bytes")
