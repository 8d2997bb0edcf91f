//! The event backbone at the speed of its broker, measured as a user meets it: the
//! whole mesh started as `weft up` starts it (optimised build, embedded broker,
//! SQLite), on this machine, every figure in one run:
//!
//! 1. idle CPU of the whole mesh (broker and five processes) over `WEFT_BENCH_IDLE_SECONDS`
//!    (10), one core = 100 %;
//! 2. raw idempotent produce (`acks=all`) of `WEFT_BENCH_RECORDS` (50,000) records of
//!    200 bytes into the same broker: the ceiling of the chain;
//! 3. event latency (`ce_time` → applied by analytics, from its own histogram) at a
//!    steady `WEFT_BENCH_RATE` (200) `CreateOrder`/s for `WEFT_BENCH_SECONDS` (10);
//! 4. a burst of `WEFT_BENCH_ORDERS` (3,000) `CreateOrder` from 32 callers: how fast
//!    analytics has counted every order and every confirmation email, and that rate
//!    over the raw produce rate;
//! 5. authenticated `GetOrder`, 16 callers: direct gRPC and `GET /v1/orders/{id}`
//!    through the gateway, and their ratio.
//!
//! Figures are printed, never asserted: this machine is shared and noisy.
//! `WEFT_BENCH_ONLY=burst,reads` runs some of the phases (`idle`, `raw`, `steady`,
//! `burst`, `reads`), e.g. to profile one.
//!
//!     cargo bench --bench chain
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{closed_loop, cpu_seconds, env_or, grpc_get_order, quantile, rest_get};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use support::{Ports, Up};
use tonic::transport::Channel;
use weft_proto::analytics::analytics_service_client::AnalyticsServiceClient;
use weft_proto::analytics::{GetMetricsRequest, Metrics};
use weft_proto::common::Money;
use weft_proto::order::order_service_client::OrderServiceClient;
use weft_proto::order::{CreateOrderRequest, OrderItem};

const PROCESSES: [&str; 6] = [
    "broker",
    "user",
    "order",
    "notification",
    "analytics",
    "gateway",
];

fn pid(data: &Path, name: &str) -> u32 {
    std::fs::read_to_string(data.join(format!("run/{name}.pid")))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

async fn metrics(analytics: &Channel) -> Metrics {
    AnalyticsServiceClient::new(analytics.clone())
        .get_metrics(GetMetricsRequest {})
        .await
        .unwrap()
        .into_inner()
        .metrics
        .unwrap()
}

/// Waits until analytics counts at least `orders` orders and `emails` emails; how
/// long that took.
async fn counted(analytics: &Channel, orders: i64, emails: i64) -> Duration {
    let t = Instant::now();
    loop {
        let m = metrics(analytics).await;
        if m.orders_created >= orders && m.emails_sent >= emails {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "analytics stopped at {} orders and {} emails",
            m.orders_created,
            m.emails_sent
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The analytics latency histogram as it is now (bucket → count), read from its
/// database.
async fn latency_buckets(data: &Path) -> BTreeMap<i64, i64> {
    let url = weft_events::db::sqlite_url(data, "analytics").unwrap();
    let db = weft_events::Database::connect(&url).await.unwrap();
    sqlx::query_as::<_, (i64, i64)>("SELECT bucket, count FROM latency_buckets")
        .fetch_all(db.pool())
        .await
        .unwrap()
        .into_iter()
        .collect()
}

fn order_request(user_id: &str) -> CreateOrderRequest {
    let usd = |units, nanos| Money {
        currency_code: "USD".into(),
        units,
        nanos,
    };
    CreateOrderRequest {
        user_id: user_id.to_owned(),
        items: vec![
            OrderItem {
                product_id: "mug".into(),
                name: "Mug".into(),
                quantity: 2,
                unit_price: Some(usd(29, 990_000_000)),
            },
            OrderItem {
                product_id: "lamp".into(),
                name: "Lamp".into(),
                quantity: 1,
                unit_price: Some(usd(49, 990_000_000)),
            },
        ],
        idempotency_key: String::new(),
    }
}

fn authed<T>(message: T, bearer: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.metadata_mut()
        .insert("authorization", bearer.parse().unwrap());
    req
}

async fn raw_produce_rate(bootstrap: &str, n: usize) -> f64 {
    let mut config = rdkafka::ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    let admin: AdminClient<DefaultClientContext> = config.create().unwrap();
    admin
        .create_topics(
            [&NewTopic::new("bench-raw", 3, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    let producer: FutureProducer = weft_events::kafka::KafkaArgs::new(bootstrap)
        .producer("bench-raw")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    // The first record of an idempotent producer waits for its producer id.
    producer
        .send(
            FutureRecord::<str, str>::to("bench-raw").payload("warm"),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let value = vec![b'x'; 200];
    let keys: Vec<String> = (0..n).map(|i| format!("key-{}", i % 1000)).collect();
    let t = Instant::now();
    let mut pending = Vec::with_capacity(n);
    for k in &keys {
        pending.push(
            producer
                .send_result(FutureRecord::to("bench-raw").key(k).payload(&value))
                .unwrap(),
        );
    }
    for p in pending {
        p.await.unwrap().unwrap();
    }
    n as f64 / t.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let idle_seconds = env_or("WEFT_BENCH_IDLE_SECONDS", 10);
    let records = env_or("WEFT_BENCH_RECORDS", 50_000);
    let rate = env_or("WEFT_BENCH_RATE", 200);
    let seconds = env_or("WEFT_BENCH_SECONDS", 10);
    let burst = env_or("WEFT_BENCH_ORDERS", 3000);
    let only: String = env_or("WEFT_BENCH_ONLY", String::new());
    let run = |phase: &str| only.is_empty() || only.split(',').any(|p| p.trim() == phase);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    let ports = Ports::free();
    // One client drives the gateway and one customer gets every confirmation: lift
    // the per-client rate limit and the per-recipient message limit.
    let up = Up::start_env_async(
        &data,
        &ports,
        &[
            ("WEFT_RATE_LIMIT", "1000000/s"),
            ("WEFT_RATE_BURST", "1000000"),
            ("WEFT_RECIPIENT_LIMIT", "1000000/h"),
            ("WEFT_LOG", "warn"),
        ],
    )
    .await;
    let base = format!("http://127.0.0.1:{}", ports.gateway);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    let (user_id, token) = support::rest::signup_and_login(&http, &base, "chain@example.com").await;
    let seed = support::rest::seed_order(&http, &base, &token).await;
    let seed_id = seed["orderId"].as_str().unwrap().to_owned();
    let bearer = format!("Bearer {token}");
    let order_channel = Channel::from_shared(format!("http://127.0.0.1:{}", ports.order))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let analytics = Channel::from_shared(format!("http://127.0.0.1:{}", ports.analytics))
        .unwrap()
        .connect()
        .await
        .unwrap();
    // The welcome order, the seed order and their emails (with the verification).
    counted(&analytics, 2, 3).await;
    println!(
        "the event chain inside `weft up` (optimised build, embedded broker, SQLite), one run on this machine"
    );

    if run("idle") {
        idle(&data, idle_seconds).await;
    }
    let mut raw = f64::NAN;
    if run("raw") {
        raw = raw_produce_rate(&format!("127.0.0.1:{}", ports.broker), records).await;
        println!(
            "2. raw idempotent produce, {records} × 200 B into the same broker: {raw:.0} records/s"
        );
    }
    if run("steady") {
        steady(
            &data,
            &analytics,
            &order_channel,
            &user_id,
            &bearer,
            rate,
            seconds,
        )
        .await;
    }
    if run("burst") {
        let chain_rate = burst_phase(&analytics, &order_channel, &user_id, &bearer, burst).await;
        if raw.is_nan() {
            println!(
                "   {:.0} events/s applied by analytics (the raw phase did not run: no ratio)",
                2.0 * chain_rate
            );
        } else {
            println!(
                "   = {:.4} of the broker's raw rate; {:.0} events/s applied by analytics",
                chain_rate / raw,
                2.0 * chain_rate,
            );
        }
    }
    if run("reads") {
        reads(&base, &http, &order_channel, &bearer, &seed_id).await;
    }
    tokio::task::spawn_blocking(move || up.stop())
        .await
        .unwrap();
}

async fn idle(data: &Path, idle_seconds: u64) {
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pids: Vec<(&str, u32)> = PROCESSES.iter().map(|n| (*n, pid(data, n))).collect();
    let before: Vec<f64> = pids.iter().map(|(_, p)| cpu_seconds(*p)).collect();
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(idle_seconds)).await;
    let wall = t.elapsed().as_secs_f64();
    let used: Vec<f64> = pids
        .iter()
        .zip(&before)
        .map(|((_, p), b)| 100.0 * (cpu_seconds(*p) - b) / wall)
        .collect();
    let idle_total: f64 = used.iter().sum();
    let per: Vec<String> = pids
        .iter()
        .zip(&used)
        .map(|((n, _), u)| format!("{n} {u:.1}"))
        .collect();
    println!(
        "1. idle mesh over {idle_seconds} s: {idle_total:.1} % of one core ({})",
        per.join(", ")
    );
}

async fn steady(
    data: &Path,
    analytics: &Channel,
    order_channel: &Channel,
    user_id: &str,
    bearer: &str,
    rate: u64,
    seconds: u64,
) {
    let start = metrics(analytics).await;
    let buckets_before = latency_buckets(data).await;
    let n = (rate * seconds) as usize;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let mut calls = Vec::with_capacity(n);
    let failed = Arc::new(AtomicUsize::new(0));
    for _ in 0..n {
        tick.tick().await;
        let mut client = OrderServiceClient::new(order_channel.clone());
        let req = authed(order_request(user_id), bearer);
        let failed = failed.clone();
        calls.push(tokio::spawn(async move {
            let t = Instant::now();
            if client.create_order(req).await.is_err() {
                failed.fetch_add(1, Ordering::Relaxed);
            }
            t.elapsed()
        }));
    }
    let mut rpc = Vec::with_capacity(n);
    for c in calls {
        rpc.push(c.await.unwrap());
    }
    let ok = (n - failed.load(Ordering::Relaxed)) as i64;
    counted(analytics, start.orders_created + ok, start.emails_sent + ok).await;
    let after = latency_buckets(data).await;
    let diff: Vec<(i64, i64)> = after
        .iter()
        .map(|(b, c)| (*b, c - buckets_before.get(b).copied().unwrap_or(0)))
        .filter(|(_, c)| *c > 0)
        .collect();
    let samples: i64 = diff.iter().map(|(_, c)| c).sum();
    let max_ms = f64::MAX;
    let p50 = weft_analytics::latency::quantile(&diff, 0.5, max_ms);
    let p99 = weft_analytics::latency::quantile(&diff, 0.99, max_ms);
    rpc.sort();
    println!(
        "3. steady {rate} CreateOrder/s for {seconds} s ({ok} ok, {} failed): event latency ce_time → analytics over {samples} events p50 {p50:.1} ms, p99 {p99:.1} ms; CreateOrder p50 {:.1} ms, p99 {:.1} ms",
        n as i64 - ok,
        quantile(&rpc, 0.5).as_secs_f64() * 1e3,
        quantile(&rpc, 0.99).as_secs_f64() * 1e3,
    );
}

/// The burst; returns its rate (orders/s from the first call until analytics has
/// counted every order and email).
async fn burst_phase(
    analytics: &Channel,
    order_channel: &Channel,
    user_id: &str,
    bearer: &str,
    burst: usize,
) -> f64 {
    let start = metrics(analytics).await;
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let callers: Vec<_> = (0..32)
        .map(|_| {
            let (next, failed) = (next.clone(), failed.clone());
            let mut client = OrderServiceClient::new(order_channel.clone());
            let (user_id, bearer) = (user_id.to_owned(), bearer.to_owned());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < burst {
                    let req = authed(order_request(&user_id), &bearer);
                    if client.create_order(req).await.is_err() {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for c in callers {
        c.await.unwrap();
    }
    let rpc_done = t.elapsed();
    let ok = (burst - failed.load(Ordering::Relaxed)) as i64;
    counted(analytics, start.orders_created + ok, start.emails_sent + ok).await;
    let all = t.elapsed();
    let chain_rate = ok as f64 / all.as_secs_f64();
    println!(
        "4. burst of {burst} CreateOrder from 32 callers ({ok} ok): created in {:.2} s ({:.0}/s); every order and confirmation email counted by analytics after {:.2} s: {chain_rate:.0} orders/s",
        rpc_done.as_secs_f64(),
        ok as f64 / rpc_done.as_secs_f64(),
        all.as_secs_f64(),
    );
    chain_rate
}

async fn reads(
    base: &str,
    http: &reqwest::Client,
    order_channel: &Channel,
    bearer: &str,
    seed_id: &str,
) {
    let rest = rest_get(
        http,
        format!("{base}/v1/orders/{seed_id}"),
        bearer.to_owned(),
    );
    let grpc = grpc_get_order(order_channel.clone(), seed_id.to_owned(), bearer.to_owned());
    let _ = closed_loop(&grpc, 4, 1).await;
    let _ = closed_loop(&rest, 4, 1).await;
    let (direct, direct_failed) = closed_loop(&grpc, 16, 5).await;
    let (gateway, gateway_failed) = closed_loop(&rest, 16, 5).await;
    println!(
        "5. authenticated GetOrder, 16 callers × 5 s: direct gRPC {direct:.0}/s ({direct_failed} failed), through the gateway {gateway:.0}/s ({gateway_failed} failed): gateway / direct {:.2}",
        gateway / direct
    );
}
