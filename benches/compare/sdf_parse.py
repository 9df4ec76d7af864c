"""SDF parse: cellmol's reader vs RDKit SDMolSupplier(sanitize=False, removeHs=False).

Builds the input (100 000 QM9 records, EDM-inferred bonds, via
`cellmol mol import-qm9 --limit 100000`) unless it exists, then runs each side
REPEATS times on the same file, same machine, and prints medians and the
ratio ours/peer (target <= 0.3, BENCHMARKS.md). Ours uses all cores (rayon);
RDKit's supplier is single-threaded (that is its ordinary API).

usage: .venv/bin/python benches/compare/sdf_parse.py [--records N] [--repeats R]
       .venv/bin/python benches/compare/sdf_parse.py --scaling [--instructions]
         (4 sizes: N/8, N/4, N/2, N; medians, us/record and log-log slopes;
          --instructions adds valgrind instruction counts of our side)
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


def head_records(path, n):
    """The first n records of `path` as their own file (made once, next to it)."""
    out = path.replace(".sdf", f".head{n}.sdf")
    if not os.path.exists(out):
        k = 0
        with open(path, "rb") as f, open(out + ".tmp", "wb") as g:
            for line in f:
                g.write(line)
                if line.startswith(b"$$$$"):
                    k += 1
                    if k >= n:
                        break
        os.replace(out + ".tmp", out)
    return out


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
    ours_parse.atoms = j["atoms"]
    return j["seconds"], j["records"]


def ours_instructions(path):
    """Instructions executed by our parser (valgrind cachegrind, one thread):
    a load-independent cost measure for the scaling check."""
    import re
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        r = subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={d}/cg.out",
                            "target/release/examples/mol_bench", "parse", path], cwd=ROOT, capture_output=True,
                           text=True, env={**os.environ, "RAYON_NUM_THREADS": "1"}, check=True)
    m = re.search(r"I\s+refs:\s+([\d,]+)", r.stderr)
    return int(m.group(1).replace(",", "")) if m else None


def slope(xs, ys):
    """Least-squares slope of log(y) on log(x): 1.0 means linear."""
    import math
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def scaling(a):
    """Ours and RDKit at 4 sizes (1/8, 1/4, 1/2, 1 of --records): medians,
    per-record cost, log-log slopes (BENCHMARKS.md 'scaling' row)."""
    import resource
    base = ensure_input(a.records)
    sizes = [a.records // 8, a.records // 4, a.records // 2, a.records]
    rows = []
    for n in sizes:
        path = head_records(base, n) if n < a.records else base
        ours, cpu, peer = [], [], []
        for _ in range(a.repeats):
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t, n1 = ours_parse(path)
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            ours.append(t)
            cpu.append((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime))
            t, n2 = rdkit_parse(path)
            peer.append(t)
            assert n1 == n2 == n, (n1, n2, n)
        row = {"records": n, "atoms": ours_parse.atoms, "ours_median_s": statistics.median(ours),
               "ours_cpu_median_s": statistics.median(cpu),
               "rdkit_median_s": statistics.median(peer)}
        row["ratio"] = row["ours_median_s"] / row["rdkit_median_s"]
        row["ours_us_per_record"] = 1e6 * row["ours_median_s"] / n
        if a.instructions:
            row["ours_instructions"] = ours_instructions(path)
            row["ours_instructions_per_record"] = row["ours_instructions"] / n
            row["ours_instructions_per_atom"] = row["ours_instructions"] / row["atoms"]
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    out = {"sizes": rows, "loadavg_after": os.getloadavg(), "cores": os.cpu_count(),
           "slope_ours_wall": slope(sizes, [r["ours_median_s"] for r in rows]),
           "slope_ours_cpu": slope(sizes, [r["ours_cpu_median_s"] for r in rows]),
           "slope_rdkit_wall": slope(sizes, [r["rdkit_median_s"] for r in rows])}
    # QM9 files are ordered by size, so later records have more atoms: the
    # slopes against atom counts separate that from the parser's own scaling.
    atoms = [r["atoms"] for r in rows]
    out["slope_ours_cpu_vs_atoms"] = slope(atoms, [r["ours_cpu_median_s"] for r in rows])
    if a.instructions:
        out["slope_ours_instructions"] = slope(sizes, [r["ours_instructions"] for r in rows])
        out["slope_ours_instructions_vs_atoms"] = slope(atoms, [r["ours_instructions"] for r in rows])
    print(json.dumps(out, indent=1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scaling", action="store_true", help="run at 4 sizes up to --records and fit the slope")
    ap.add_argument("--instructions", action="store_true",
                    help="with --scaling: also count our instructions with valgrind (load-independent)")
    a = ap.parse_args()
    sh(["cargo", "build", "--release", "-p", "molecules", "--example", "mol_bench"])
    if a.scaling:
        scaling(a)
        return
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
