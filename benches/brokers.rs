//! The embedded broker against tansu 0.6.0 (the broker weft embedded before), side by
//! side in one run, each as its own process, through librdkafka with weft's client
//! settings:
//!
//! - idle CPU of the broker process with the mesh's four consumers attached (the
//!   order, notification and analytics consumers over 3 topics × 3 partitions, and a
//!   dead-letter reader), over `WEFT_BENCH_SECONDS` (10);
//! - raw idempotent produce (`acks=all`) of `WEFT_BENCH_RECORDS` (50,000) records of
//!   200 bytes: the ceiling of any event chain on that broker;
//! - produce → consume latency at 200 records/s for `WEFT_BENCH_SECONDS`.
//!
//! Each at `fetch.wait.max.ms` 500 and 50. tansu runs only when it is installed
//! (`scripts/install-tansu`, or `WEFT_TANSU_BIN`); without it the line says so.
//!
//!     cargo bench --bench brokers
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use common::{acked_rate, cpu_seconds, env_or, quantile, warm};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message as _, Offset, TopicPartitionList};

const TOPICS: [&str; 3] = ["bench-user", "bench-order", "bench-notification"];

struct Process {
    child: Child,
    bootstrap: String,
    _dir: tempfile::TempDir,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_listening(bootstrap: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(bootstrap).is_err() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the broker exited at start-up"
        );
        assert!(Instant::now() < deadline, "the broker never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Process {
    /// Runs `command` (a broker listening on `bootstrap`, data in `dir`) until it
    /// listens.
    fn spawn(mut command: Command, bootstrap: String, dir: tempfile::TempDir) -> Self {
        let mut child = command.stdin(Stdio::null()).spawn().unwrap();
        wait_listening(&bootstrap, &mut child);
        Self {
            child,
            bootstrap,
            _dir: dir,
        }
    }
}

fn start_weft() -> Process {
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = format!("127.0.0.1:{}", free_port());
    let mut command = Command::new(env!("CARGO_BIN_EXE_weft"));
    command
        .args(["serve", "broker", "--listen", &bootstrap, "--log", "warn"])
        .arg("--data-dir")
        .arg(dir.path());
    Process::spawn(command, bootstrap, dir)
}

fn tansu_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("WEFT_TANSU_BIN") {
        return Some(PathBuf::from(p));
    }
    let home = PathBuf::from(std::env::var_os("HOME")?);
    Some(home.join(".cache/weft/tools/bin/tansu")).filter(|p| p.is_file())
}

fn start_tansu(bin: &Path) -> Process {
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = format!("127.0.0.1:{}", free_port());
    let url = format!("tcp://{bootstrap}");
    let mut command = Command::new(bin);
    command
        .arg("broker")
        .args(["--listener-url", &url, "--advertised-listener-url", &url])
        .args(["--storage-engine", "sqlite://broker.db"])
        .env("RUST_LOG", "warn")
        .env_remove("STORAGE_ENGINE")
        .env_remove("CLUSTER_ID")
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Process::spawn(command, bootstrap, dir)
}

fn client(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("log.connection.close", "false");
    c
}

async fn create_topics(bootstrap: &str) {
    let admin: AdminClient<DefaultClientContext> = client(bootstrap).create().unwrap();
    let topics: Vec<NewTopic<'_>> = TOPICS
        .iter()
        .chain(["bench-dlq"].iter())
        .map(|t| NewTopic::new(t, 3, TopicReplication::Fixed(1)))
        .collect();
    admin
        .create_topics(topics.iter(), &AdminOptions::new())
        .await
        .unwrap();
}

/// A consumer reading every partition of `topics` from the end, as weft's do.
fn consumer(bootstrap: &str, group: &str, topics: &[&str], wait_ms: u32) -> BaseConsumer {
    let c: BaseConsumer = client(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", wait_ms.to_string())
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        for p in 0..3 {
            tpl.add_partition_offset(t, p, Offset::End).unwrap();
        }
    }
    c.assign(&tpl).unwrap();
    c
}

/// Broker CPU (% of one core) with the mesh's four consumers idle.
fn idle_cpu(broker: &Process, wait_ms: u32, seconds: u64) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let sets: [&[&str]; 4] = [&TOPICS[..1], &TOPICS[..2], &TOPICS[..], &["bench-dlq"]];
    let threads: Vec<_> = sets
        .iter()
        .enumerate()
        .map(|(i, topics)| {
            let c = consumer(&broker.bootstrap, &format!("idle-{i}"), topics, wait_ms);
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = c.poll(Duration::from_millis(100));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let pid = broker.child.id();
    let before = cpu_seconds(pid);
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let used = cpu_seconds(pid) - before;
    let pct = 100.0 * used / t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    pct
}

/// weft's own producer settings (idempotent, `acks=all`, `linger.ms` 2).
fn producer(bootstrap: &str) -> FutureProducer {
    weft_events::kafka::KafkaArgs::new(bootstrap)
        .producer("bench")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap()
}

/// Records per second, all acknowledged.
async fn produce_rate(broker: &Process, n: usize) -> f64 {
    acked_rate(&producer(&broker.bootstrap), TOPICS[0], n).await
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// (p50, p99) of produce → consumed at `rate` records/s.
async fn latency(broker: &Process, wait_ms: u32, rate: u64, seconds: u64) -> (Duration, Duration) {
    let c = consumer(&broker.bootstrap, "latency", &TOPICS[1..2], wait_ms);
    let n = (rate * seconds) as usize;
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::with_capacity(n);
        let deadline = Instant::now() + Duration::from_secs(seconds + 60);
        while seen.len() < n && Instant::now() < deadline {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
                let sent: i64 = std::str::from_utf8(m.payload().unwrap())
                    .unwrap()
                    .parse()
                    .unwrap();
                seen.push(Duration::from_micros((now_micros() - sent).max(0) as u64));
            }
        }
        seen
    });
    let p = producer(&broker.bootstrap);
    warm(&p, TOPICS[2]).await;
    std::thread::sleep(Duration::from_secs(2));
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    for i in 0..n {
        tick.tick().await;
        let key = format!("k{}", i % 50);
        let _ = p.send_result(
            FutureRecord::to(TOPICS[1])
                .key(&key)
                .payload(&now_micros().to_string()),
        );
    }
    let mut seen = tokio::task::spawn_blocking(move || reader.join().unwrap())
        .await
        .unwrap();
    seen.sort();
    assert_eq!(seen.len(), n, "every record arrived");
    (quantile(&seen, 0.5), quantile(&seen, 0.99))
}

async fn measure(name: &str, broker: Process, records: usize, seconds: u64) {
    create_topics(&broker.bootstrap).await;
    let rate = produce_rate(&broker, records).await;
    for wait in [500, 50] {
        let idle = {
            let b = &broker;
            tokio::task::block_in_place(|| idle_cpu(b, wait, seconds))
        };
        let (p50, p99) = latency(&broker, wait, 200, seconds).await;
        println!(
            "{name:<14} fetch.wait.max.ms {wait:>3}   idle CPU {idle:>5.1} %   produce {rate:>8.0} records/s   latency at 200/s p50 {:>7.1} ms  p99 {:>7.1} ms",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let records = env_or("WEFT_BENCH_RECORDS", 50_000);
    let seconds = env_or("WEFT_BENCH_SECONDS", 10);
    println!(
        "brokers side by side: {records} records of 200 bytes; idle and latency over {seconds} s; CPU as % of one core"
    );
    measure("weft-broker", start_weft(), records, seconds).await;
    match tansu_bin() {
        Some(bin) => measure("tansu 0.6.0", start_tansu(&bin), records, seconds).await,
        None => println!(
            "tansu 0.6.0    not installed (scripts/install-tansu or WEFT_TANSU_BIN): not measured"
        ),
    }
}
