//! A 3-node Apache Kafka cluster of a test's own (`scripts/kafka` on free ports), for
//! tests that kill nodes and so cannot use the shared test cluster.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A cluster of this test's own, stopped on drop.
pub struct Cluster {
    dir: tempfile::TempDir,
    port: u16,
    /// `bootstrap.servers` of the cluster.
    pub bootstrap: String,
}

/// `scripts/kafka` of this checkout.
pub fn script() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kafka"))
}

fn run(dir: &Path, port: u16, args: &[&str]) -> String {
    let mut command = Command::new("bash");
    command
        .arg(script())
        .args(args)
        .arg("--dir")
        .arg(dir)
        .args(["--port", &port.to_string()]);
    super::output::run_ok(&format!("scripts/kafka {args:?}"), &mut command)
}

/// A base port whose three nodes' listeners (+0..2, +100..102, +200..202) are free,
/// from 19410 to 20902: below the kernel's ephemeral range (32768 and up here), so
/// that a client connection's local port cannot take a killed node's port before it
/// starts again; above the ports handed to tests (`weft_testkit::free_port`, below
/// 19000) and a local `scripts/kafka` cluster's defaults (19192 to 19402); clear of the
/// benchmarks' clusters (21000 up) and the shared test cluster (29192 up).
pub fn free_base() -> u16 {
    let seed = std::process::id().wrapping_mul(2_654_435_761).wrapping_add(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos()),
    );
    for i in 0..1000u32 {
        // Steps of 10 so that two picks never share a port.
        let base = 19_410 + (seed.wrapping_add(i.wrapping_mul(7)) % 130) as u16 * 10;
        let free = [0, 1, 2, 100, 101, 102, 200, 201, 202]
            .iter()
            .all(|o| TcpListener::bind(("127.0.0.1", base + o)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no free range of ports for a Kafka cluster from 19410 to 20902");
}

impl Cluster {
    /// Starts three nodes and waits until they serve.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_base();
        let out = run(dir.path(), port, &["start", "--nodes", "3"]);
        let bootstrap = out
            .lines()
            .find_map(|l| l.strip_prefix("KAFKA_BROKERS="))
            .unwrap()
            .to_owned();
        Self {
            dir,
            port,
            bootstrap,
        }
    }

    /// SIGKILLs node `node` (1-based, as Kafka's node ids).
    pub fn kill(&self, node: i32) {
        run(self.dir.path(), self.port, &["kill", &node.to_string()]);
    }

    /// Starts node `node` again.
    pub fn restart(&self, node: i32) {
        run(self.dir.path(), self.port, &["restart", &node.to_string()]);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg("--dir")
            .arg(self.dir.path())
            .output();
    }
}

/// The node leading partition 0 of `topic` on the cluster at `brokers`, if one does
/// (and the metadata answers).
pub fn leader(brokers: &str, topic: &str) -> Option<i32> {
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    let client: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let md = client
        .fetch_metadata(Some(topic), std::time::Duration::from_secs(5))
        .ok()?;
    let leader = md.topics().first()?.partitions().first()?.leader();
    (leader >= 0).then_some(leader)
}
