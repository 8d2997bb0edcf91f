//! The user service under an anonymous sign-up flood, inside `weft up` (release
//! build, embedded broker, SQLite), on this machine:
//!
//! `WEFT_BENCH_CLIENTS` (64) anonymous clients call `SignUp` straight on the user
//! service's gRPC port, each call with a `WEFT_BENCH_DEADLINE_MS` (50) ms deadline,
//! for `WEFT_BENCH_SECONDS` (15). Meanwhile one honest client signs up once a second
//! with no deadline. Printed: the service's resident memory before, at its peak
//! (sampled every 100 ms, and the kernel's high-water mark) and
//! `WEFT_BENCH_SETTLE_SECONDS` (10) after; how the flood's calls ended; the honest
//! sign-ups' latencies; and the hashing pool's gauges.
//!
//! Figures are printed, never asserted: this machine is shared and noisy.
//!
//!     cargo bench --bench flood
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{env_or, quantile, rss_kib};
use support::grpc::sign_up_request;
use support::{Ports, Up};
use tonic::transport::Channel;
use weft_proto::user::user_service_client::UserServiceClient;
use weft_proto::user::{SignUpRequest, SignupSource};

fn signup(email: String) -> SignUpRequest {
    sign_up_request(&email, "Flood", SignupSource::Api)
}

/// The `password_hashes_*` lines of the user service's metrics.
async fn hash_gauges(http: &reqwest::Client, admin_port: u16) -> Vec<String> {
    let body = support::rest::text(http, &format!("http://127.0.0.1:{admin_port}/metrics")).await;
    body.lines()
        .filter(|l| l.starts_with("password_hashes_"))
        .map(str::to_owned)
        .collect()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let clients = env_or("WEFT_BENCH_CLIENTS", 64u64);
    let deadline = Duration::from_millis(env_or("WEFT_BENCH_DEADLINE_MS", 50));
    let seconds = env_or("WEFT_BENCH_SECONDS", 15u64);
    let settle = env_or("WEFT_BENCH_SETTLE_SECONDS", 10u64);
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let up = Up::start_env_async(dir.path(), &ports, &[("WEFT_LOG", "warn")]).await;
    let pid: u32 = std::fs::read_to_string(dir.path().join("run/user.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let http = support::rest::client();
    let channel = support::grpc::channel(ports.user).await;
    // One honest sign-up first, so the baseline has a warm service.
    UserServiceClient::new(channel.clone())
        .sign_up(signup("warm@example.com".into()))
        .await
        .unwrap();
    let (before, _) = rss_kib(pid);

    let running = Arc::new(AtomicBool::new(true));
    let peak = Arc::new(AtomicU64::new(before));
    let sampler = {
        let (running, peak) = (running.clone(), peak.clone());
        tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid).0, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let honest = {
        let (running, channel) = (running.clone(), channel.clone());
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failed = Vec::new();
            let mut i = 0;
            while running.load(Ordering::Relaxed) {
                let t = Instant::now();
                match UserServiceClient::new(channel.clone())
                    .sign_up(signup(format!("honest{i}@example.com")))
                    .await
                {
                    Ok(_) => latencies.push(t.elapsed()),
                    Err(s) if s.code() == tonic::Code::Internal => {
                        failed.push(format!("Internal: {}", s.message()));
                    }
                    Err(s) => failed.push(format!("{:?}", s.code())),
                }
                i += 1;
                tokio::time::sleep(Duration::from_secs(1).saturating_sub(t.elapsed())).await;
            }
            (latencies, failed)
        })
    };

    // The flood: each client keeps its own connection, as separate machines would.
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut flood = Vec::new();
    for c in 0..clients {
        let channel = Channel::from_shared(format!("http://127.0.0.1:{}", ports.user))
            .unwrap()
            .connect()
            .await
            .unwrap();
        flood.push(tokio::spawn(async move {
            let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
            let mut n = 0;
            while Instant::now() < until {
                let mut req = tonic::Request::new(signup(format!("flood{c}-{n}@example.com")));
                req.set_timeout(deadline);
                let outcome = match UserServiceClient::new(channel.clone()).sign_up(req).await {
                    Ok(_) => "OK".to_owned(),
                    // An internal error is a fault to look into: keep its message.
                    Err(s) if s.code() == tonic::Code::Internal => {
                        format!("Internal: {}", s.message())
                    }
                    Err(s) => format!("{:?}", s.code()),
                };
                *outcomes.entry(outcome).or_default() += 1;
                n += 1;
            }
            outcomes
        }));
    }
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    for f in flood {
        for (k, v) in f.await.unwrap() {
            *outcomes.entry(k).or_default() += v;
        }
    }
    running.store(false, Ordering::Relaxed);
    sampler.await.unwrap();
    let (mut latencies, failed) = honest.await.unwrap();
    let (at_end, hwm) = rss_kib(pid);
    let gauges = hash_gauges(&http, ports.user_admin).await;
    tokio::time::sleep(Duration::from_secs(settle)).await;
    let (settled, _) = rss_kib(pid);

    let calls: u64 = outcomes.values().sum();
    println!(
        "flood: {clients} clients × {seconds} s of SignUp with {} ms deadlines: {calls} calls ({:.0}/s), ended {outcomes:?}",
        deadline.as_millis(),
        calls as f64 / seconds as f64
    );
    println!(
        "  user service RSS: {:.0} MiB before, peak {:.0} MiB sampled ({:.0} MiB high-water mark), {:.0} MiB at the end, {:.0} MiB {settle} s later",
        mib(before),
        mib(peak.load(Ordering::Relaxed)),
        mib(hwm),
        mib(at_end),
        mib(settled)
    );
    latencies.sort();
    if latencies.is_empty() {
        println!("  honest sign-ups: none succeeded ({failed:?})");
    } else {
        println!(
            "  honest sign-ups (one a second, no deadline): {} ok, {} failed {failed:?}; p50 {:.0?}, max {:.0?}",
            latencies.len(),
            failed.len(),
            quantile(&latencies, 0.5),
            latencies.last().unwrap()
        );
    }
    println!("  hashing pool: {}", gauges.join(", "));
    let log = std::fs::read_to_string(dir.path().join("logs/user.log")).unwrap_or_default();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    // What an internal error was is in the log, under its request id.
    for (outcome, _) in outcomes.iter().filter(|(o, _)| o.starts_with("Internal")) {
        if let Some(id) = outcome.split("request id ").nth(1) {
            let id = id.trim_end_matches(')');
            for l in log.lines().filter(|l| l.contains(id)) {
                println!("  {id}: {l}");
            }
        }
    }
    println!("  errors the user service logged: {}", errors.len());
    for e in errors.iter().take(3) {
        println!("    {e}");
    }
    up.stop_async().await;
}
