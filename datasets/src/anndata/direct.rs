//! Direct reads of 1-D numeric datasets (sparse `data` / `indices` /
//! `indptr`), bypassing HDF5's chunk cache.
//!
//! anndata writes sparse arrays chunked (resizable) and unfiltered; Debian's
//! HDF5 1.10 copies every chunk through its chunk cache, which makes a 10^7
//! element read several times slower than a plain `pread`. When the dataset
//! is unfiltered, contiguous or 1-D chunked with every chunk allocated, the
//! file has no user block, and the stored type is exactly the in-memory type
//! (same class, size and little-endian order), element ranges are read with
//! `pread` straight from the chunk addresses (`H5Dget_chunk_info`) into the
//! destination Vec. Otherwise `None` is returned and the caller uses HDF5.
use std::ops::Range;
use std::os::unix::io::AsRawFd;

use hdf5::{Dataset, H5Type};

/// `(first element, element count, file address)` of each stored piece.
pub(crate) struct Pieces {
    pieces: Vec<(usize, usize, u64)>,
}

#[allow(unsafe_code)]
fn userblock_is_empty(ds: &Dataset) -> Option<bool> {
    use hdf5_sys::{h5f, h5p};
    let file = ds.file().ok()?;
    let _guard = hdf5_sys::LOCK.lock();
    // SAFETY: plain queries on valid identifiers; the property list is closed.
    unsafe {
        let fcpl = h5f::H5Fget_create_plist(file.id());
        if fcpl < 0 {
            return None;
        }
        let mut ub = 0u64;
        let ok = h5p::H5Pget_userblock(fcpl, &mut ub) >= 0;
        h5p::H5Pclose(fcpl);
        Some(ok && ub == 0)
    }
}

#[allow(unsafe_code)]
fn filters_and_layout(ds: &Dataset) -> Option<(i32, hdf5_sys::h5d::H5D_layout_t)> {
    use hdf5_sys::h5p;
    let _guard = hdf5_sys::LOCK.lock();
    // SAFETY: as above.
    unsafe {
        let dcpl = hdf5_sys::h5d::H5Dget_create_plist(ds.id());
        if dcpl < 0 {
            return None;
        }
        let r = (h5p::H5Pget_nfilters(dcpl), h5p::H5Pget_layout(dcpl));
        h5p::H5Pclose(dcpl);
        Some(r)
    }
}

/// The stored pieces of `ds` if it can be read directly as `T`.
#[allow(unsafe_code)]
pub(crate) fn pieces<T: H5Type>(ds: &Dataset) -> Option<Pieces> {
    use hdf5_sys::h5d::H5D_layout_t;
    if ds.ndim() != 1 {
        return None;
    }
    let dt = ds.dtype().ok()?;
    if dt.byte_order() != hdf5::datatype::ByteOrder::LittleEndian
        || dt.to_descriptor().ok()? != T::type_descriptor()
        || dt.size() != std::mem::size_of::<T>()
        || !userblock_is_empty(ds)?
    {
        return None;
    }
    let (nfilters, layout) = filters_and_layout(ds)?;
    if nfilters != 0 {
        return None;
    }
    let n = ds.size();
    let w = std::mem::size_of::<T>() as u64;
    match layout {
        H5D_layout_t::H5D_CONTIGUOUS => {
            if n == 0 {
                return Some(Pieces { pieces: Vec::new() });
            }
            // SAFETY: query on a valid dataset identifier.
            let (addr, storage) = {
                let _guard = hdf5_sys::LOCK.lock();
                unsafe {
                    (
                        hdf5_sys::h5d::H5Dget_offset(ds.id()),
                        hdf5_sys::h5d::H5Dget_storage_size(ds.id()),
                    )
                }
            };
            (addr != hdf5_sys::h5::HADDR_UNDEF && storage == n as u64 * w).then(|| Pieces {
                pieces: vec![(0, n, addr)],
            })
        }
        H5D_layout_t::H5D_CHUNKED => {
            let chunk = *ds.chunk()?.first()?;
            let count = ds.num_chunks()?;
            if chunk == 0 || count != n.div_ceil(chunk) {
                return None; // unallocated chunks hold fill values: let HDF5 handle them
            }
            let mut pieces = Vec::with_capacity(count);
            for i in 0..count {
                let info = ds.chunk_info(i)?;
                let start = *info.offset.first()? as usize;
                if info.filter_mask != 0
                    || info.size != chunk as u64 * w
                    || info.addr == hdf5_sys::h5::HADDR_UNDEF
                    || start >= n
                {
                    return None;
                }
                pieces.push((start, chunk.min(n - start), info.addr));
            }
            pieces.sort_unstable_by_key(|p| p.0);
            let mut next = 0;
            for p in &pieces {
                if p.0 != next {
                    return None;
                }
                next += p.1;
            }
            (next == n).then_some(Pieces { pieces })
        }
        _ => None,
    }
}

/// Append elements of `ranges` to `out` with `pread`; `None` on any I/O
/// problem (the caller then falls back to HDF5, which reports errors).
#[allow(unsafe_code)]
pub(crate) fn read_ranges<T: H5Type + Copy>(
    file: &std::fs::File,
    p: &Pieces,
    ranges: &[Range<usize>],
    out: &mut Vec<T>,
) -> Option<()> {
    let w = std::mem::size_of::<T>();
    let total: usize = ranges.iter().map(|r| r.len()).sum();
    out.reserve(total);
    let base = out.len();
    let mut filled = 0usize;
    let fd = file.as_raw_fd();
    for r in ranges {
        let mut k = p.pieces.partition_point(|q| q.0 + q.1 <= r.start);
        let mut pos = r.start;
        while pos < r.end {
            let &(start, len, addr) = p.pieces.get(k)?;
            let end = (start + len).min(r.end);
            let count = end - pos;
            let mut done = 0usize;
            while done < count * w {
                // SAFETY: the destination lies within the reserved capacity
                // (base + filled + count <= base + total); pread writes at most
                // the requested number of bytes; T is a plain numeric type for
                // which every bit pattern is valid.
                let got = unsafe {
                    let dst = (out.as_mut_ptr().add(base + filled) as *mut u8).add(done);
                    libc::pread(
                        fd,
                        dst.cast(),
                        count * w - done,
                        (addr + ((pos - start) * w + done) as u64) as libc::off_t,
                    )
                };
                if got <= 0 {
                    return None;
                }
                done += got as usize;
            }
            filled += count;
            pos = end;
            k += 1;
        }
    }
    // SAFETY: exactly `total` elements were written after `base`.
    unsafe { out.set_len(base + filled) };
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunked (resizable) and contiguous datasets read directly give the same
    /// values as HDF5, for whole and partial ranges.
    #[test]
    fn direct_reads_match_hdf5() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.h5");
        let v: Vec<f32> = (0..10_007).map(|i| i as f32 * 0.5).collect();
        {
            let f = hdf5::File::create(&p).unwrap();
            f.new_dataset_builder()
                .with_data(&v)
                .chunk(1000)
                .create("chunked")
                .unwrap();
            f.new_dataset_builder()
                .with_data(&v)
                .create("contig")
                .unwrap();
        }
        let f = hdf5::File::open(&p).unwrap();
        let fh = std::fs::File::open(&p).unwrap();
        for name in ["chunked", "contig"] {
            let ds = f.dataset(name).unwrap();
            let pcs = pieces::<f32>(&ds).expect("direct layout");
            assert!(pieces::<f64>(&ds).is_none(), "type mismatch refused");
            let ranges = [0..10_007, 5..5, 999..1001, 9_990..10_007, 3_000..7_500];
            let mut out: Vec<f32> = Vec::new();
            read_ranges(&fh, &pcs, &ranges, &mut out).unwrap();
            let want: Vec<f32> = ranges
                .iter()
                .flat_map(|r| v[r.clone()].iter().copied())
                .collect();
            assert_eq!(out, want, "{name}");
        }
    }
}
