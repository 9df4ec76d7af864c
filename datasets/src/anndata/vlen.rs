//! Fast path for large variable-length string datasets (`obs_names`,
//! `var_names`, string columns).
//!
//! HDF5's vlen conversion looks every string up in the global heap one by
//! one; for 10^5 names that dominates opening a file. For the common case —
//! a contiguous, unfiltered dataset in a file with 8-byte offsets/lengths and
//! no user block — the on-disk layout is simple (HDF5 File Format
//! Specification 3.0, §III.E "Global Heap" and §VI "Disk format of variable-
//! length data"): every element is `(u32 length, u64 collection address,
//! u32 object index)`, and each `GCOL` collection lists its objects as
//! `(u16 index, u16 refcount, 4 reserved, u64 size, data padded to 8)`.
//! We read the element table and the collections with positioned reads and
//! decode them. Anything unexpected returns `None` and the caller
//! falls back to the HDF5 library path (which also produces the errors).
use std::collections::HashMap;
use std::os::unix::fs::FileExt;

use hdf5::Dataset;

use super::h5util::Ctx;

/// Minimum number of strings for which the fast path is tried.
pub(crate) const MIN_FAST: usize = 2048;

struct Layout {
    offset: u64,
}

#[allow(unsafe_code)]
fn layout(ds: &Dataset, n: usize) -> Option<Layout> {
    use hdf5_sys::{h5d, h5f, h5p};
    let file = ds.file().ok()?;
    let _guard = hdf5_sys::LOCK.lock();
    // SAFETY: plain queries on valid identifiers; property lists are closed.
    unsafe {
        let dcpl = h5d::H5Dget_create_plist(ds.id());
        if dcpl < 0 {
            return None;
        }
        let nfilters = h5p::H5Pget_nfilters(dcpl);
        let layout = h5p::H5Pget_layout(dcpl);
        h5p::H5Pclose(dcpl);
        if nfilters != 0 || layout != h5d::H5D_layout_t::H5D_CONTIGUOUS {
            return None;
        }
        let fcpl = h5f::H5Fget_create_plist(file.id());
        if fcpl < 0 {
            return None;
        }
        let (mut sa, mut ss, mut ub) = (0usize, 0usize, 0u64);
        let ok = h5p::H5Pget_sizes(fcpl, &mut sa, &mut ss) >= 0
            && h5p::H5Pget_userblock(fcpl, &mut ub) >= 0;
        h5p::H5Pclose(fcpl);
        if !ok || sa != 8 || ss != 8 || ub != 0 {
            return None;
        }
        let offset = h5d::H5Dget_offset(ds.id());
        let storage = h5d::H5Dget_storage_size(ds.id());
        if offset == hdf5_sys::h5::HADDR_UNDEF || storage != (n as u64) * 16 {
            return None;
        }
        Some(Layout { offset })
    }
}

/// Objects of one global heap collection: index → byte range in `bytes`.
struct Collection {
    bytes: Vec<u8>,
    objects: Vec<Option<(usize, usize)>>,
}

fn read_collection(f: &std::fs::File, addr: u64, file_len: u64) -> Option<Collection> {
    let (mut bytes, mut objects) = (Vec::new(), Vec::new());
    read_collection_into(f, addr, file_len, &mut bytes, &mut objects)?;
    Some(Collection { bytes, objects })
}

/// Read the collection at `addr` into `bytes` (resized) and list its objects
/// in `objects` (cleared first): index → byte range in `bytes`.
fn read_collection_into(
    f: &std::fs::File,
    addr: u64,
    file_len: u64,
    bytes: &mut Vec<u8>,
    objects: &mut Vec<Option<(usize, usize)>>,
) -> Option<()> {
    let mut head = [0u8; 16];
    f.read_exact_at(&mut head, addr).ok()?;
    if &head[..4] != b"GCOL" || head[4] != 1 {
        return None;
    }
    let size = u64::from_le_bytes(head[8..16].try_into().ok()?);
    if size < 16 || addr.checked_add(size)? > file_len || size > (1 << 34) {
        return None;
    }
    bytes.resize(size as usize, 0);
    f.read_exact_at(bytes, addr).ok()?;
    objects.clear();
    let mut p = 16usize;
    while p + 16 <= bytes.len() {
        let idx = u16::from_le_bytes([bytes[p], bytes[p + 1]]) as usize;
        let osize = u64::from_le_bytes(bytes[p + 8..p + 16].try_into().ok()?) as usize;
        if idx == 0 {
            break; // free space
        }
        let start = p + 16;
        let end = start.checked_add(osize)?;
        if end > bytes.len() {
            return None;
        }
        if objects.len() <= idx {
            objects.resize(idx + 1, None);
        }
        objects[idx] = Some((start, end));
        p = start + osize.div_ceil(8) * 8;
    }
    Some(())
}

/// Decode all strings of `ds`, or `None` to use the HDF5 path (also when a
/// string is not valid UTF-8: the HDF5 path then reports it with its text).
///
/// The element table and the heap collections are read with a few large
/// positioned reads; the strings are then decoded on up to four threads
/// (10^5 allocations and UTF-8 checks dominated opening a large file).
pub(crate) fn fast_strings(ctx: &Ctx, ds: &Dataset) -> Option<Vec<String>> {
    let n = ds.size();
    if n < MIN_FAST {
        return None;
    }
    let lay = layout(ds, n)?;
    let f = std::fs::File::open(&ctx.file).ok()?;
    let file_len = f.metadata().ok()?.len();
    // a corrupt offset: leave it to HDF5 (whose error names file and path)
    if lay.offset.checked_add(n as u64 * 16)? > file_len {
        return None;
    }
    let mut table = vec![0u8; n * 16];
    f.read_exact_at(&mut table, lay.offset).ok()?;
    // Collections in order of first use; consecutive elements mostly share one.
    let mut cols: Vec<(u64, Collection)> = Vec::new();
    let mut index: HashMap<u64, usize> = HashMap::new();
    let mut last = u64::MAX;
    for e in table.chunks_exact(16) {
        let (len, addr, _) = elem(e);
        if len > 0 && addr != last {
            last = addr;
            if !index.contains_key(&addr) {
                index.insert(addr, cols.len());
                cols.push((addr, read_collection(&f, addr, file_len)?));
            }
        }
    }
    let decode = |part: &[u8]| -> Option<Vec<String>> {
        let mut out = Vec::with_capacity(part.len() / 16);
        let mut cur: Option<&(u64, Collection)> = None;
        for e in part.chunks_exact(16) {
            let (len, addr, idx) = elem(e);
            if len == 0 {
                out.push(String::new());
                continue;
            }
            let c = match cur {
                Some(c) if c.0 == addr => c,
                _ => {
                    let c = cols.get(*index.get(&addr)?)?;
                    cur = Some(c);
                    c
                }
            };
            let (s, e) = (*c.1.objects.get(idx as usize)?)?;
            let len = len as usize;
            if len > e - s {
                return None;
            }
            out.push(std::str::from_utf8(&c.1.bytes[s..s + len]).ok()?.to_owned());
        }
        Some(out)
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |t| t.get())
        .min(4)
        .min(n / 16_384)
        .max(1);
    if threads == 1 {
        return decode(&table);
    }
    let per = n.div_ceil(threads) * 16;
    let parts: Vec<Option<Vec<String>>> = std::thread::scope(|sc| {
        let handles: Vec<_> = table
            .chunks(per)
            .skip(1)
            .map(|part| sc.spawn(move || decode(part)))
            .collect();
        let first = decode(&table[..per.min(table.len())]);
        std::iter::once(first)
            .chain(handles.into_iter().map(|h| h.join().ok().flatten()))
            .collect()
    });
    // The first part grows into the whole (no copy of its strings).
    let mut parts = parts.into_iter();
    let mut out = parts.next()??;
    out.reserve_exact(n - out.len());
    for p in parts {
        out.extend(p?);
    }
    Some(out)
}

/// Element-table entries (16 bytes each) closer than this are read in one
/// positioned read when reading selected rows.
const TABLE_GAP: usize = 256;

/// Largest table piece (in entries) read at once for selected rows.
const TABLE_PIECE: usize = 4096;

/// Raw bytes of the strings at `rows` (sorted, distinct, all `< ds.size()`)
/// of `ds`, or `None` to use the HDF5 path. Only the parts of the element
/// table around the selected rows and the heap collections their strings
/// live in are read, each collection once, through two reused buffers (fresh
/// memory for the whole heap cost more in page faults than the reads); nothing
/// is decoded as UTF-8 (the caller does, naming the row).
pub(crate) fn fast_bytes_at(ctx: &Ctx, ds: &Dataset, rows: &[usize]) -> Option<Vec<Vec<u8>>> {
    let n = ds.size();
    if n < MIN_FAST || rows.windows(2).any(|w| w[0] >= w[1]) || rows.last() >= Some(&n) {
        return None;
    }
    let lay = layout(ds, n)?;
    let f = std::fs::File::open(&ctx.file).ok()?;
    let file_len = f.metadata().ok()?.len();
    // a corrupt offset: leave it to HDF5 (whose error names file and path)
    if lay.offset.checked_add(n as u64 * 16)? > file_len {
        return None;
    }
    // Table entries of the rows: spans of nearby rows, read in pieces.
    let spans = super::backed::coalesce(rows.iter().map(|&r| (r, r + 1)), TABLE_GAP);
    let mut elems: Vec<(u32, u64, u32)> = Vec::with_capacity(rows.len());
    let mut buf = Vec::new();
    let mut at = 0usize;
    for &(a, b) in &spans {
        let mut p = a;
        while p < b {
            let q = (p + TABLE_PIECE).min(b);
            buf.resize((q - p) * 16, 0);
            f.read_exact_at(&mut buf, lay.offset + p as u64 * 16).ok()?;
            while at < rows.len() && rows[at] < q {
                let o = (rows[at] - p) * 16;
                elems.push(elem(&buf[o..o + 16]));
                at += 1;
            }
            p = q;
        }
    }
    if elems.len() != rows.len() {
        return None;
    }
    // Non-empty strings grouped by collection; each collection read once.
    let mut order: Vec<usize> = (0..elems.len()).filter(|&k| elems[k].0 > 0).collect();
    order.sort_unstable_by_key(|&k| (elems[k].1, k));
    let mut out: Vec<Vec<u8>> = vec![Vec::new(); rows.len()];
    let mut objects: Vec<Option<(usize, usize)>> = Vec::new();
    let mut g = 0usize;
    while g < order.len() {
        let addr = elems[order[g]].1;
        let end = g + order[g..].partition_point(|&k| elems[k].1 == addr);
        read_collection_into(&f, addr, file_len, &mut buf, &mut objects)?;
        for &k in &order[g..end] {
            let (len, _, idx) = elems[k];
            let (s, e) = (*objects.get(idx as usize)?)?;
            let len = len as usize;
            if len > e - s {
                return None;
            }
            out[k] = buf[s..s + len].to_vec();
        }
        g = end;
    }
    Some(out)
}

/// `(length, collection address, object index)` of one vlen element.
fn elem(c: &[u8]) -> (u32, u64, u32) {
    (
        u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
        u64::from_le_bytes([c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11]]),
        u32::from_le_bytes([c[12], c[13], c[14], c[15]]),
    )
}
