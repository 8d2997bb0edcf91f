//! The embedded broker: tansu (a Kafka-compatible broker from crates.io) run as a
//! child process, with SQLite storage under the data dir so events survive a restart,
//! or memory storage for speed.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::process::{Child, Command};

use crate::cli::BrokerStorage;

/// Finds the tansu binary: `explicit`, then the weft tools cache, then `PATH`.
pub fn locate(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        if p.is_file() {
            return Ok(p.to_owned());
        }
        bail!(
            "WEFT_TANSU_BIN / --tansu-bin points at {}, which is not a file",
            p.display()
        );
    }
    let tools = std::env::var_os("WEFT_TOOLS_DIR").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/weft/tools"),
        PathBuf::from,
    );
    let cached = tools.join("bin/tansu");
    if cached.is_file() {
        return Ok(cached);
    }
    if let Some(found) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("tansu"))
            .find(|p| p.is_file())
    }) {
        return Ok(found);
    }
    bail!(
        "the embedded broker (tansu) is not installed; run scripts/install-tansu \
         (the ./weft wrapper does it for you), or use --broker external with KAFKA_BROKERS"
    )
}

/// A running embedded broker.
pub struct EmbeddedBroker {
    /// The child process.
    pub child: Child,
    /// `host:port` clients connect to.
    pub bootstrap: String,
    /// Where its output goes.
    pub log: PathBuf,
}

impl EmbeddedBroker {
    /// Starts tansu on 127.0.0.1:`port` and waits until it accepts connections.
    pub async fn start(
        bin: &Path,
        data_dir: &Path,
        port: u16,
        storage: BrokerStorage,
    ) -> anyhow::Result<Self> {
        let dir = data_dir.join("broker");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let log = data_dir.join("logs/broker.log");
        std::fs::create_dir_all(data_dir.join("logs"))?;
        let out =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let url = format!("tcp://127.0.0.1:{port}");
        // tansu resolves an sqlite:// path against its working directory.
        let engine = match storage {
            BrokerStorage::Sqlite => "sqlite://broker.db",
            BrokerStorage::Memory => "memory://tansu/",
        };
        // Through `weft supervise`, so the broker stops even if the launcher is killed.
        let mut child = Command::new(std::env::current_exe().context("locating the weft binary")?)
            .arg("supervise")
            .arg(bin)
            .arg("broker")
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", engine])
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("STORAGE_ENGINE")
            .env_remove("CLUSTER_ID")
            .env(
                "RUST_LOG",
                std::env::var("WEFT_BROKER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;

        let bootstrap = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if tokio::net::TcpStream::connect(&bootstrap).await.is_ok() {
                break;
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "the broker exited with {status} during start-up (is port {port} taken?); see {}:\n{}",
                    log.display(),
                    tail_of(&log)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "the broker did not listen on {bootstrap} within 60 s; see {}",
                    log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self {
            child,
            bootstrap,
            log,
        })
    }
}

/// The last lines of a log file, for error messages.
pub fn tail_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}
