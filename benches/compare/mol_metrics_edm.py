"""EDM-style stability/validity/uniqueness in Python with RDKit — the peer for
`cellmol mol metrics --protocol edm` (and the per-molecule oracle used by
molecules/tests/qm9_edm.rs).

Follows Hoogeboom et al. 2022 (github.com/ehoogeboom/e3_diffusion_for_molecules,
qm9/bond_analyze.py, qm9/analyze.py, qm9/rdkit_functions.py): bond order from
pair distances with margins 10/5/3 pm, EDM valence table, RDKit SanitizeMol
on the molecule built from inferred bonds, largest fragment SMILES.

usage: mol_metrics_edm.py FILE.sdf [--per-mol] [--limit N]
Prints JSON: {"n_molecules", "atom_stability", "mol_stability", "validity",
"uniqueness", "seconds"} (+ "per_mol": [[stable, n_stable_atoms, valid, smiles]]).
"""
import json
import sys
import time

import numpy as np
from rdkit import Chem, RDLogger

RDLogger.DisableLog("rdApp.*")

bonds1 = {'H': {'H': 74, 'C': 109, 'N': 101, 'O': 96, 'F': 92, 'B': 119, 'Si': 148, 'P': 144, 'As': 152,
                'S': 134, 'Cl': 127, 'Br': 141, 'I': 161},
          'C': {'H': 109, 'C': 154, 'N': 147, 'O': 143, 'F': 135, 'Si': 185, 'P': 184, 'S': 182, 'Cl': 177,
                'Br': 194, 'I': 214},
          'N': {'H': 101, 'C': 147, 'N': 145, 'O': 140, 'F': 136, 'Cl': 175, 'Br': 214, 'S': 168, 'I': 222,
                'P': 177},
          'O': {'H': 96, 'C': 143, 'N': 140, 'O': 148, 'F': 142, 'Br': 172, 'S': 151, 'P': 163, 'Si': 163,
                'Cl': 164, 'I': 194},
          'F': {'H': 92, 'C': 135, 'N': 136, 'O': 142, 'F': 142, 'S': 158, 'Si': 160, 'Cl': 166, 'Br': 178,
                'P': 156, 'I': 187}}
bonds2 = {'C': {'C': 134, 'N': 129, 'O': 120, 'S': 160}, 'N': {'C': 129, 'N': 125, 'O': 121},
          'O': {'C': 120, 'N': 121, 'O': 121, 'P': 150}, 'P': {'O': 150, 'S': 186}, 'S': {'P': 186}}
bonds3 = {'C': {'C': 120, 'N': 116, 'O': 113}, 'N': {'C': 116, 'N': 110}, 'O': {'C': 113}}
margin1, margin2, margin3 = 10, 5, 3
allowed_bonds = {'H': 1, 'C': 4, 'N': 3, 'O': 2, 'F': 1, 'B': 3, 'Al': 3, 'Si': 4, 'P': [3, 5], 'S': 4,
                 'Cl': 1, 'As': 3, 'Br': 1, 'I': 1, 'Hg': [1, 2], 'Bi': [3, 5]}
bond_dict = [None, Chem.rdchem.BondType.SINGLE, Chem.rdchem.BondType.DOUBLE, Chem.rdchem.BondType.TRIPLE]


def get_bond_order(atom1, atom2, distance):
    distance = 100 * distance
    if atom1 not in bonds1 or atom2 not in bonds1[atom1]:
        return 0
    if distance < bonds1[atom1][atom2] + margin1:
        if atom1 in bonds2 and atom2 in bonds2[atom1]:
            if distance < bonds2[atom1][atom2] + margin2:
                if atom1 in bonds3 and atom2 in bonds3[atom1]:
                    if distance < bonds3[atom1][atom2] + margin3:
                        return 3
                return 2
        return 1
    return 0


def infer(positions, symbols):
    n = len(symbols)
    d = np.sqrt(((positions[:, None, :] - positions[None, :, :]) ** 2).sum(-1))
    edges = []
    for i in range(n):
        for j in range(i + 1, n):
            o = get_bond_order(symbols[i], symbols[j], d[i, j])
            if o > 0:
                edges.append((i, j, o))
    return edges


def check_stability(symbols, edges):
    nr = [0] * len(symbols)
    for i, j, o in edges:
        nr[i] += o
        nr[j] += o
    k = 0
    for s, b in zip(symbols, nr):
        allowed = allowed_bonds[s]
        k += int(b == allowed if isinstance(allowed, int) else b in allowed)
    return k == len(symbols), k


def mol2smiles(mol):
    try:
        Chem.SanitizeMol(mol)
    except ValueError:
        return None
    return Chem.MolToSmiles(mol)


def build_molecule(symbols, edges):
    mol = Chem.RWMol()
    for s in symbols:
        mol.AddAtom(Chem.Atom(s))
    for i, j, o in edges:
        mol.AddBond(i, j, bond_dict[o])
    return mol


def evaluate(symbols, positions, canon=False):
    edges = infer(positions, symbols)
    stable, k = check_stability(symbols, edges)
    mol = build_molecule(symbols, edges)
    smiles = mol2smiles(mol)
    valid = smiles is not None
    if valid:
        frags = Chem.rdmolops.GetMolFrags(mol, asMols=True, sanitizeFrags=False)
        largest = max(frags, key=lambda m: m.GetNumAtoms())
        smiles = mol2smiles(largest)
        if canon and smiles is not None:
            # canonical, hydrogens removed, as the Rust side reports
            smiles = Chem.MolToSmiles(Chem.RemoveHs(Chem.MolFromSmiles(smiles))) if Chem.MolFromSmiles(smiles) else smiles
    return stable, k, valid, smiles


def main():
    args = sys.argv[1:]
    path = args[0]
    per_mol = "--per-mol" in args
    limit = int(args[args.index("--limit") + 1]) if "--limit" in args else None
    mols = []
    for m in Chem.SDMolSupplier(path, sanitize=False, removeHs=False):
        if m is None:
            continue
        mols.append(([a.GetSymbol() for a in m.GetAtoms()], m.GetConformer().GetPositions()))
        if limit and len(mols) >= limit:
            break
    t0 = time.perf_counter()
    res = [evaluate(s, p, per_mol) for s, p in mols]
    dt = time.perf_counter() - t0
    n = len(res)
    n_atoms = sum(len(s) for s, _ in mols)
    valid_smiles = [r[3] for r in res if r[2] and r[3] is not None]
    out = {
        "n_molecules": n,
        "atom_stability": sum(r[1] for r in res) / max(n_atoms, 1),
        "mol_stability": sum(r[0] for r in res) / max(n, 1),
        "validity": sum(r[2] for r in res) / max(n, 1),
        "uniqueness": len(set(valid_smiles)) / max(len(valid_smiles), 1),
        "seconds": dt,
    }
    if per_mol:
        out["per_mol"] = [[r[0], r[1], r[2], r[3]] for r in res]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
