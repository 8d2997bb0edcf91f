//! The `weft` launcher: `weft up` starts the embedded broker, provisions the topics
//! and runs every service of the mesh as a child process on the ports of the design;
//! `weft tail` prints a topic's events decoded by their `ce_type`.

pub mod broker;
pub mod cli;
pub mod tail;
pub mod up;

/// Runs a parsed command line.
pub async fn run(cli: cli::Cli) -> anyhow::Result<()> {
    match cli.command {
        cli::Command::Up(args) => up::run(args).await,
        cli::Command::Tail(args) => tail::run(args).await,
    }
}
