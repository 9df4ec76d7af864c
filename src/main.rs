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
