//! Low-level HDF5 helpers shared by the `.h5ad` reader, writer and backed
//! reader: typed reads dispatched on the *stored* datatype (hdf5-metno can
//! panic or silently reinterpret on some mismatches, so the type is always
//! inspected first), string decoding with UTF-8 validation, attribute access,
//! and the encoding attributes of the anndata on-disk format
//! (<https://anndata.readthedocs.io/en/latest/fileformat-prose.html>).
use std::path::{Path, PathBuf};

use hdf5::types::{FloatSize, IntSize, TypeDescriptor, VarLenAscii, VarLenUnicode};
use hdf5::{Container, Dataset, Group, Location};
use ndarray::{ArrayD, IxDyn};

use super::types::DenseArray;
use crate::error::{DatasetsError, Result};

/// The file being read or written; builds errors that name it.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub file: PathBuf,
}

impl Ctx {
    pub fn new(file: &Path) -> Self {
        Ctx {
            file: file.to_path_buf(),
        }
    }
    pub fn err(&self, path: &str, message: impl Into<String>) -> DatasetsError {
        DatasetsError::H5 {
            file: self.file.clone(),
            path: path.to_string(),
            message: message.into(),
        }
    }
    pub fn fmt(
        &self,
        path: &str,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> DatasetsError {
        DatasetsError::Format {
            file: self.file.clone(),
            path: path.to_string(),
            expected: expected.into(),
            found: found.into(),
        }
    }
    /// Map an HDF5 library error, saying what was being done.
    pub fn h5<T>(&self, path: &str, what: &str, r: hdf5::Result<T>) -> Result<T> {
        r.map_err(|e| self.err(path, format!("{what}: {e}")))
    }
}

/// Join an HDF5 group path and a member name.
pub(crate) fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() || parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

pub(crate) fn descriptor(ctx: &Ctx, path: &str, c: &Container) -> Result<TypeDescriptor> {
    let dt = ctx.h5(path, "reading datatype", c.dtype())?;
    ctx.h5(path, "decoding datatype", dt.to_descriptor())
}

/// Short human name of a stored datatype for messages.
pub(crate) fn type_name(t: &TypeDescriptor) -> String {
    match t {
        TypeDescriptor::Integer(s) => format!("int{}", *s as usize * 8),
        TypeDescriptor::Unsigned(s) => format!("uint{}", *s as usize * 8),
        TypeDescriptor::Float(s) => format!("float{}", *s as usize * 8),
        TypeDescriptor::Boolean => "bool".into(),
        TypeDescriptor::Enum(_) => "enum".into(),
        TypeDescriptor::Compound(c) => {
            format!(
                "compound{{{}}}",
                c.fields
                    .iter()
                    .map(|f| f.name.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            )
        }
        TypeDescriptor::FixedArray(t, n) => format!("{}[{n}]", type_name(t)),
        TypeDescriptor::FixedAscii(n) => format!("fixed ascii string ({n} bytes)"),
        TypeDescriptor::FixedUnicode(n) => format!("fixed utf-8 string ({n} bytes)"),
        TypeDescriptor::VarLenArray(t) => format!("variable-length array of {}", type_name(t)),
        TypeDescriptor::VarLenAscii => "variable-length ascii string".into(),
        TypeDescriptor::VarLenUnicode => "variable-length utf-8 string".into(),
        other => format!("{other:?}"),
    }
}

pub(crate) fn is_string_type(t: &TypeDescriptor) -> bool {
    matches!(
        t,
        TypeDescriptor::VarLenUnicode
            | TypeDescriptor::VarLenAscii
            | TypeDescriptor::FixedAscii(_)
            | TypeDescriptor::FixedUnicode(_)
    )
}

pub(crate) fn is_integer_type(t: &TypeDescriptor) -> bool {
    matches!(t, TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_))
}

/// Decode bytes as UTF-8 or fail naming the element.
pub(crate) fn utf8(ctx: &Ctx, path: &str, bytes: &[u8]) -> Result<String> {
    std::str::from_utf8(bytes).map(str::to_owned).map_err(|e| {
        ctx.fmt(
            path,
            "valid UTF-8 strings",
            format!(
                "invalid UTF-8 ({e}) in {:?}",
                String::from_utf8_lossy(bytes)
            ),
        )
    })
}

/// Fixed-length string payload: strip the NUL / space padding HDF5 uses.
pub(crate) fn fixed_str(ctx: &Ctx, path: &str, chunk: &[u8]) -> Result<String> {
    let end = chunk.iter().position(|&b| b == 0).unwrap_or(chunk.len());
    utf8(ctx, path, &chunk[..end])
}

/// Raw bytes of a dataset or attribute in its own stored datatype (used for
/// fixed-length strings and compound records; never for variable-length data).
#[allow(unsafe_code)]
pub(crate) fn raw_bytes(ctx: &Ctx, path: &str, c: &Container) -> Result<(Vec<u8>, usize)> {
    let dt = ctx.h5(path, "reading datatype", c.dtype())?;
    let size = dt.size();
    let n: usize = c
        .shape()
        .iter()
        .product::<usize>()
        .max(if c.is_scalar() { 1 } else { 0 });
    let mut buf = vec![0u8; size * n];
    if n == 0 {
        return Ok((buf, size));
    }
    // SAFETY: H5Iget_type only inspects the identifier.
    let is_attr =
        unsafe { hdf5_sys::h5i::H5Iget_type(c.id()) == hdf5_sys::h5i::H5I_type_t::H5I_ATTR };
    let status = {
        let _guard = hdf5_sys::LOCK.lock();
        // SAFETY: `buf` holds exactly n elements of the stored type (size bytes
        // each); the memory type is the stored type, so no conversion or
        // variable-length allocation takes place (callers exclude vlen types).
        unsafe {
            if is_attr {
                hdf5_sys::h5a::H5Aread(c.id(), dt.id(), buf.as_mut_ptr().cast())
            } else {
                hdf5_sys::h5d::H5Dread(
                    c.id(),
                    dt.id(),
                    hdf5_sys::h5s::H5S_ALL,
                    hdf5_sys::h5s::H5S_ALL,
                    hdf5_sys::h5p::H5P_DEFAULT,
                    buf.as_mut_ptr().cast(),
                )
            }
        }
    };
    if status < 0 {
        return Err(ctx.err(path, "HDF5 read failed (file truncated or corrupt?)"));
    }
    Ok((buf, size))
}

/// Read a string dataset or attribute (any HDF5 string flavour) into Strings.
pub(crate) fn read_strings(ctx: &Ctx, path: &str, c: &Container) -> Result<Vec<String>> {
    let t = descriptor(ctx, path, c)?;
    match t {
        TypeDescriptor::VarLenUnicode => {
            let v: Vec<VarLenUnicode> = ctx.h5(path, "reading strings", c.read_raw())?;
            v.iter().map(|s| utf8(ctx, path, s.as_bytes())).collect()
        }
        TypeDescriptor::VarLenAscii => {
            let v: Vec<VarLenAscii> = ctx.h5(path, "reading strings", c.read_raw())?;
            v.iter().map(|s| utf8(ctx, path, s.as_bytes())).collect()
        }
        TypeDescriptor::FixedAscii(n) | TypeDescriptor::FixedUnicode(n) => {
            let (bytes, size) = raw_bytes(ctx, path, c)?;
            debug_assert_eq!(size, n);
            bytes
                .chunks(size.max(1))
                .map(|ch| fixed_str(ctx, path, ch))
                .collect()
        }
        other => Err(ctx.fmt(path, "a string datatype", type_name(&other))),
    }
}

/// Raw bytes of the strings at `rows` (sorted, distinct, in range) of a 1-D
/// string dataset of any HDF5 string flavour, in the order of `rows`; only
/// those elements are read (a point selection, or for large contiguous
/// variable-length datasets the direct path of [`super::vlen`]). Fixed-length
/// strings lose their NUL padding. Not decoded: the caller checks UTF-8.
#[allow(unsafe_code)]
pub(crate) fn read_string_bytes_at(
    ctx: &Ctx,
    path: &str,
    ds: &Dataset,
    rows: &[usize],
) -> Result<Vec<Vec<u8>>> {
    let n = ds.size();
    if ds.ndim() != 1 {
        return Err(ctx.fmt(
            path,
            "a 1-D string array",
            format!("shape {:?}", ds.shape()),
        ));
    }
    if let Some(&bad) = rows.iter().find(|&&r| r >= n) {
        return Err(ctx.fmt(path, format!("row indices < {n}"), format!("row {bad}")));
    }
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let t = descriptor(ctx, path, ds)?;
    let points = || ndarray::Array1::from(rows.to_vec());
    match t {
        TypeDescriptor::VarLenUnicode | TypeDescriptor::VarLenAscii => {
            if let Some(v) = super::vlen::fast_bytes_at(ctx, ds, rows) {
                return Ok(v);
            }
            let what = "reading selected strings";
            Ok(match t {
                TypeDescriptor::VarLenUnicode => ctx
                    .h5(path, what, ds.read_slice_1d::<VarLenUnicode, _>(points()))?
                    .iter()
                    .map(|s| s.as_bytes().to_vec())
                    .collect(),
                _ => ctx
                    .h5(path, what, ds.read_slice_1d::<VarLenAscii, _>(points()))?
                    .iter()
                    .map(|s| s.as_bytes().to_vec())
                    .collect(),
            })
        }
        TypeDescriptor::FixedAscii(size) | TypeDescriptor::FixedUnicode(size) => {
            use hdf5_sys::{h5d, h5p, h5s};
            let dt = ctx.h5(path, "reading datatype", ds.dtype())?;
            // the buffer is sized from the memory type HDF5 writes with
            let _ = size;
            let size = dt.size().max(1);
            let mut buf = vec![0u8; size * rows.len()];
            let coords: Vec<u64> = rows.iter().map(|&r| r as u64).collect();
            let status = {
                let _guard = hdf5_sys::LOCK.lock();
                // SAFETY: the point selection has rows.len() elements and
                // `buf` holds that many elements of the stored fixed-length
                // type (the memory type), so nothing is converted or
                // allocated by HDF5; dataspace ids are closed on every path.
                unsafe {
                    let fspace = h5d::H5Dget_space(ds.id());
                    if fspace < 0 {
                        -1
                    } else {
                        let mut status = h5s::H5Sselect_elements(
                            fspace,
                            h5s::H5S_seloper_t::H5S_SELECT_SET,
                            coords.len(),
                            coords.as_ptr(),
                        );
                        let count = [rows.len() as u64];
                        let mspace = h5s::H5Screate_simple(1, count.as_ptr(), std::ptr::null());
                        if status >= 0 && mspace >= 0 {
                            status = h5d::H5Dread(
                                ds.id(),
                                dt.id(),
                                mspace,
                                fspace,
                                h5p::H5P_DEFAULT,
                                buf.as_mut_ptr().cast(),
                            );
                        } else {
                            status = -1;
                        }
                        if mspace >= 0 {
                            h5s::H5Sclose(mspace);
                        }
                        h5s::H5Sclose(fspace);
                        status
                    }
                }
            };
            if status < 0 {
                return Err(ctx.err(
                    path,
                    "reading selected strings failed (file truncated or corrupt?)",
                ));
            }
            Ok(buf
                .chunks(size)
                .map(|ch| {
                    let end = ch.iter().position(|&b| b == 0).unwrap_or(ch.len());
                    ch[..end].to_vec()
                })
                .collect())
        }
        other => Err(ctx.fmt(path, "a string datatype", type_name(&other))),
    }
}

/// A string attribute; `None` when absent.
pub(crate) fn attr_string(
    ctx: &Ctx,
    loc: &Location,
    path: &str,
    name: &str,
) -> Result<Option<String>> {
    if !has_attr(loc, name) {
        return Ok(None);
    }
    let apath = format!("{path}@{name}");
    let a = ctx.h5(&apath, "opening attribute", loc.attr(name))?;
    let mut v = read_strings(ctx, &apath, &a)?;
    if v.len() != 1 {
        return Err(ctx.fmt(&apath, "one string", format!("{} strings", v.len())));
    }
    Ok(v.pop())
}

/// A string-list attribute (e.g. `column-order`); an empty numeric array
/// (what h5py writes for `[]`) is an empty list.
pub(crate) fn attr_strings(
    ctx: &Ctx,
    loc: &Location,
    path: &str,
    name: &str,
) -> Result<Option<Vec<String>>> {
    if !has_attr(loc, name) {
        return Ok(None);
    }
    let apath = format!("{path}@{name}");
    let a = ctx.h5(&apath, "opening attribute", loc.attr(name))?;
    let t = descriptor(ctx, &apath, &a)?;
    if !is_string_type(&t) {
        if a.size() == 0 {
            return Ok(Some(Vec::new()));
        }
        return Err(ctx.fmt(&apath, "an array of strings", type_name(&t)));
    }
    read_strings(ctx, &apath, &a).map(Some)
}

/// Integer attribute values (e.g. `shape`).
pub(crate) fn attr_i64s(
    ctx: &Ctx,
    loc: &Location,
    path: &str,
    name: &str,
) -> Result<Option<Vec<i64>>> {
    if !has_attr(loc, name) {
        return Ok(None);
    }
    let apath = format!("{path}@{name}");
    let a = ctx.h5(&apath, "opening attribute", loc.attr(name))?;
    let t = descriptor(ctx, &apath, &a)?;
    if !is_integer_type(&t) {
        return Err(ctx.fmt(&apath, "integers", type_name(&t)));
    }
    ctx.h5(&apath, "reading attribute", a.read_raw::<i64>())
        .map(Some)
}

/// Boolean attribute (`ordered`); integers are accepted (0 = false).
pub(crate) fn attr_bool(ctx: &Ctx, loc: &Location, path: &str, name: &str) -> Result<Option<bool>> {
    if !has_attr(loc, name) {
        return Ok(None);
    }
    let apath = format!("{path}@{name}");
    let a = ctx.h5(&apath, "opening attribute", loc.attr(name))?;
    let t = descriptor(ctx, &apath, &a)?;
    let v: Vec<bool> = match t {
        TypeDescriptor::Boolean => ctx.h5(&apath, "reading attribute", a.read_raw::<bool>())?,
        t if is_integer_type(&t) => ctx
            .h5(&apath, "reading attribute", a.read_raw::<i64>())?
            .into_iter()
            .map(|x| x != 0)
            .collect(),
        other => return Err(ctx.fmt(&apath, "a boolean", type_name(&other))),
    };
    v.first()
        .copied()
        .map(Some)
        .ok_or_else(|| ctx.fmt(&apath, "one boolean", "an empty array"))
}

pub(crate) fn has_attr(loc: &Location, name: &str) -> bool {
    loc.attr_names()
        .map(|v| v.iter().any(|n| n == name))
        .unwrap_or(false)
}

/// `(encoding-type, encoding-version)` of an element, if present.
pub(crate) fn encoding(ctx: &Ctx, loc: &Location, path: &str) -> Result<Option<(String, String)>> {
    match attr_string(ctx, loc, path, "encoding-type")? {
        None => Ok(None),
        Some(t) => {
            let v = attr_string(ctx, loc, path, "encoding-version")?.unwrap_or_default();
            Ok(Some((t, v)))
        }
    }
}

fn to_dyn<T>(ctx: &Ctx, path: &str, shape: &[usize], v: Vec<T>) -> Result<ArrayD<T>> {
    ArrayD::from_shape_vec(IxDyn(shape), v).map_err(|e| ctx.err(path, format!("shape: {e}")))
}

/// Read a numeric, boolean or string dataset into a [`DenseArray`],
/// dispatching on the stored type; data go straight into a Vec.
pub(crate) fn read_dense(ctx: &Ctx, path: &str, ds: &Dataset) -> Result<DenseArray> {
    let t = descriptor(ctx, path, ds)?;
    let shape = ds.shape();
    macro_rules! rd {
        ($ty:ty, $var:ident) => {{
            let v: Vec<$ty> = ctx.h5(path, "reading array", ds.read_raw::<$ty>())?;
            DenseArray::$var(to_dyn(ctx, path, &shape, v)?)
        }};
    }
    Ok(match t {
        TypeDescriptor::Float(FloatSize::U4) => rd!(f32, F32),
        TypeDescriptor::Float(FloatSize::U8) => rd!(f64, F64),
        TypeDescriptor::Integer(IntSize::U1) => rd!(i8, I8),
        TypeDescriptor::Integer(IntSize::U2) => rd!(i16, I16),
        TypeDescriptor::Integer(IntSize::U4) => rd!(i32, I32),
        TypeDescriptor::Integer(IntSize::U8) => rd!(i64, I64),
        TypeDescriptor::Unsigned(IntSize::U1) => rd!(u8, U8),
        TypeDescriptor::Unsigned(IntSize::U2) => rd!(u16, U16),
        TypeDescriptor::Unsigned(IntSize::U4) => rd!(u32, U32),
        TypeDescriptor::Unsigned(IntSize::U8) => rd!(u64, U64),
        TypeDescriptor::Boolean => rd!(bool, Bool),
        t if is_string_type(&t) => {
            let fast = match t {
                TypeDescriptor::VarLenUnicode | TypeDescriptor::VarLenAscii => {
                    super::vlen::fast_strings(ctx, ds)
                }
                _ => None,
            };
            let v = match fast {
                Some(v) => v,
                None => read_strings(ctx, path, ds)?,
            };
            DenseArray::String(to_dyn(ctx, path, &shape, v)?)
        }
        other => {
            return Err(ctx.fmt(
                path,
                "a numeric, boolean or string array",
                type_name(&other),
            ));
        }
    })
}

// ----------------------------------------------------------------- writing

pub(crate) fn vlu(ctx: &Ctx, path: &str, s: &str) -> Result<VarLenUnicode> {
    s.parse::<VarLenUnicode>().map_err(|e| {
        ctx.fmt(
            path,
            "a string without NUL characters",
            format!("{s:?} ({e})"),
        )
    })
}

pub(crate) fn set_attr_str(
    ctx: &Ctx,
    loc: &Location,
    path: &str,
    name: &str,
    value: &str,
) -> Result<()> {
    let v = vlu(ctx, path, value)?;
    let a = ctx.h5(
        path,
        "creating attribute",
        loc.new_attr::<VarLenUnicode>().create(name),
    )?;
    ctx.h5(path, "writing attribute", a.write_scalar(&v))
}

pub(crate) fn set_attr_strs(
    ctx: &Ctx,
    loc: &Location,
    path: &str,
    name: &str,
    values: &[String],
) -> Result<()> {
    if values.is_empty() {
        // h5py/anndata store an empty list as an empty float64 array.
        let a = ctx.h5(
            path,
            "creating attribute",
            loc.new_attr::<f64>().shape([0]).create(name),
        )?;
        let _ = a;
        return Ok(());
    }
    let v = values
        .iter()
        .map(|s| vlu(ctx, path, s))
        .collect::<Result<Vec<_>>>()?;
    ctx.h5(
        path,
        "writing attribute",
        loc.new_attr_builder().with_data(&v).create(name),
    )
    .map(|_| ())
}

pub(crate) fn set_attr_i64s(
    ctx: &Ctx,
    loc: &Location,
    path: &str,
    name: &str,
    values: &[i64],
) -> Result<()> {
    ctx.h5(
        path,
        "writing attribute",
        loc.new_attr_builder().with_data(values).create(name),
    )
    .map(|_| ())
}

pub(crate) fn set_attr_bool(
    ctx: &Ctx,
    loc: &Location,
    path: &str,
    name: &str,
    value: bool,
) -> Result<()> {
    let a = ctx.h5(
        path,
        "creating attribute",
        loc.new_attr::<bool>().create(name),
    )?;
    ctx.h5(path, "writing attribute", a.write_scalar(&value))
}

pub(crate) fn set_encoding(
    ctx: &Ctx,
    loc: &Location,
    path: &str,
    kind: &str,
    version: &str,
) -> Result<()> {
    set_attr_str(ctx, loc, path, "encoding-type", kind)?;
    set_attr_str(ctx, loc, path, "encoding-version", version)
}

pub(crate) fn create_group(
    ctx: &Ctx,
    parent: &Group,
    ppath: &str,
    name: &str,
) -> Result<(Group, String)> {
    let path = join(ppath, name);
    let g = ctx.h5(&path, "creating group", parent.create_group(name))?;
    Ok((g, path))
}

/// Write a slice as a dataset with the given shape.
pub(crate) fn write_vec<T: hdf5::H5Type>(
    ctx: &Ctx,
    parent: &Group,
    path: &str,
    name: &str,
    shape: &[usize],
    data: &[T],
) -> Result<Dataset> {
    let view = ndarray::ArrayViewD::from_shape(IxDyn(shape), data)
        .map_err(|e| ctx.err(path, format!("shape: {e}")))?;
    ctx.h5(
        path,
        "writing dataset",
        parent.new_dataset_builder().with_data(&view).create(name),
    )
}

/// Write a dense array with its `array` / `string-array` encoding.
pub(crate) fn write_dense(
    ctx: &Ctx,
    parent: &Group,
    ppath: &str,
    name: &str,
    a: &DenseArray,
) -> Result<()> {
    let path = join(ppath, name);
    macro_rules! wr {
        ($arr:expr) => {{
            let arr = $arr.as_standard_layout();
            let slice = arr
                .as_slice()
                .ok_or_else(|| ctx.err(&path, "array not contiguous"))?;
            write_vec(ctx, parent, &path, name, arr.shape(), slice)?
        }};
    }
    let ds = match a {
        DenseArray::F32(x) => wr!(x),
        DenseArray::F64(x) => wr!(x),
        DenseArray::I8(x) => wr!(x),
        DenseArray::I16(x) => wr!(x),
        DenseArray::I32(x) => wr!(x),
        DenseArray::I64(x) => wr!(x),
        DenseArray::U8(x) => wr!(x),
        DenseArray::U16(x) => wr!(x),
        DenseArray::U32(x) => wr!(x),
        DenseArray::U64(x) => wr!(x),
        DenseArray::Bool(x) => wr!(x),
        DenseArray::String(x) => {
            let v = x
                .iter()
                .map(|s| vlu(ctx, &path, s))
                .collect::<Result<Vec<_>>>()?;
            let ds = write_vec(ctx, parent, &path, name, x.shape(), &v)?;
            set_encoding(ctx, &ds, &path, "string-array", "0.2.0")?;
            return Ok(());
        }
    };
    set_encoding(ctx, &ds, &path, "array", "0.2.0")
}

/// Read elements `[start, start + count)` of a 1-D dataset and append them to
/// `out` (one hyperslab H5Dread straight into the Vec's spare capacity).
#[allow(unsafe_code)]
pub(crate) fn read_range_into<T: hdf5::H5Type + Copy>(
    ctx: &Ctx,
    path: &str,
    ds: &Dataset,
    start: usize,
    count: usize,
    out: &mut Vec<T>,
) -> Result<()> {
    use hdf5_sys::{h5d, h5p, h5s};
    let len = ds.size();
    if start.checked_add(count).is_none_or(|e| e > len) || ds.ndim() != 1 {
        return Err(ctx.fmt(
            path,
            format!("a 1-D dataset with at least {} elements", start + count),
            format!("shape {:?}", ds.shape()),
        ));
    }
    if count == 0 {
        return Ok(());
    }
    let mem_t = ctx.h5(path, "memory type", hdf5::Datatype::from_type::<T>())?;
    out.reserve(count);
    let old = out.len();
    let _guard = hdf5_sys::LOCK.lock();
    // SAFETY: the selection has exactly `count` elements, the destination has
    // capacity for `count` more elements of T, and the memory type is T's.
    // Dataspace ids are closed on every path.
    let status = unsafe {
        let fspace = h5d::H5Dget_space(ds.id());
        if fspace < 0 {
            -1
        } else {
            let st = [start as u64];
            let ct = [count as u64];
            let mut status = h5s::H5Sselect_hyperslab(
                fspace,
                h5s::H5S_seloper_t::H5S_SELECT_SET,
                st.as_ptr(),
                std::ptr::null(),
                ct.as_ptr(),
                std::ptr::null(),
            );
            let mspace = h5s::H5Screate_simple(1, ct.as_ptr(), std::ptr::null());
            if status >= 0 && mspace >= 0 {
                status = h5d::H5Dread(
                    ds.id(),
                    mem_t.id(),
                    mspace,
                    fspace,
                    h5p::H5P_DEFAULT,
                    out.as_mut_ptr().add(old).cast(),
                );
            } else {
                status = -1;
            }
            if mspace >= 0 {
                h5s::H5Sclose(mspace);
            }
            h5s::H5Sclose(fspace);
            status
        }
    };
    if status < 0 {
        return Err(ctx.err(
            path,
            format!(
                "reading elements {start}..{} failed (file truncated or corrupt?)",
                start + count
            ),
        ));
    }
    // SAFETY: H5Dread succeeded and initialised `count` elements.
    unsafe { out.set_len(old + count) };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_vlen_strings_match_the_hdf5_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.h5");
        let ctx = Ctx::new(&p);
        let strings: Vec<String> = (0..40_000)
            .map(|i| match i % 4 {
                0 => String::new(),
                1 => format!("cell-{i}"),
                2 => format!("名前-ß-{}", "x".repeat(i % 37)),
                _ => "long ".repeat(i % 50),
            })
            .collect();
        {
            let f = hdf5::File::create(&p).unwrap();
            write_dense(
                &ctx,
                &f,
                "/",
                "names",
                &DenseArray::strings(strings.clone()),
            )
            .unwrap();
        }
        let f = hdf5::File::open(&p).unwrap();
        let ds = f.dataset("names").unwrap();
        let fast: Vec<String> = super::super::vlen::fast_strings(&ctx, &ds).unwrap();
        let slow = read_strings(&ctx, "/names", &ds).unwrap();
        assert_eq!(slow, strings);
        assert_eq!(fast, strings);
        // Selected rows: the direct path is taken here and agrees with the
        // HDF5 point selection and with the strings written.
        let rows: Vec<usize> = (0..40_000)
            .filter(|i| i % 97 == 3 || (20_000..20_300).contains(i))
            .chain([39_999])
            .collect();
        let want: Vec<Vec<u8>> = rows
            .iter()
            .map(|&i| strings[i].clone().into_bytes())
            .collect();
        let direct = super::super::vlen::fast_bytes_at(&ctx, &ds, &rows).unwrap();
        assert_eq!(direct, want);
        assert_eq!(
            read_string_bytes_at(&ctx, "/names", &ds, &rows).unwrap(),
            want
        );
        let points: Vec<Vec<u8>> = ds
            .read_slice_1d::<VarLenUnicode, _>(ndarray::Array1::from(rows.clone()))
            .unwrap()
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        assert_eq!(points, want);
        assert!(read_string_bytes_at(&ctx, "/names", &ds, &[])
            .unwrap()
            .is_empty());
        let e = read_string_bytes_at(&ctx, "/names", &ds, &[40_000]).unwrap_err();
        assert!(e.to_string().contains("row 40000"), "{e}");
    }
}
