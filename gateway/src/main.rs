//! The `weft-gateway` binary: parse config (exit 64 when it is bad), run until
//! signalled.

use std::process::ExitCode;

fn main() -> ExitCode {
    let config: weft_gateway::Config = weft_kit::cli::parse_or_exit(std::env::args());
    weft_kit::cli::block_on("weft-gateway", weft_gateway::run(config))
}
