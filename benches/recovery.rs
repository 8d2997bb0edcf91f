//! How long the event flow takes to recover from a broker crash, measured as an
//! operator meets it: the whole mesh inside `weft up` (optimised build, SQLite),
//! sign-ups from 8 clients, and a broker SIGKILLed about a second into each round:
//!
//! - on weft-broker, the embedded broker (`weft up` starts it again);
//! - on Apache Kafka, a 3-node cluster of the benchmark's own, the node leading
//!   `user-events` partition 0 (started again at once); the partition serves again
//!   when another node leads it.
//!
//! Printed per round: when the broker served again after the kill, and how long after
//! that (and after the last sign-up was answered) analytics had counted every sign-up
//! of the round; then the median and the worst over the rounds, per broker, in one
//! run. Figures are printed, never asserted.
//!
//!     cargo bench --bench recovery
//!
//! `WEFT_BENCH_ROUNDS` (5), `WEFT_BENCH_SIGNUPS` (300 per round) and
//! `WEFT_BENCH_BROKERS` (`weft-broker,kafka`) size it; `WEFT_BENCH_LOG` (`warn`) is the
//! services' log level, and `WEFT_BENCH_KEEP=1` keeps each mesh's data dir and logs
//! (printed) to see where the time went.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::env_or;
use support::cluster::{Cluster, leader};
use support::grpc::{sign_up_request, sign_up_retrying};
use support::{MeshBroker, Ports, Up};
use tonic::transport::Endpoint;
use weft_proto::user::SignupSource;
use weft_proto::user::user_service_client::UserServiceClient;

const CLIENTS: usize = 8;

/// Client `c`'s share of round `round`'s `n` sign-ups; a call that fails (the user
/// service never needs the broker to answer, but be safe) is tried again, for 30 s.
async fn sign_ups(port: u16, round: usize, c: usize, n: usize, done: Arc<AtomicUsize>) {
    let channel = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect_lazy();
    let users = [UserServiceClient::new(channel)];
    for i in (c..n).step_by(CLIENTS) {
        let email = format!("recovery-{round}-{i}@example.com");
        let request = sign_up_request(&email, "Recovery", SignupSource::Api);
        sign_up_retrying(&users, 0, request).await;
        done.fetch_add(1, Ordering::SeqCst);
    }
}

fn broker_pid(data: &Path) -> i32 {
    std::fs::read_to_string(data.join("run/broker.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// The broker under the mesh, and how one round crashes it.
enum Target {
    Embedded { data: PathBuf, port: u16 },
    Kafka(Arc<Cluster>),
}

impl Target {
    /// SIGKILLs the broker (the partition leader on Kafka) and returns once it serves
    /// again: how long that took after the kill.
    async fn crash(&self) -> Duration {
        match self {
            Self::Embedded { data, port } => {
                let pid = broker_pid(data);
                let killed = Instant::now();
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                )
                .unwrap();
                // Back: a new broker process that accepts connections.
                loop {
                    let again = std::fs::read_to_string(data.join("run/broker.pid"))
                        .ok()
                        .and_then(|p| p.trim().parse::<i32>().ok())
                        .is_some_and(|p| p != pid);
                    if again && std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok() {
                        return killed.elapsed();
                    }
                    assert!(
                        killed.elapsed() < Duration::from_secs(60),
                        "the broker never came back"
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            Self::Kafka(cluster) => {
                let c = cluster.clone();
                let node = tokio::task::spawn_blocking(move || {
                    let node = leader(&c.bootstrap, "user-events").expect("a leader");
                    c.kill(node);
                    node
                })
                .await
                .unwrap();
                let killed = Instant::now();
                // Served again once the cluster has fenced the dead node and another
                // replica leads its partition; the node is started again meanwhile,
                // as an operator would, to restore the replication factor.
                let c = cluster.clone();
                let restart = tokio::task::spawn_blocking(move || c.restart(node));
                let back = loop {
                    let c = cluster.clone();
                    let now =
                        tokio::task::spawn_blocking(move || leader(&c.bootstrap, "user-events"))
                            .await
                            .unwrap();
                    if now.is_some_and(|n| n != node) {
                        break killed.elapsed();
                    }
                    assert!(
                        killed.elapsed() < Duration::from_secs(120),
                        "no other leader of user-events/0"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                };
                restart.await.unwrap();
                back
            }
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rounds: usize = env_or("WEFT_BENCH_ROUNDS", 5);
    let per_round: usize = env_or("WEFT_BENCH_SIGNUPS", 300);
    let brokers: String = env_or("WEFT_BENCH_BROKERS", "weft-broker,kafka".to_owned());
    let mut summary = Vec::new();
    for broker in brokers.split(',').map(str::trim) {
        let after_back = match broker {
            "weft-broker" => measure(false, rounds, per_round).await,
            "kafka" => measure(true, rounds, per_round).await,
            other => panic!("WEFT_BENCH_BROKERS: no broker {other:?} (weft-broker, kafka)"),
        };
        summary.push((broker.to_owned(), after_back));
    }
    println!("\n== counted after the broker served again, over {rounds} rounds");
    for (broker, mut after_back) in summary {
        after_back.sort();
        println!(
            "{broker:<12} median {:.2} s, worst {:.2} s",
            common::quantile(&after_back, 0.5).as_secs_f64(),
            after_back.last().unwrap().as_secs_f64()
        );
    }
}

/// Runs the rounds on the embedded broker or (`kafka`) a cluster of the benchmark's
/// own; per round, how long after the broker served again every sign-up was counted.
async fn measure(kafka: bool, rounds: usize, per_round: usize) -> Vec<Duration> {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    let log: String = env_or("WEFT_BENCH_LOG", "warn".to_owned());
    let ports = Ports::free();
    let cluster = if kafka {
        Some(Arc::new(
            tokio::task::spawn_blocking(Cluster::start).await.unwrap(),
        ))
    } else {
        None
    };
    let mesh_broker = match &cluster {
        Some(c) => MeshBroker::cluster(&c.bootstrap),
        None => MeshBroker::new(weft_testkit::BrokerKind::Embedded, &ports),
    };
    let up = {
        let (data, ports) = (data.clone(), ports.clone());
        tokio::task::spawn_blocking(move || {
            Up::start_with_broker(
                mesh_broker,
                &data,
                &ports,
                None,
                &[
                    ("WEFT_LOG", log.as_str()),
                    ("WEFT_BROKER_LOG", log.as_str()),
                ],
            )
        })
        .await
        .unwrap()
    };
    let target = match cluster {
        Some(c) => Target::Kafka(c),
        None => Target::Embedded {
            data: data.clone(),
            port: ports.broker,
        },
    };
    println!(
        "\n== a broker crash under load on {}: weft up (optimised build, SQLite), {rounds} rounds of {per_round} sign-ups from {CLIENTS} clients, {} SIGKILLed ~1 s into each",
        if kafka {
            "Apache Kafka (3 nodes)"
        } else {
            "weft-broker"
        },
        if kafka {
            "the leader of user-events/0 (back when another node leads it)"
        } else {
            "the embedded broker"
        }
    );
    let mut after_back = Vec::new();
    for round in 0..rounds {
        let before = support::grpc::metrics(ports.analytics).await.signups;
        let done = Arc::new(AtomicUsize::new(0));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| tokio::spawn(sign_ups(ports.user, round, c, per_round, done.clone())))
            .collect();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let killed = Instant::now();
        let killed_at = humantime::format_rfc3339_millis(std::time::SystemTime::now());
        let back = target.crash().await;
        for c in clients {
            c.await.unwrap();
        }
        let answered = killed.elapsed();
        let want = before + per_round as i64;
        let counted = loop {
            if support::grpc::metrics(ports.analytics).await.signups >= want {
                break killed.elapsed();
            }
            assert!(
                killed.elapsed() < Duration::from_secs(300),
                "analytics stopped short of {want} sign-ups"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let since_back = counted.saturating_sub(back);
        let since_answered = counted.saturating_sub(answered);
        println!(
            "round {} (killed at {killed_at}): broker back {:.2} s after the kill; last sign-up answered at {:.2} s; all {per_round} counted by analytics at {:.2} s: {:.2} s after the broker was back, {:.2} s after the last answer",
            round + 1,
            back.as_secs_f64(),
            answered.as_secs_f64(),
            counted.as_secs_f64(),
            since_back.as_secs_f64(),
            since_answered.as_secs_f64(),
        );
        after_back.push(since_back);
    }
    up.stop_async().await;
    drop(target);
    if std::env::var_os("WEFT_BENCH_KEEP").is_some() {
        println!("data dir and logs kept in {}", dir.keep().display());
    }
    after_back
}
