//! The `weft` launcher: `weft up` starts the embedded broker, provisions the topics
//! and runs every service of the mesh as a child process on the ports of the design;
//! `weft tail` prints a topic's events decoded by their `ce_type`.

pub mod broker;
pub mod children;
pub mod cli;
pub mod tail;
pub mod up;

/// Runs a parsed command line.
pub async fn run(cli: cli::Cli) -> anyhow::Result<()> {
    match cli.command {
        cli::Command::Up(args) => up::run(args).await,
        cli::Command::Tail(args) => tail::run(args).await,
        cli::Command::Serve(args) => serve(args).await,
    }
}

/// Runs one service in this process with its own flags.
async fn serve(args: cli::ServeArgs) -> anyhow::Result<()> {
    fn parse<C: clap::Parser>(name: &str, args: &[String]) -> C {
        match C::try_parse_from(std::iter::once(name.to_owned()).chain(args.iter().cloned())) {
            Ok(c) => c,
            Err(e) => {
                let _ = e.print();
                // 64 (EX_USAGE) for bad flags; help is not an error.
                std::process::exit(if e.use_stderr() { 64 } else { 0 });
            }
        }
    }
    match args.service {
        cli::ServiceName::User => {
            weft_user::run(parse::<weft_user::Config>("weft-user", &args.args)).await
        }
        cli::ServiceName::Order => {
            weft_order::run(parse::<weft_order::Config>("weft-order", &args.args)).await
        }
    }
}
