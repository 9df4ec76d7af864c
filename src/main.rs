//! `cellmol` command-line interface. Parsing, device choice, progress and
//! exit codes live here; the science lives in the workspace crates.
use std::process::ExitCode;

use clap::Parser;

mod cli;

fn main() -> ExitCode {
    // OpenBLAS's threaded LU needs more than the 2 MiB default stack of Rust
    // (rayon) threads; set a larger default before any thread is spawned.
    if std::env::var_os("RUST_MIN_STACK").is_none() {
        std::env::set_var("RUST_MIN_STACK", "67108864");
    }
    restore_sigpipe();
    keep_freed_memory();
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(cli::exit_code(&err))
        }
    }
}

/// Rust ignores SIGPIPE, so `cellmol data inspect x.h5ad | head` would panic
/// on the closed pipe; restore the default (quiet exit) like other Unix tools.
#[cfg(unix)]
#[allow(unsafe_code)]
fn restore_sigpipe() {
    // SAFETY: called at start-up before any thread exists; SIG_DFL is a valid handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn restore_sigpipe() {}

/// Training allocates and frees the same large tensors every step. glibc
/// returns blocks above its mmap threshold to the kernel at once, so each
/// step paid for zero-filled fresh pages again (about half of a Morph step's
/// time was in the kernel). Keep blocks up to 32 MiB on the heap and never
/// trim it; the memory is reused on the next step.
#[cfg(target_env = "gnu")]
#[allow(unsafe_code)]
fn keep_freed_memory() {
    // SAFETY: mallopt only changes allocator parameters; called once at
    // start-up, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

#[cfg(not(target_env = "gnu"))]
fn keep_freed_memory() {}
