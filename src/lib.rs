//! The `weft` launcher: `weft up` starts the embedded broker, provisions the topics
//! and runs every service of the mesh and the gateway as child processes on the
//! ports of the design;
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
        cli::Command::Supervise(args) => supervise(args).await,
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
    }
}

/// Runs `args.command` until it exits, forwarding SIGTERM/SIGINT to it, and stopping
/// it when this process's parent goes away.
async fn supervise(args: cli::SuperviseArgs) -> anyhow::Result<()> {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::{Pid, getppid};
    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| anyhow::anyhow!("nothing to supervise"))?;
    let mut child = tokio::process::Command::new(program).args(rest).spawn()?;
    let pid = child.id().map(|p| Pid::from_raw(p as i32));
    let stop = weft_kit::shutdown::on_signal();
    let parent = getppid();
    let mut orphan_check = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            status = child.wait() => {
                let status = status?;
                return if status.success() { Ok(()) } else { Err(anyhow::anyhow!("{program} exited with {status}")) };
            }
            _ = stop.cancelled() => break,
            _ = orphan_check.tick() => if getppid() != parent { break },
        }
    }
    if let Some(pid) = pid {
        let _ = kill(pid, Signal::SIGTERM);
    }
    match tokio::time::timeout(std::time::Duration::from_secs(10), child.wait()).await {
        Ok(_) => Ok(()),
        Err(_) => {
            child.kill().await?;
            Ok(())
        }
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
