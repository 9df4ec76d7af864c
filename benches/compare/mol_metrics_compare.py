"""EDM-protocol metrics (bond inference + stability + validity + uniqueness) on
10 000 QM9 molecules: cellmol (Rust, rayon, RDKit 2022 via cxx) vs the
EDM-style Python implementation using RDKit (mol_metrics_edm.py, same folder).
Only the metric computation is timed on both sides (file reading excluded).
Prints medians over REPEATS and the ratio ours/peer (target <= 0.1).

usage: .venv/bin/python benches/compare/mol_metrics_compare.py [--n 10000] [--repeats 3]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from sdf_parse import ensure_input, head_records, sh  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    sh(["cargo", "build", "--release", "-p", "molecules", "--example", "mol_bench"])
    path = head_records(ensure_input(100_000), a.n)
    load_before = os.getloadavg()
    ours, peer, rep = [], [], {}
    for _ in range(a.repeats):
        # ours: median of 5 in-process repeats (RDKit warmed up first, as the
        # peer's clock starts after RDKit read the file)
        o = json.loads(subprocess.run(["target/release/examples/mol_bench", "metrics", path, str(a.n), "5"], cwd=ROOT,
                                      check=True, capture_output=True, text=True).stdout)
        ours.append(o["seconds"])
        p = json.loads(subprocess.run([sys.executable, os.path.join(HERE, "mol_metrics_edm.py"), path, "--limit",
                                       str(a.n)], check=True, capture_output=True, text=True).stdout)
        peer.append(p["seconds"])
        rep = {"ours": o["report"], "python": {k: v for k, v in p.items() if k != "seconds"}}
    mo, mp = statistics.median(ours), statistics.median(peer)
    print(json.dumps({"n": a.n, "ours_s": ours, "python_s": peer, "ours_median_s": mo, "python_median_s": mp,
                      "ratio": mo / mp, "target": 0.1, "threads": o["threads"],
                      "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "reports": rep}, indent=1))


if __name__ == "__main__":
    main()
