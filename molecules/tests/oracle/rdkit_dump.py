"""Dump what Python RDKit reads from SDF files, as the oracle for the Rust
reader/writer tests (molecules/tests/rdkit_oracle.rs).

usage: rdkit_dump.py FILE [FILE ...]   (gzip by .gz extension)
prints one JSON object: {path: [record, ...]} where each record has
parsed, title, atoms (Z), charges, isotopes, radicals, bonds [[a, b, type]],
coords, props {name: value}, sanitize_ok (Chem.SanitizeMol on the record as read, hydrogens kept) and
smiles (Chem.MolToSmiles(Chem.RemoveHs(sanitized))).
"""
import gzip
import json
import sys

from rdkit import Chem, RDLogger

RDLogger.DisableLog("rdApp.*")


def supplier(path, **kw):
    fh = gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")
    return Chem.ForwardSDMolSupplier(fh, **kw)


def dump(path):
    raw = list(supplier(path, sanitize=False, removeHs=False))
    out = []
    for i, m in enumerate(raw):
        if m is None:
            out.append({"index": i, "parsed": False})
            continue
        s = Chem.Mol(m)
        try:
            Chem.SanitizeMol(s)
        except Exception:
            s = None
        conf = m.GetConformer() if m.GetNumConformers() else None
        out.append({
            "index": i,
            "parsed": True,
            "title": m.GetProp("_Name") if m.HasProp("_Name") else "",
            "atoms": [a.GetAtomicNum() for a in m.GetAtoms()],
            "charges": [a.GetFormalCharge() for a in m.GetAtoms()],
            "isotopes": [a.GetIsotope() for a in m.GetAtoms()],
            "radicals": [a.GetNumRadicalElectrons() for a in m.GetAtoms()],
            "bonds": [[b.GetBeginAtomIdx(), b.GetEndAtomIdx(), str(b.GetBondType())] for b in m.GetBonds()],
            "coords": [list(conf.GetAtomPosition(k)) for k in range(m.GetNumAtoms())] if conf else [],
            "props": {k: m.GetProp(k) for k in m.GetPropNames()},
            "sanitize_ok": s is not None,
            "smiles": Chem.MolToSmiles(Chem.RemoveHs(s)) if s is not None else None,
        })
    return out


if __name__ == "__main__":
    json.dump({p: dump(p) for p in sys.argv[1:]}, sys.stdout)
