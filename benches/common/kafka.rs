//! A 3-node Apache Kafka cluster of the benchmark's own, started with `scripts/kafka`
//! in a temporary dir on free ports below the ephemeral range, and stopped when the
//! guard is dropped (also when the benchmark panics).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `scripts/kafka` of this repository.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka")
}

/// True when nothing listens on, and this process can bind, `127.0.0.1:port`.
fn free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A base port from 21000 to 27999 whose +0..2, +100..102 and +200..202 are free.
/// Never 19192 or 29192 (other clusters live there): both are outside the range.
fn base_port(attempt: u32) -> u16 {
    let seed = std::process::id()
        .wrapping_mul(2_654_435_761)
        .wrapping_add(attempt.wrapping_mul(40_503))
        .wrapping_add(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos()),
        );
    for i in 0..700u32 {
        // Steps of 10 so that two picks never overlap by a port or two.
        let base = 21_000 + ((seed.wrapping_add(i * 7)) % 700) as u16 * 10;
        if [0, 1, 2, 100, 101, 102, 200, 201, 202]
            .iter()
            .all(|o| free(base + o))
        {
            return base;
        }
    }
    panic!("no free base port from 21000 to 27999 for a 3-node Kafka cluster");
}

/// A running 3-node cluster; stopped (`scripts/kafka stop`) on drop.
pub struct KafkaCluster {
    dir: tempfile::TempDir,
    brokers: String,
    port: u16,
}

impl KafkaCluster {
    /// Starts three KRaft nodes (each broker and controller) and waits until every
    /// broker is registered. Blocks for tens of seconds.
    pub fn start() -> Self {
        let mut last = String::new();
        for attempt in 0..3 {
            let dir = tempfile::Builder::new()
                .prefix("weft-bench-kafka-")
                .tempdir()
                .unwrap();
            let port = base_port(attempt);
            // The guard exists before the start, so nodes of a failed start are stopped.
            let mut cluster = Self {
                dir,
                brokers: String::new(),
                port,
            };
            let out = Command::new(script())
                .args(["start", "--nodes", "3", "--port", &port.to_string()])
                .arg("--dir")
                .arg(cluster.dir.path())
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            if out.status.success()
                && let Some(b) = stdout
                    .lines()
                    .find_map(|l| l.strip_prefix("KAFKA_BROKERS="))
            {
                cluster.brokers = b.trim().to_owned();
                return cluster;
            }
            last = format!(
                "scripts/kafka start on port {port} exited with {}:\n{stdout}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            eprintln!("{last}\n(trying other ports)");
        }
        panic!("no Kafka cluster after 3 attempts; the last: {last}");
    }

    /// `bootstrap.servers` of the cluster.
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// The first port (node i listens on it + i - 1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The pids of the three JVMs, from `<dir>/node-<i>/pid`.
    pub fn pids(&self) -> Vec<u32> {
        (1..=3)
            .map(|i| {
                std::fs::read_to_string(self.dir.path().join(format!("node-{i}/pid")))
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap()
            })
            .collect()
    }
}

impl Drop for KafkaCluster {
    fn drop(&mut self) {
        let status = Command::new(script())
            .arg("stop")
            .arg("--dir")
            .arg(self.dir.path())
            .output();
        if !matches!(&status, Ok(o) if o.status.success()) {
            eprintln!(
                "scripts/kafka stop --dir {} failed: {status:?}",
                self.dir.path().display()
            );
        }
    }
}
