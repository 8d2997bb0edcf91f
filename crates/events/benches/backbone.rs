//! Benchmark of the event backbone on the embedded broker: outbox → relay → broker →
//! consumer (inbox + effect in one transaction), all on SQLite, the broker in this
//! process.
//!
//! Prints throughput (events/s) for a bulk load, and end-to-end latency (commit of
//! the outbox row → consumer's transaction committed) at a fixed rate, as p50/p99.
//!
//!     cargo bench -p weft-events --bench backbone
//!     WEFT_BENCH_EVENTS=20000 WEFT_BENCH_RATE=500 cargo bench -p weft-events --bench backbone
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::AnyConnection;
use tokio_util::sync::CancellationToken;
use weft_events::consumer::{Handler, HandlerError, Received};
use weft_events::db::sqlite_url;
use weft_events::kafka::KafkaArgs;
use weft_events::outbox::RelayConfig;
use weft_events::{Consumer, Database, EventContext, Outbox, Relay, topics};
use weft_proto::user::UserSignedUp;
use weft_testkit::Broker;

struct Record {
    /// Microseconds from the event's commit to the consumer's commit.
    latencies: Mutex<Vec<i64>>,
}

struct Recorder(Arc<Record>);

#[async_trait::async_trait]
impl Handler for Recorder {
    async fn handle(&self, tx: &mut AnyConnection, event: &Received) -> Result<(), HandlerError> {
        let e = event.decode::<UserSignedUp>()?;
        sqlx::query("INSERT INTO bench_effects (user_id) VALUES ($1)")
            .bind(e.user_id)
            .execute(&mut *tx)
            .await?;
        let t = e.metadata.and_then(|m| m.occurred_at).unwrap_or_default();
        let at = t.seconds * 1_000_000 + i64::from(t.nanos) / 1000;
        self.0
            .latencies
            .lock()
            .unwrap()
            .push(chrono::Utc::now().timestamp_micros() - at);
        Ok(())
    }
}

fn event(i: usize) -> UserSignedUp {
    UserSignedUp {
        metadata: Some(EventContext::root().metadata("user", "bench")),
        user_id: format!("user-{i}"),
        email: format!("user-{i}@example.com"),
        name: "Bench".into(),
        ..Default::default()
    }
}

fn percentile(sorted: &[i64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1000.0
}

async fn wait_for(record: &Record, n: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while record.latencies.lock().unwrap().len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} events arrived",
            record.latencies.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn run(bulk: usize, rate: usize, seconds: usize) {
    let broker = Broker::start();
    let kafka = KafkaArgs::new(broker.bootstrap());
    topics::provision(&kafka, &topics::all_topics())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let publisher = Database::connect(&sqlite_url(dir.path(), "publisher").unwrap())
        .await
        .unwrap();
    let consumer_db = Database::connect(&sqlite_url(dir.path(), "consumer").unwrap())
        .await
        .unwrap();
    sqlx::query("CREATE TABLE bench_effects (user_id TEXT NOT NULL)")
        .execute(consumer_db.pool())
        .await
        .unwrap();

    let record = Arc::new(Record {
        latencies: Mutex::new(Vec::new()),
    });
    let shutdown = CancellationToken::new();
    let relay = Relay::new(
        publisher.clone(),
        &kafka,
        "bench-relay",
        RelayConfig::default(),
    )
    .unwrap();
    let waker = relay.waker();
    let relay_task = tokio::spawn(relay.run(shutdown.clone()));
    let consumer = Consumer::new("bench", kafka.clone(), consumer_db)
        .on::<UserSignedUp>(Recorder(record.clone()));
    let consumer_task = tokio::spawn(consumer.run(shutdown.clone()));

    // Warm-up: one event end to end (group join, connections).
    let mut tx = publisher.begin().await.unwrap();
    Outbox::enqueue(&mut tx, &event(0)).await.unwrap();
    tx.commit().await.unwrap();
    waker.wake();
    wait_for(&record, 1, Duration::from_secs(60)).await;
    record.latencies.lock().unwrap().clear();

    // Bulk: commit `bulk` events in transactions of 100 as fast as possible.
    let start = Instant::now();
    for chunk in (1..=bulk).collect::<Vec<_>>().chunks(100) {
        let mut tx = publisher.begin().await.unwrap();
        for i in chunk {
            Outbox::enqueue(&mut tx, &event(*i)).await.unwrap();
        }
        tx.commit().await.unwrap();
        waker.wake();
    }
    let committed = start.elapsed();
    wait_for(&record, bulk, Duration::from_secs(600)).await;
    let total = start.elapsed();
    println!(
        "bulk: {bulk} events committed in {:.2} s, consumed in {:.2} s → {:.0} events/s end to end",
        committed.as_secs_f64(),
        total.as_secs_f64(),
        bulk as f64 / total.as_secs_f64()
    );
    record.latencies.lock().unwrap().clear();

    // Fixed rate: one event per transaction, like a service handling requests.
    let n = rate * seconds;
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for i in 0..n {
        ticker.tick().await;
        let mut tx = publisher.begin().await.unwrap();
        Outbox::enqueue(&mut tx, &event(bulk + 1 + i))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        waker.wake();
    }
    wait_for(&record, n, Duration::from_secs(300)).await;
    let mut lat = record.latencies.lock().unwrap().clone();
    lat.sort_unstable();
    println!(
        "fixed rate {rate}/s for {seconds} s ({n} events): latency commit→consumed p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0)
    );
    // Stop the clients while the broker is still there, so they leave cleanly.
    shutdown.cancel();
    let _ = relay_task.await;
    let _ = consumer_task.await;
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; any filter argument is ignored.
    let bulk = env_usize("WEFT_BENCH_EVENTS", 5000);
    let rate = env_usize("WEFT_BENCH_RATE", 200);
    let seconds = env_usize("WEFT_BENCH_SECONDS", 10);
    run(bulk, rate, seconds).await;
}
