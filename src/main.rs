//! The `a2fseg` binary: parses the command line and hands it to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    a2fseg::cli::run(a2fseg::cli::Cli::parse())
}
