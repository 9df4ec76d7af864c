//! SDF / MOL files (V2000 and V3000): a streaming reader over any `BufRead`
//! ([`SdfReader`]), a parallel whole-file reader ([`read_sdf_path`],
//! [`parse_sdf_bytes`]) that splits the input at `$$$$` lines into record byte
//! ranges and parses them with rayon (no `String` per line), and a writer
//! ([`write_sdf`], [`write_sdf_path`]). Gzip input is detected by its magic
//! bytes (so `.sdf.gz` and misnamed files both work); CRLF is accepted.
//! Errors carry the source, 0-based record index and 1-based line.
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use rayon::prelude::*;

use crate::error::{MolError, Result};
use crate::molecule::Molecule;

mod lines;
mod parse;
mod v3000;
mod write;

pub use write::{mol_block, write_record, CtabVersion};

/// Options for the whole-file readers.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct SdfReadOptions {
    /// Skip records that fail to parse (each one is listed in
    /// [`SdfBatch::skipped`]); when false the first bad record is an error.
    pub skip_bad: bool,
    /// Parse records in parallel with rayon.
    pub parallel: bool,
}

impl Default for SdfReadOptions {
    fn default() -> Self {
        SdfReadOptions {
            skip_bad: false,
            parallel: true,
        }
    }
}

/// A record that was skipped, with the reason.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SkippedRecord {
    /// 0-based record index in the file.
    pub record: usize,
    /// 1-based line where the problem was found.
    pub line: usize,
    /// The error message (includes source, record and line).
    pub error: String,
}

impl SkippedRecord {
    fn from_error(record: usize, first_line: usize, e: &MolError) -> Self {
        let line = match e {
            MolError::Parse { line, .. } => *line,
            _ => first_line,
        };
        SkippedRecord {
            record,
            line,
            error: e.to_string(),
        }
    }
}

/// Molecules read from a file plus the records that were skipped.
#[derive(Debug, Clone, Default)]
pub struct SdfBatch {
    pub molecules: Vec<Molecule>,
    /// 0-based record index of each molecule in `molecules`.
    pub record_index: Vec<usize>,
    pub skipped: Vec<SkippedRecord>,
}

/// Open a file for reading, transparently decompressing gzip (by magic bytes).
pub fn open_input(path: &Path) -> Result<Box<dyn BufRead + Send>> {
    let f = std::fs::File::open(path).map_err(|e| MolError::io(path, e))?;
    let mut r = BufReader::with_capacity(1 << 16, f);
    let head = r.fill_buf().map_err(|e| MolError::io(path, e))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(BufReader::with_capacity(
            1 << 16,
            flate2::read::MultiGzDecoder::new(r),
        )))
    } else {
        Ok(Box::new(r))
    }
}

/// Streaming reader: yields one `Result<Molecule>` per record. After an error
/// it goes on with the next record. With [`SdfReader::skip_bad`] bad records
/// are not yielded but collected in [`SdfReader::skipped`].
pub struct SdfReader<R: BufRead> {
    reader: R,
    buf: Vec<u8>,
    source: String,
    record: usize,
    /// 1-based line number of the next line to read.
    next_line: usize,
    skip_bad: bool,
    skipped: Vec<SkippedRecord>,
    done: bool,
}

impl<R: BufRead> SdfReader<R> {
    /// Read from `reader`; `source` names it in error messages.
    pub fn new(reader: R, source: impl Into<String>) -> Self {
        SdfReader {
            reader,
            buf: Vec::with_capacity(1 << 12),
            source: source.into(),
            record: 0,
            next_line: 1,
            skip_bad: false,
            skipped: Vec::new(),
            done: false,
        }
    }
    /// Skip (and record) bad records instead of yielding errors.
    pub fn skip_bad(mut self, yes: bool) -> Self {
        self.skip_bad = yes;
        self
    }
    /// Records skipped so far.
    pub fn skipped(&self) -> &[SkippedRecord] {
        &self.skipped
    }
    /// Index that the next record will have.
    pub fn record_index(&self) -> usize {
        self.record
    }

    /// Read the raw bytes of the next record into `self.buf`; returns the
    /// first line number, or `None` at end of input.
    fn fill_record(&mut self) -> Result<Option<usize>> {
        self.buf.clear();
        let first = self.next_line;
        loop {
            let start = self.buf.len();
            let n = self
                .reader
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| MolError::Parse {
                    source_name: self.source.clone(),
                    record: self.record,
                    line: self.next_line,
                    what: format!("read error: {e}"),
                })?;
            if n == 0 {
                return Ok(if parse::is_blank(&self.buf) {
                    None
                } else {
                    Some(first)
                });
            }
            self.next_line += 1;
            if self.buf[start..].starts_with(b"$$$$") {
                return Ok(Some(first));
            }
        }
    }
}

impl SdfReader<Box<dyn BufRead + Send>> {
    /// Open a (possibly gzipped) file.
    pub fn open(path: &Path) -> Result<Self> {
        Ok(SdfReader::new(
            open_input(path)?,
            path.display().to_string(),
        ))
    }
}

impl<R: BufRead> Iterator for SdfReader<R> {
    type Item = Result<Molecule>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            let first = match self.fill_record() {
                Ok(Some(f)) => f,
                Ok(None) => {
                    self.done = true;
                    return None;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            let idx = self.record;
            self.record += 1;
            if parse::is_blank(&self.buf) {
                continue;
            }
            let r = parse::parse_record(
                &self.buf,
                first,
                parse::Ctx {
                    source: &self.source,
                    record: idx,
                },
            );
            match r {
                Err(e) if self.skip_bad => {
                    self.skipped.push(SkippedRecord::from_error(idx, first, &e))
                }
                other => return Some(other),
            }
        }
    }
}

/// Split `bytes` into complete records ending at a `$$$$` line. Returns
/// `(start, end, first_line)` ranges and the offset where the incomplete tail
/// begins. `first_line` is the 1-based line of `bytes[0]`.
fn split_records(bytes: &[u8], first_line: usize) -> (Vec<(usize, usize, usize)>, usize, usize) {
    let mut out = Vec::new();
    let mut start = 0;
    let mut line = first_line;
    for pos in memchr::memmem::find_iter(bytes, b"$$$$") {
        if pos < start || (pos > 0 && bytes[pos - 1] != b'\n') {
            continue;
        }
        let end = memchr::memchr(b'\n', &bytes[pos..]).map_or(bytes.len(), |i| pos + i + 1);
        out.push((start, end, line));
        line += memchr::memchr_iter(b'\n', &bytes[start..end]).count();
        start = end;
    }
    (out, start, line)
}

/// Parse a whole in-memory SDF. `source` names it in errors.
pub fn parse_sdf_bytes(bytes: &[u8], source: &str, opts: &SdfReadOptions) -> Result<SdfBatch> {
    let mut batch = SdfBatch::default();
    let (mut ranges, tail, tail_line) = split_records(bytes, 1);
    if !parse::is_blank(&bytes[tail..]) {
        ranges.push((tail, bytes.len(), tail_line));
    }
    parse_ranges(bytes, &ranges, 0, source, opts, &mut batch)?;
    Ok(batch)
}

fn parse_ranges(
    bytes: &[u8],
    ranges: &[(usize, usize, usize)],
    first_record: usize,
    source: &str,
    opts: &SdfReadOptions,
    batch: &mut SdfBatch,
) -> Result<()> {
    let one = |(k, &(s, e, l)): (usize, &(usize, usize, usize))| {
        let rec = &bytes[s..e];
        if parse::is_blank(rec) {
            return None;
        }
        let idx = first_record + k;
        Some((
            idx,
            l,
            parse::parse_record(
                rec,
                l,
                parse::Ctx {
                    source,
                    record: idx,
                },
            ),
        ))
    };
    let results: Vec<_> = if opts.parallel {
        ranges
            .par_iter()
            .enumerate()
            .with_min_len(64)
            .filter_map(one)
            .collect()
    } else {
        ranges.iter().enumerate().filter_map(one).collect()
    };
    for (idx, l, r) in results {
        match r {
            Ok(m) => {
                batch.molecules.push(m);
                batch.record_index.push(idx);
            }
            Err(e) if opts.skip_bad => batch.skipped.push(SkippedRecord::from_error(idx, l, &e)),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Read every record of a (possibly gzipped) SDF file, strictly: the first
/// bad record is an error; an empty file is an error.
pub fn read_sdf_path(path: impl AsRef<Path>) -> Result<Vec<Molecule>> {
    let b = read_sdf_path_with(path.as_ref(), &SdfReadOptions::default())?;
    Ok(b.molecules)
}

/// Read a (possibly gzipped) SDF file in 32 MiB chunks, each split at `$$$$`
/// lines and parsed in parallel. An input with no records is an error.
pub fn read_sdf_path_with(path: &Path, opts: &SdfReadOptions) -> Result<SdfBatch> {
    const CHUNK: usize = 32 << 20;
    let source = path.display().to_string();
    let mut r = open_input(path)?;
    let mut batch = SdfBatch::default();
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK + (1 << 20));
    let (mut record, mut line) = (0usize, 1usize);
    let mut eof = false;
    while !eof {
        // Top the buffer up to CHUNK bytes.
        let want = CHUNK.saturating_sub(buf.len()).max(1 << 20);
        let n = (&mut r)
            .take(want as u64)
            .read_to_end(&mut buf)
            .map_err(|e| MolError::io(path, e))?;
        eof = n == 0;
        let (mut ranges, tail, tail_line) = split_records(&buf, line);
        if eof && !parse::is_blank(&buf[tail..]) {
            ranges.push((tail, buf.len(), tail_line));
        }
        let consumed = if eof { buf.len() } else { tail };
        parse_ranges(&buf, &ranges, record, &source, opts, &mut batch)?;
        record += ranges.len();
        line = tail_line;
        buf.drain(..consumed);
    }
    if batch.molecules.is_empty() && batch.skipped.is_empty() {
        return Err(MolError::Empty {
            source_name: source,
        });
    }
    Ok(batch)
}

/// Write molecules as SDF to any writer.
pub fn write_sdf<'a, W: Write + ?Sized>(
    w: &mut W,
    mols: impl IntoIterator<Item = &'a Molecule>,
) -> std::io::Result<()> {
    write_sdf_version(w, mols, CtabVersion::Auto)
}

/// Write molecules as SDF with a chosen CTAB version.
pub fn write_sdf_version<'a, W: Write + ?Sized>(
    w: &mut W,
    mols: impl IntoIterator<Item = &'a Molecule>,
    version: CtabVersion,
) -> std::io::Result<()> {
    let mut s = String::with_capacity(1 << 16);
    for m in mols {
        write_record(&mut s, m, version);
        if s.len() > 1 << 20 {
            w.write_all(s.as_bytes())?;
            s.clear();
        }
    }
    w.write_all(s.as_bytes())
}

/// Write an SDF file atomically (temp file + rename); gzip when the name ends in `.gz`.
pub fn write_sdf_path<'a>(
    path: impl AsRef<Path>,
    mols: impl IntoIterator<Item = &'a Molecule>,
    version: CtabVersion,
) -> Result<()> {
    let path = path.as_ref();
    crate::io::write_atomic_with(path, |w| write_sdf_version(w, mols, version))
}

#[cfg(test)]
mod tests;
