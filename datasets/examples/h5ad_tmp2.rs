use std::time::Instant;
fn main() {
    let f = "/tmp/cellmol_h5ad_bench/screen.h5ad";
    let mode = std::env::args().nth(1).unwrap();
    let t = Instant::now();
    match mode.as_str() {
        "raw" => { let file = hdf5::File::open(f).unwrap(); let a: Vec<f32> = file.dataset("X/data").unwrap().read_raw().unwrap(); let b: Vec<i32> = file.dataset("X/indices").unwrap().read_raw().unwrap(); println!("{} {}", a.len(), b.len()); }
        "pread" => {
            use std::os::unix::fs::FileExt;
            let file = hdf5::File::open(f).unwrap();
            let fh = std::fs::File::open(f).unwrap();
            for name in ["X/data", "X/indices"] {
                let ds = file.dataset(name).unwrap();
                let off = unsafe { hdf5_sys::h5d::H5Dget_offset(ds.id()) };
                let n = ds.size();
                let mut v: Vec<u32> = Vec::with_capacity(n);
                let buf = unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, n * 4) };
                fh.read_exact_at(buf, off).unwrap();
                unsafe { v.set_len(n) };
                println!("{} {}", name, v.len());
            }
        }
        "open" => { let r = datasets::anndata::H5adReader::open(f).unwrap(); println!("{}", r.n_obs()); }
        "x" => { let file = hdf5::File::open(f).unwrap(); drop(file); let r = datasets::anndata::H5adReader::open(f).unwrap(); let t2 = Instant::now(); let m = r.read_submatrix("X", None, None).unwrap(); println!("x only {:?} {}", t2.elapsed(), m.nnz()); }
        _ => { let a = datasets::anndata::read_h5ad(f).unwrap(); println!("{}", a.n_obs()); }
    }
    println!("{mode} {:?}", t.elapsed());
}
