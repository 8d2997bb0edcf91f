//! `weft up --broker kafka`: a local Apache Kafka cluster (KRaft, one JVM per node)
//! started with the mesh and stopped with it, by the checkout's `scripts/kafka`, its
//! data under `<data dir>/kafka`. It stops when the [`LocalKafka`] is dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context as _, bail};
use tokio::process::Command;

/// The local cluster of one mesh.
pub struct LocalKafka {
    script: PathBuf,
    dir: PathBuf,
    nodes: u8,
    port: u16,
}

impl LocalKafka {
    /// The cluster of the mesh whose data is under `data_dir`: `nodes` nodes from
    /// `port` on. The script is `$WEFT_KAFKA_SCRIPT`, which `./weft` sets.
    pub fn new(data_dir: &Path, nodes: u8, port: u16) -> anyhow::Result<Self> {
        let script = std::env::var_os("WEFT_KAFKA_SCRIPT").map(PathBuf::from).context(
            "--broker kafka runs scripts/kafka of a weft checkout: start weft through the checkout's ./weft, or set WEFT_KAFKA_SCRIPT to that script",
        )?;
        if !script.is_file() {
            bail!(
                "WEFT_KAFKA_SCRIPT names {}, which is not a file",
                script.display()
            );
        }
        Ok(Self {
            script,
            dir: data_dir.join("kafka"),
            nodes,
            port,
        })
    }

    fn command(&self, what: &str) -> Command {
        let mut c = Command::new(&self.script);
        c.arg(what)
            .arg("--nodes")
            .arg(self.nodes.to_string())
            .arg("--dir")
            .arg(&self.dir)
            .arg("--port")
            .arg(self.port.to_string())
            .stdin(Stdio::null());
        c
    }

    /// Starts the cluster (or finds it running) and waits until every broker is
    /// registered; returns its bootstrap servers. The script's progress (the first
    /// install, failures) goes to this process's stderr.
    pub async fn start(&self) -> anyhow::Result<String> {
        let out = self
            .command("start")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .output()
            .await
            .with_context(|| format!("running {}", self.script.display()))?;
        if !out.status.success() {
            bail!(
                "the local Apache Kafka cluster did not start (scripts/kafka said why above; its nodes' logs are in {})",
                self.dir.display()
            );
        }
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("KAFKA_BROKERS=").map(str::to_owned))
            .context("scripts/kafka printed no KAFKA_BROKERS line")
    }
}

/// The cluster stops with the mesh, however `weft up` ends: each node gets SIGTERM and
/// the script's grace to drain.
impl Drop for LocalKafka {
    fn drop(&mut self) {
        let status = std::process::Command::new(&self.script)
            .arg("stop")
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status();
        match status {
            Ok(s) if s.success() => println!("stopped kafka"),
            Ok(s) => eprintln!("weft: stopping the local Kafka cluster failed ({s})"),
            Err(e) => eprintln!("weft: cannot run scripts/kafka stop: {e}"),
        }
    }
}
