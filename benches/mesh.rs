//! Figures of the notification and analytics services inside `weft up` (release
//! build, embedded broker, SQLite):
//!
//! 1. Consumer throughput: N `UserSignedUp` published at once; how fast the analytics
//!    projection counts them and the notification consumer plans them (its stored
//!    offsets), and how fast the welcome emails are written.
//! 2. End-to-end latency from a SignUp answer to the analytics service's gRPC stream
//!    (`StreamMetrics`) and to the dashboard's Server-Sent Event that carry it, at a
//!    fixed signup rate.
//!
//! `cargo bench --bench mesh` (env `WEFT_BENCH_EVENTS`, `WEFT_BENCH_SIGNUPS`,
//! `WEFT_BENCH_RATE` change the sizes).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{env_or, quantile};
use rdkafka::producer::{FutureProducer, FutureRecord};
use support::kafka::signed_up;
use support::{BrokerKind, Mesh, grpc};
use weft_events::{DomainEvent as _, Envelope};
use weft_proto::analytics::StreamMetricsRequest;
use weft_proto::analytics::analytics_service_client::AnalyticsServiceClient;
use weft_proto::user::user_service_client::UserServiceClient;
use weft_proto::user::{SignupSource, UserSignedUp};

async fn stored_offsets(data: &std::path::Path, service: &str, topic: &str) -> i64 {
    let url = weft_events::db::sqlite_url(data, service).unwrap();
    let db = weft_events::Database::connect(&url).await.unwrap();
    let row: (Option<i64>,) = sqlx::query_as(
        "SELECT CAST(SUM(next_offset) AS BIGINT) FROM weft_consumer_offsets WHERE topic = $1",
    )
    .bind(topic)
    .fetch_one(db.pool())
    .await
    .unwrap();
    row.0.unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = env_or("WEFT_BENCH_EVENTS", 2000);
    let signups = env_or("WEFT_BENCH_SIGNUPS", 60);
    let rate = env_or("WEFT_BENCH_RATE", 5);
    let Mesh { dir, ports, up } = Mesh::start(BrokerKind::Embedded).await;
    let data = dir.path().to_owned();
    let analytics_channel = grpc::channel(ports.analytics).await;

    // 1. Throughput.
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", format!("127.0.0.1:{}", ports.broker))
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let started = Instant::now();
    let mut sends = Vec::with_capacity(n);
    for i in 0..n {
        let event = signed_up(
            &format!("bench-{i}"),
            &format!("bench{i}@example.com"),
            &format!("Bench {i}"),
            SignupSource::Web,
        );
        let headers = Envelope::of(&event).unwrap().headers();
        let payload = prost::Message::encode_to_vec(&event);
        let key = event.key().to_owned();
        let producer = producer.clone();
        sends.push(async move {
            let record = FutureRecord::to("user-events").key(key.as_str());
            weft_testkit::produce(&producer, record.payload(payload.as_slice()), headers).await;
        });
    }
    futures::future::join_all(sends).await;
    let published = started.elapsed();
    let (mut analytics_done, mut planned_done, mut mailed_done) = (None, None, None);
    while analytics_done.is_none() || planned_done.is_none() || mailed_done.is_none() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let at = started.elapsed();
        if analytics_done.is_none() {
            let m = grpc::metrics_on(analytics_channel.clone()).await;
            if m.signups >= n as i64 {
                analytics_done = Some((at, m.events_processed));
            }
        }
        if planned_done.is_none()
            && stored_offsets(&data, "notification", "user-events").await >= n as i64
        {
            planned_done = Some(at);
        }
        if mailed_done.is_none() {
            let mails = support::mails(&data).len();
            // Welcome emails and, through the welcome orders, confirmations.
            if mails >= 2 * n {
                mailed_done = Some(at);
            }
        }
        assert!(
            at < Duration::from_secs(600),
            "the bench did not finish in 10 minutes"
        );
    }
    let rate_of = |d: Duration| n as f64 / d.as_secs_f64();
    println!("throughput: {n} UserSignedUp published in {published:.2?}");
    let (a, processed) = analytics_done.unwrap();
    let p = planned_done.unwrap();
    let m = mailed_done.unwrap();
    println!(
        "  analytics consumer: all {n} signups counted after {a:.2?}, {processed} events applied by then ({:.0} events/s)",
        processed as f64 / a.as_secs_f64()
    );
    println!(
        "  notification consumer: all planned after {p:.2?} ({:.0} events/s)",
        rate_of(p)
    );
    println!(
        "  notification delivery: {} mails written after {m:.2?} ({:.0} emails/s, with the welcome orders' confirmations)",
        2 * n,
        2.0 * rate_of(m)
    );

    // Let the backlog drain (each signup is followed by a welcome order and two
    // emails: 4 events in all) so the latency run starts on an idle mesh.
    loop {
        let processed = grpc::metrics_on(analytics_channel.clone())
            .await
            .events_processed;
        if processed >= 4 * n as i64 {
            let all = started.elapsed();
            println!(
                "  analytics, whole backlog: {processed} events applied after {all:.2?} ({:.0} events/s)",
                processed as f64 / all.as_secs_f64()
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the backlog did not drain"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // 2. Signup → dashboard latency, on the feed staff see (sign-ups by user id).
    let http = support::rest::client();
    let base = format!("http://127.0.0.1:{}", ports.gateway);
    support::rest::signup_and_login(&http, &base, "bench-staff@example.com").await;
    support::admin(&data, &["grant", "bench-staff@example.com", "staff"]);
    // The role is in tokens issued after the grant.
    let (_, staff) = support::rest::login(&http, &base, "bench-staff@example.com").await;
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let stream = std::net::TcpStream::connect(("127.0.0.1", ports.gateway)).unwrap();
    write!(
        &stream,
        "GET /v1/analytics/metrics:stream HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\nAuthorization: Bearer {staff}\r\n\r\n"
    )
    .unwrap();
    let reader_seen = seen.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let Some(json) = line.strip_prefix("data: ") else {
                continue;
            };
            let now = Instant::now();
            let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
                continue;
            };
            for e in v["newEvents"].as_array().into_iter().flatten() {
                // "signup of user <id> (<source>)"
                let user = e["summary"]
                    .as_str()
                    .and_then(|s| s.split_whitespace().nth(3));
                if let (true, Some(user)) = (e["eventType"] == UserSignedUp::TYPE, user) {
                    reader_seen
                        .lock()
                        .unwrap()
                        .entry(user.to_owned())
                        .or_insert(now);
                }
            }
        }
    });
    // The same feed straight from the analytics service's gRPC stream (no gateway).
    let grpc_seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    // From the analytics service's processing of each event (its `processed_at`, the
    // same clock) to the message that carries it on this client: the stream's own part.
    let delivered: Arc<Mutex<Vec<Duration>>> = Arc::default();
    // From the server handing each update to the connection (its `sent_at`) to this
    // client: the transport alone.
    let transit: Arc<Mutex<Vec<Duration>>> = Arc::default();
    {
        let grpc_seen = grpc_seen.clone();
        let delivered = delivered.clone();
        let transit = transit.clone();
        let request = grpc::authed(StreamMetricsRequest {}, &staff);
        let mut analytics = AnalyticsServiceClient::new(grpc::channel(ports.analytics).await);
        let mut updates = analytics
            .stream_metrics(request)
            .await
            .unwrap()
            .into_inner();
        tokio::spawn(async move {
            while let Ok(Some(update)) = updates.message().await {
                let now = Instant::now();
                let wall = std::time::SystemTime::now();
                let since = |t: Option<&prost_types::Timestamp>| {
                    let t = t?;
                    let at = std::time::UNIX_EPOCH
                        + Duration::new(
                            u64::try_from(t.seconds).ok()?,
                            u32::try_from(t.nanos).ok()?,
                        );
                    wall.duration_since(at).ok()
                };
                if let Some(d) = since(update.sent_at.as_ref()) {
                    transit.lock().unwrap().push(d);
                }
                for e in update.new_events {
                    if let Some(d) = since(e.processed_at.as_ref()) {
                        delivered.lock().unwrap().push(d);
                    }
                    let user = e.summary.split_whitespace().nth(3).map(str::to_owned);
                    if let (true, Some(user)) = (e.event_type == UserSignedUp::TYPE, user) {
                        grpc_seen.lock().unwrap().entry(user).or_insert(now);
                    }
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let user_channel = grpc::channel(ports.user).await;
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate as u32);
    for i in 0..signups {
        tick.tick().await;
        let email = format!("latency{i}@example.com");
        let mut users = UserServiceClient::new(user_channel.clone());
        let sent = sent.clone();
        tokio::spawn(async move {
            let request = grpc::sign_up_request(&email, "Latency", SignupSource::Web);
            let answer = users.sign_up(request).await.unwrap();
            let user = answer.into_inner().user.unwrap();
            // From the answer: the password hashing before it is not the chain's.
            sent.lock().unwrap().insert(user.user_id, Instant::now());
        });
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.lock().unwrap().len() < signups && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    while grpc_seen.lock().unwrap().len() < signups && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sent = sent.lock().unwrap().clone();
    for (what, seen) in [
        ("analytics' gRPC stream (StreamMetrics)", &grpc_seen),
        (
            "the dashboard's event stream (SSE through the gateway)",
            &seen,
        ),
    ] {
        let seen = seen.lock().unwrap().clone();
        let latencies: Vec<Duration> = sent
            .iter()
            .filter_map(|(user, at)| seen.get(user).map(|s| s.duration_since(*at)))
            .collect();
        println!(
            "latency SignUp answered → {what} at {rate} signups/s: {} of {signups} seen, {}",
            latencies.len(),
            spread(latencies)
        );
    }
    let transit = transit.lock().unwrap().clone();
    println!(
        "latency sent by analytics (sent_at) → its gRPC stream's client (StreamMetrics) at {rate} signups/s: {} updates, {}",
        transit.len(),
        spread(transit)
    );
    let delivered = delivered.lock().unwrap().clone();
    println!(
        "latency processed by analytics → its gRPC stream's client (StreamMetrics) at {rate} signups/s: {} events, {}",
        delivered.len(),
        spread(delivered)
    );
    up.stop_async().await;
}

/// "p50 …, p99 …, max …" of some latencies.
fn spread(mut latencies: Vec<Duration>) -> String {
    latencies.sort();
    format!(
        "p50 {:.2?}, p99 {:.2?}, max {:.2?}",
        quantile(&latencies, 0.5),
        quantile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default()
    )
}
