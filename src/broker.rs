//! The embedded broker: weft-broker, run by `weft up` as a child process
//! (`weft serve broker`) with its data under `<data dir>/broker`, so a crash of the
//! broker is one child to restart, not the launcher.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use tokio::process::Child;
use weft_kit::config::TelemetryArgs;

use crate::children::tail_of;

/// `weft serve broker`: the embedded Kafka-compatible broker.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "weft-broker",
    version,
    about = "weft's embedded Kafka-compatible broker"
)]
pub struct BrokerCommand {
    /// The broker.
    #[command(flatten)]
    pub broker: weft_broker::BrokerArgs,
    /// Logs.
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

/// Runs the broker until SIGTERM/SIGINT.
pub async fn serve(cmd: BrokerCommand) -> anyhow::Result<()> {
    let _telemetry = weft_kit::telemetry::init("weft-broker", &cmd.telemetry)?;
    let broker = weft_broker::Broker::bind(&cmd.broker).await?;
    broker.run(weft_kit::shutdown::on_signal()).await?;
    Ok(())
}

/// The embedded broker `weft up` starts.
pub struct EmbeddedBroker {
    /// Where it listens.
    pub listen: SocketAddr,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Where its output goes.
    pub log: PathBuf,
    /// The mesh's data directory (for `run/broker.pid`).
    mesh_dir: PathBuf,
}

impl EmbeddedBroker {
    /// The broker of the mesh whose data is under `data_dir`, on 127.0.0.1:`port`.
    pub fn new(data_dir: &Path, port: u16) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
            data_dir: data_dir.join("broker"),
            log: data_dir.join("logs/broker.log"),
            mesh_dir: data_dir.to_owned(),
        }
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.listen.to_string()
    }

    /// Starts the broker process and waits until it accepts connections.
    pub async fn start(&self) -> anyhow::Result<Child> {
        let mut child = self.spawn()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "the broker exited with {status} during start-up; see {}:\n{}",
                    self.log.display(),
                    tail_of(&self.log)
                );
            }
            if tokio::net::TcpStream::connect(self.listen).await.is_ok() {
                return Ok(child);
            }
            if Instant::now() > deadline {
                let _ = child.kill().await;
                bail!(
                    "the broker did not listen on {} within 30 s; see {}",
                    self.listen,
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts the broker process without waiting for it.
    pub fn spawn(&self) -> anyhow::Result<Child> {
        if let Some(logs) = self.log.parent() {
            std::fs::create_dir_all(logs)?;
        }
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let child = crate::children::weft_command()?
            .args(["serve", "broker", "--listen", &self.listen.to_string()])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env(
                "WEFT_LOG",
                std::env::var("WEFT_BROKER_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .context("starting the embedded broker")?;
        crate::children::record_pid(&self.mesh_dir, "broker", &child)?;
        Ok(child)
    }
}
