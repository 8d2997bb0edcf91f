//! `weft`: runs the whole mesh on one machine and looks into its topics.
//! See `weft --help`; the logic lives in the `weft` library.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli: weft::cli::Cli = weft_kit::cli::parse_or_exit(std::env::args());
    weft_kit::cli::block_on("weft", weft::run(cli))
}
