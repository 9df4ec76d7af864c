//! File-level helpers: atomic writes (temp file + rename, gzip by `.gz`
//! extension) and format dispatch by extension for readers.
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{MolError, Result};
use crate::molecule::Molecule;

/// Molecule file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Sdf,
    Xyz,
}

/// Format from the file name (`.sdf`, `.mol`, `.sd`, `.xyz`, each optionally `.gz`).
pub fn format_of(path: &Path) -> Result<Format> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    if name.ends_with(".sdf") || name.ends_with(".mol") || name.ends_with(".sd") {
        Ok(Format::Sdf)
    } else if name.ends_with(".xyz") {
        Ok(Format::Xyz)
    } else {
        Err(MolError::Config {
            field: "path".into(),
            value: path.display().to_string(),
            why: "unknown molecule format: expected .sdf/.mol/.xyz (optionally .gz)".into(),
        })
    }
}

/// Read all molecules of an SDF or XYZ file (strict).
pub fn read_molecules_path(path: &Path) -> Result<Vec<Molecule>> {
    match format_of(path)? {
        Format::Sdf => crate::sdf::read_sdf_path(path),
        Format::Xyz => crate::xyz::read_xyz_path(path),
    }
}

/// Write molecules in the format implied by the extension (atomic; gzip on `.gz`).
pub fn write_molecules_path(path: &Path, mols: &[Molecule]) -> Result<()> {
    match format_of(path)? {
        Format::Sdf => crate::sdf::write_sdf_path(path, mols, crate::sdf::CtabVersion::Auto),
        Format::Xyz => crate::xyz::write_xyz_path(path, mols),
    }
}

/// Create `path` atomically: `f` writes into a temp file in the same
/// directory (gzip-compressed when `path` ends in `.gz`), then it is renamed.
pub fn write_atomic_with(
    path: &Path,
    f: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let tmp: PathBuf = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let res = (|| -> std::io::Result<()> {
        let file = std::fs::File::create(&tmp)?;
        let mut bw = std::io::BufWriter::with_capacity(1 << 16, file);
        if name.ends_with(".gz") {
            let mut gz = flate2::write::GzEncoder::new(&mut bw, flate2::Compression::default());
            f(&mut gz)?;
            gz.finish()?;
        } else {
            f(&mut bw)?;
        }
        let file = bw.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(MolError::io(path, e));
    }
    Ok(())
}
