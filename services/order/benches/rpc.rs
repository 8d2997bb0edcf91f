//! Benchmark of the user and order services over gRPC on this machine: `SignUp` and
//! `CreateOrder` at a fixed rate (open loop: every call starts on its tick, so queueing
//! shows in the latency), their closed-loop throughput, and `GetOrder` throughput — on
//! SQLite and, when `WEFT_TEST_DATABASE_URL` names a server, on PostgreSQL.
//!
//!     cargo bench -p weft-order --bench rpc
//!     WEFT_BENCH_SIGNUP_RATE=40 WEFT_BENCH_ORDER_RATE=300 cargo bench -p weft-order --bench rpc
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::*;
use tokio::sync::Mutex;
use tonic::transport::Channel;
use weft_proto::order::GetOrderRequest;
use weft_proto::order::order_service_client::OrderServiceClient;
use weft_proto::user::user_service_client::UserServiceClient;
use weft_testkit::sign_up_request;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Stats(Vec<Duration>);

impl Stats {
    fn line(&mut self, what: &str, wall: Duration, errors: usize) -> String {
        self.0.sort_unstable();
        let q = |p: f64| {
            let i = ((self.0.len().max(1) - 1) as f64 * p).round() as usize;
            self.0.get(i).map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
        };
        format!(
            "{what}: {} calls in {:.1} s = {:.0}/s, p50 {:.1} ms, p99 {:.1} ms, errors {errors}",
            self.0.len(),
            wall.as_secs_f64(),
            self.0.len() as f64 / wall.as_secs_f64(),
            q(0.5),
            q(0.99)
        )
    }
}

/// Calls `call(i)` `rate` times a second for `seconds`, each on its own task.
async fn open_loop<F, Fut>(rate: u64, seconds: u64, call: F) -> (Stats, Duration, usize)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let call = Arc::new(call);
    let lat = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(AtomicUsize::new(0));
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..(rate * seconds) as usize {
        ticker.tick().await;
        let (call, lat, errors) = (call.clone(), lat.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            if call(i).await {
                lat.lock().await.push(t.elapsed());
            } else {
                errors.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let wall = start.elapsed();
    let lat = std::mem::take(&mut *lat.lock().await);
    (Stats(lat), wall, errors.load(Ordering::Relaxed))
}

/// `workers` loops calling as fast as answers come, for `seconds`.
async fn closed_loop<F, Fut>(workers: usize, seconds: u64, call: F) -> (Stats, Duration, usize)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let call = Arc::new(call);
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let counter = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (call, counter, errors) = (call.clone(), counter.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < end {
                let i = counter.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                if call(i).await {
                    lat.push(t.elapsed());
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    (Stats(all), start.elapsed(), errors.load(Ordering::Relaxed))
}

/// A call that signs up a new user `<prefix>-<i>@example.com`.
fn sign_up(
    users: UserServiceClient<Channel>,
    prefix: String,
) -> impl Fn(usize) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>
+ Send
+ Sync
+ 'static {
    move |i| {
        let mut u = users.clone();
        let email = format!("{prefix}-{i}@example.com");
        Box::pin(async move { u.sign_up(sign_up_request(&email)).await.is_ok() })
    }
}

/// A call that creates the seed order as the holder of `token`.
fn create_order(
    orders: &OrderServiceClient<Channel>,
    token: &str,
) -> impl Fn(usize) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>
+ Send
+ Sync
+ 'static {
    let (orders, token) = (orders.clone(), token.to_owned());
    move |_| {
        let (mut o, t) = (orders.clone(), token.clone());
        Box::pin(async move { o.create_order(with_token(seed_order(), &t)).await.is_ok() })
    }
}

async fn run(db: Db, label: &str) {
    let mesh = spawn_mesh(db).await;
    let (_, token) = mesh.user("bench@example.com").await;
    mesh.wait_ready(&token).await;
    let users = mesh.users().await;
    let orders = mesh.orders().await;
    let signup_rate = env("WEFT_BENCH_SIGNUP_RATE", 20);
    let order_rate = env("WEFT_BENCH_ORDER_RATE", 200);
    let seconds = env("WEFT_BENCH_SECONDS", 10);
    let run_id = std::process::id();

    let (mut s, wall, e) = open_loop(
        signup_rate,
        seconds,
        sign_up(users.clone(), format!("fixed-{run_id}")),
    )
    .await;
    println!(
        "[{label}] {}",
        s.line(&format!("SignUp at {signup_rate}/s"), wall, e)
    );
    let (mut s, wall, e) =
        closed_loop(4, 5, sign_up(users.clone(), format!("closed-{run_id}"))).await;
    println!(
        "[{label}] {}",
        s.line("SignUp closed loop, 4 callers", wall, e)
    );

    let (mut s, wall, e) = open_loop(order_rate, seconds, create_order(&orders, &token)).await;
    println!(
        "[{label}] {}",
        s.line(&format!("CreateOrder at {order_rate}/s"), wall, e)
    );
    let (mut s, wall, e) = closed_loop(16, 5, create_order(&orders, &token)).await;
    println!(
        "[{label}] {}",
        s.line("CreateOrder closed loop, 16 callers", wall, e)
    );

    let mut o = orders.clone();
    let id = o
        .create_order(with_token(seed_order(), &token))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap()
        .order_id;
    let (o, t) = (orders.clone(), token.clone());
    let (mut s, wall, e) = closed_loop(16, 5, move |_| {
        let (mut o, t, id) = (o.clone(), t.clone(), id.clone());
        async move {
            o.get_order(with_token(GetOrderRequest { order_id: id }, &t))
                .await
                .is_ok()
        }
    })
    .await;
    println!(
        "[{label}] {}",
        s.line("GetOrder closed loop, 16 callers", wall, e)
    );
}

#[tokio::main]
async fn main() {
    run(Db::Sqlite, "SQLite").await;
    if std::env::var_os("WEFT_TEST_DATABASE_URL").is_some() {
        run(Db::Postgres, "PostgreSQL").await;
    } else {
        println!("[PostgreSQL] not run: set WEFT_TEST_DATABASE_URL (scripts/pg start prints one)");
    }
}
