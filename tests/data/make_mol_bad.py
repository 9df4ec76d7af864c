"""Write tests/data/mol_bad.sdf: one good record (ethanol) followed by one bad
record of each kind the reader must report (and skip) without panicking,
then a good record again. Used by tests/mol_cli.rs.

Records: 0 good, 1 truncated (atom block cut by $$$$), 2 counts line claims
4 atoms but 3 follow, 3 unknown element 'Xq', 4 non-numeric coordinate,
5 V3000 header claiming 10^9 atoms, 6 good.
"""
import pathlib

GOOD = """ethanol
  cellmol           3D

  3  2  0  0  0  0  0  0  0  0999 V2000
   -0.0000    0.0000    0.0000 C   0  0  0  0  0  0  0  0  0  0  0  0
    1.5200    0.0000    0.0000 C   0  0  0  0  0  0  0  0  0  0  0  0
    2.0200    1.3500    0.0000 O   0  0  0  0  0  0  0  0  0  0  0  0
  1  2  1  0
  2  3  1  0
M  END
> <name>
ethanol

$$$$
"""

lines = GOOD.splitlines(keepends=True)
truncated = "".join(lines[:5]).replace("ethanol", "truncated") + "$$$$\n"
mismatch = GOOD.replace("  3  2  0", "  4  2  0").replace("ethanol\n  c", "mismatch\n  c")
unknown = GOOD.replace(" O   0", " Xq  0").replace("ethanol\n  c", "unknown\n  c")
nonnum = GOOD.replace("    1.5200    0.0000", "    1.5200    0.0x00").replace("ethanol\n  c", "nonnumeric\n  c")
huge = """huge
  cellmol           3D

  0  0  0     0  0            999 V3000
M  V30 BEGIN CTAB
M  V30 COUNTS 1000000000 0 0 0 0
M  V30 BEGIN ATOM
M  V30 END ATOM
M  V30 END CTAB
M  END
$$$$
"""
out = GOOD + truncated + mismatch + unknown + nonnum + huge + GOOD.replace("ethanol\n  c", "ethanol2\n  c")
pathlib.Path(__file__).with_name("mol_bad.sdf").write_text(out)
