//! How long the event flow takes to recover from a broker crash, measured as an
//! operator meets it: the whole mesh inside `weft up` (optimised build, embedded
//! broker, SQLite), sign-ups from 8 clients, and the embedded broker SIGKILLed about
//! a second into each round (`weft up` starts it again). Printed per round: when the
//! broker listened again after the kill, and how long after that (and after the last
//! sign-up was answered) analytics had counted every sign-up of the round; then the
//! median and the worst over the rounds. Figures are printed, never asserted.
//!
//!     cargo bench --bench recovery
//!
//! `WEFT_BENCH_ROUNDS` (5) and `WEFT_BENCH_SIGNUPS` (300 per round) size it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::env_or;
use support::{Ports, Up};
use tonic::transport::Endpoint;
use weft_proto::user::user_service_client::UserServiceClient;
use weft_proto::user::{SignUpRequest, SignupSource};

const CLIENTS: usize = 8;

/// Client `c`'s share of round `round`'s `n` sign-ups; a call that fails (the user
/// service never needs the broker to answer, but be safe) is tried again.
async fn sign_ups(port: u16, round: usize, c: usize, n: usize, done: Arc<AtomicUsize>) {
    let channel = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect_lazy();
    let mut users = UserServiceClient::new(channel);
    for i in (c..n).step_by(CLIENTS) {
        let email = format!("recovery-{round}-{i}@example.com");
        loop {
            let answer = users
                .sign_up(SignUpRequest {
                    email: email.clone(),
                    name: "Recovery".into(),
                    password: "correct horse battery 9".into(),
                    source: SignupSource::Api as i32,
                    ..Default::default()
                })
                .await;
            match answer {
                Ok(_) => break,
                Err(s) if s.code() == tonic::Code::AlreadyExists => break,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        done.fetch_add(1, Ordering::SeqCst);
    }
}

fn broker_pid(data: &std::path::Path) -> i32 {
    std::fs::read_to_string(data.join("run/broker.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rounds: usize = env_or("WEFT_BENCH_ROUNDS", 5);
    let per_round: usize = env_or("WEFT_BENCH_SIGNUPS", 300);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    let ports = Ports::free();
    let up = {
        let (data, ports) = (data.clone(), ports.clone());
        tokio::task::spawn_blocking(move || {
            Up::start_env(
                &data,
                &ports,
                None,
                &[("WEFT_LOG", "warn"), ("WEFT_BROKER_LOG", "warn")],
            )
        })
        .await
        .unwrap()
    };
    println!(
        "== a broker crash under load: weft up (optimised build, embedded broker, SQLite), {rounds} rounds of {per_round} sign-ups from {CLIENTS} clients, the broker SIGKILLed ~1 s into each"
    );
    let mut after_back = Vec::new();
    for round in 0..rounds {
        let before = support::grpc::metrics(ports.analytics).await.signups;
        let done = Arc::new(AtomicUsize::new(0));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| tokio::spawn(sign_ups(ports.user, round, c, per_round, done.clone())))
            .collect();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let pid = broker_pid(&data);
        let killed = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        // Back: a new broker process that accepts connections.
        let back = loop {
            let again = std::fs::read_to_string(data.join("run/broker.pid"))
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok())
                .is_some_and(|p| p != pid);
            if again && std::net::TcpStream::connect(("127.0.0.1", ports.broker)).is_ok() {
                break killed.elapsed();
            }
            assert!(
                killed.elapsed() < Duration::from_secs(60),
                "the broker never came back"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
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
            "round {}: broker back {:.2} s after the kill; last sign-up answered at {:.2} s; all {per_round} counted by analytics at {:.2} s: {:.2} s after the broker was back, {:.2} s after the last answer",
            round + 1,
            back.as_secs_f64(),
            answered.as_secs_f64(),
            counted.as_secs_f64(),
            since_back.as_secs_f64(),
            since_answered.as_secs_f64(),
        );
        after_back.push(since_back);
    }
    after_back.sort();
    println!(
        "counted after the broker was back: median {:.2} s, worst {:.2} s over {rounds} rounds",
        common::quantile(&after_back, 0.5).as_secs_f64(),
        after_back.last().unwrap().as_secs_f64()
    );
    tokio::task::spawn_blocking(move || up.stop())
        .await
        .unwrap();
}
