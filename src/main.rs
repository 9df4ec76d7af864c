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
