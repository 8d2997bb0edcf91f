//! The `weft` launcher: `weft up` starts the embedded broker (weft-broker), provisions the topics
//! and runs every service of the mesh and the gateway as child processes on the
//! ports of the design;
//! `weft tail` prints a topic's events decoded by their `ce_type`; `weft lag` how far
//! each consumer group is behind.

pub mod admin;
pub mod broker;
pub mod children;
pub mod cli;
pub mod demo;
pub mod dlq;
pub mod fault;
pub mod lag;
pub mod local_kafka;
pub mod ports;
pub mod restarts;
pub mod run_lock;
pub mod tail;
pub mod up;

/// Runs a parsed command line.
pub async fn run(cli: cli::Cli) -> anyhow::Result<()> {
    match cli.command {
        cli::Command::Up(args) => up::run(args).await,
        cli::Command::Tail(args) => tail::run(args).await,
        cli::Command::Dlq(args) => dlq::run(args).await,
        cli::Command::Lag(args) => lag::run(args).await,
        cli::Command::Demo(args) => demo::run(args).await,
        cli::Command::Fault(cmd) => fault::run(cmd),
        cli::Command::Admin(cmd) => admin::run(cmd).await,
        cli::Command::Serve(args) => serve(args).await,
    }
}

/// Runs one service in this process with its own flags.
async fn serve(args: cli::ServeArgs) -> anyhow::Result<()> {
    use weft_kit::cli::parse_or_exit;
    tokio::spawn(stop_when_orphaned());
    let argv = |name: &str| std::iter::once(name.to_owned()).chain(args.args.iter().cloned());
    match args.service {
        cli::ServiceName::User => weft_user::run(parse_or_exit(argv("weft-user"))).await,
        cli::ServiceName::Order => weft_order::run(parse_or_exit(argv("weft-order"))).await,
        cli::ServiceName::Notification => {
            weft_notification::run(parse_or_exit(argv("weft-notification"))).await
        }
        cli::ServiceName::Analytics => {
            weft_analytics::run(parse_or_exit(argv("weft-analytics"))).await
        }
        cli::ServiceName::Gateway => weft_gateway::run(parse_or_exit(argv("weft-gateway"))).await,
        cli::ServiceName::Broker => broker::serve(parse_or_exit(argv("weft-broker"))).await,
    }
}

/// A service started by `weft up` stops (gracefully, through SIGTERM) when its
/// launcher is gone, even if the launcher was killed without a chance to stop it.
async fn stop_when_orphaned() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::{getpid, getppid};
    let parent = getppid();
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        if getppid() != parent {
            let _ = kill(getpid(), Signal::SIGTERM);
            return;
        }
    }
}
