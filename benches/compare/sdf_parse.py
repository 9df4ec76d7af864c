"""SDF parse: cellmol's reader vs RDKit SDMolSupplier(sanitize=False, removeHs=False).

Builds the input (100 000 QM9 records, EDM-inferred bonds, via
`cellmol mol import-qm9 --limit 100000`) unless it exists, then runs each side
REPEATS times on the same file, same machine, and prints medians and the
ratio ours/peer (target <= 0.3, BENCHMARKS.md). Ours uses all cores (rayon);
RDKit's supplier is single-threaded (that is its ordinary API).

usage: .venv/bin/python benches/compare/sdf_parse.py [--records N] [--repeats R]
Requires: `cargo build --release -p molecules --example mol_bench` and
`cargo build --bin cellmol` (the script runs both if needed).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, cwd=ROOT, **kw)


def ensure_input(n):
    path = f"/tmp/cellmol_bench/qm9_{n}.sdf"
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        import qm9pack  # noqa: F401  (installed by scripts/setup.sh)
        src = os.path.dirname(sys.modules["qm9pack"].__file__)
        sh(["cargo", "build", "--bin", "cellmol"])
        sh(["target/debug/cellmol", "mol", "import-qm9", "--from", src, "-o", path, "--limit", str(n), "-q"])
    return path


def rdkit_parse(path):
    from rdkit import Chem
    t = time.perf_counter()
    n = 0
    for m in Chem.SDMolSupplier(path, sanitize=False, removeHs=False):
        n += m is not None
    return time.perf_counter() - t, n


def ours_parse(path):
    out = subprocess.run(["target/release/examples/mol_bench", "parse", path], check=True, cwd=ROOT,
                         capture_output=True, text=True).stdout
    j = json.loads(out)
    return j["seconds"], j["records"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    sh(["cargo", "build", "--release", "-p", "molecules", "--example", "mol_bench"])
    path = ensure_input(a.records)
    size = os.path.getsize(path) / 1e6
    ours, peer = [], []
    for _ in range(a.repeats):
        t, n1 = ours_parse(path)
        ours.append(t)
        t, n2 = rdkit_parse(path)
        peer.append(t)
        assert n1 == n2, (n1, n2)
    mo, mp = statistics.median(ours), statistics.median(peer)
    print(json.dumps({"records": n1, "file_mb": round(size, 1), "ours_s": ours, "rdkit_s": peer,
                      "ours_median_s": mo, "rdkit_median_s": mp, "ratio": mo / mp, "target": 0.3,
                      "cores": os.cpu_count()}, indent=1))


if __name__ == "__main__":
    main()
