//! Replicas that share one database share its outbox: one relay publishes at a time,
//! another takes over when it stops renewing its lease, and a relay that wakes up
//! after losing the lease publishes and marks nothing. Every row reaches the topic
//! exactly once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::Message as _;
use tokio_util::sync::CancellationToken;
use weft_events::catalog::USER_EVENTS;
use weft_events::consumer::offsets::watermarks;
use weft_events::lease::Lease;
use weft_events::outbox::{RELAY_LEASE, RelayConfig};
use weft_events::{Database, Relay};
use weft_testkit::{header, read_topic_until};

use super::*;

const TTL: Duration = Duration::from_secs(2);

fn config(replica: &str) -> RelayConfig {
    RelayConfig {
        replica: replica.to_owned(),
        lease_ttl: TTL,
        poll_interval: Duration::from_millis(100),
        ..RelayConfig::default()
    }
}

async fn holder(db: &Database) -> (String, i64, i64) {
    let h = Lease::new(db.clone(), RELAY_LEASE, "observer", TTL)
        .current()
        .await
        .unwrap()
        .expect("the relay lease exists");
    (h.holder, h.token, h.expires_at)
}

pub async fn one_relay_publishes_at_a_time_and_another_takes_over(on: &TestBackend) {
    let url = on.database("shared").await;
    let (broker, kafka) = provisioned(on.broker).await;
    // Two replicas: each its own pool on the one database.
    let db_a = Database::connect(&url).await.unwrap();
    let db_b = Database::connect(&url).await.unwrap();
    let a = Relay::new(db_a.clone(), &kafka, "relay-a", config("replica-a")).unwrap();
    let b = Relay::new(db_b.clone(), &kafka, "relay-b", config("replica-b")).unwrap();
    let mut expected = Vec::new();
    let mut add = async |db: &Database, users: &[&str]| {
        let events: Vec<_> = users.iter().map(|u| signup(u)).collect();
        expected.extend(events.iter().map(|e| e.metadata.clone().unwrap().event_id));
        enqueue(db, &events).await;
    };

    add(&db_a, &["u1", "u2", "u3"]).await;
    assert_eq!(a.publish_pending().await.unwrap(), 3);
    add(&db_b, &["u4", "u5"]).await;
    assert_eq!(
        b.publish_pending().await.unwrap(),
        0,
        "a replica stands by while another holds the lease"
    );
    assert_eq!(unsent(&db_b).await, 2);
    assert_eq!(a.publish_pending().await.unwrap(), 2);
    let (first, first_token, _) = holder(&db_a).await;
    assert_eq!(first, "replica-a");

    // Replica a stops renewing (paused, or dead): b publishes once the lease expires.
    add(&db_b, &["u6", "u7"]).await;
    let paused = Instant::now();
    let took_over = loop {
        if b.publish_pending().await.unwrap() == 2 {
            break paused.elapsed();
        }
        assert!(
            paused.elapsed() < Duration::from_secs(30),
            "replica b never took over"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (second, second_token, _) = holder(&db_b).await;
    println!(
        "relay lease: held by {first} (token {first_token}), then by {second} (token {second_token}) after {:.1} s without renewal (time to live {} s)",
        took_over.as_secs_f64(),
        TTL.as_secs()
    );
    assert_eq!(second, "replica-b");
    assert_eq!(
        second_token,
        first_token + 1,
        "a takeover starts a new tenure"
    );
    assert!(
        took_over >= TTL / 2,
        "b took over a live lease after {took_over:?}"
    );

    // Replica a wakes up: it has lost the lease, so it publishes nothing.
    add(&db_a, &["u8"]).await;
    assert_eq!(a.publish_pending().await.unwrap(), 0);
    assert_eq!(unsent(&db_a).await, 1);
    // Its fencing token is refused inside a write transaction; b's is accepted.
    let zombie = Lease::new(db_a.clone(), RELAY_LEASE, "replica-a", TTL);
    let current = Lease::new(db_b.clone(), RELAY_LEASE, "replica-b", TTL);
    let mut tx = db_a.begin().await.unwrap();
    assert!(!zombie.still_held(&mut tx, first_token).await.unwrap());
    assert!(current.still_held(&mut tx, second_token).await.unwrap());
    tx.rollback().await.unwrap();
    assert_eq!(b.publish_pending().await.unwrap(), 1);

    // A clean stop gives the lease back: a takes it at its next round, at once.
    let stop = CancellationToken::new();
    let running = tokio::spawn(b.run(stop.clone()));
    stop.cancel();
    running.await.unwrap();
    let (_, _, expires_at) = holder(&db_a).await;
    assert_eq!(expires_at, 0, "a stopped relay gives its lease back");
    add(&db_a, &["u9"]).await;
    assert_eq!(a.publish_pending().await.unwrap(), 1);
    let (third, third_token, _) = holder(&db_a).await;
    assert_eq!(
        (third.as_str(), third_token),
        ("replica-a", second_token + 1)
    );

    // On the topic: every row exactly once.
    let marks = watermarks(&kafka, &[USER_EVENTS.to_owned()]).await.unwrap();
    let on_topic: i64 = marks.iter().map(|m| m.high - m.low).sum();
    assert_eq!(on_topic, expected.len() as i64, "records on the topic");
    let topic = broker.topic(USER_EVENTS);
    let read = tokio::task::spawn_blocking(move || {
        read_topic_until(
            &broker.bootstrap(),
            &topic,
            Duration::from_secs(60),
            |seen| seen.len() as i64 >= on_topic,
        )
    })
    .await
    .unwrap();
    let mut ids: BTreeMap<String, usize> = BTreeMap::new();
    for m in &read {
        assert!(m.payload().is_some());
        *ids.entry(header(m, "ce_id").unwrap().to_owned())
            .or_default() += 1;
    }
    expected.sort();
    assert_eq!(ids.keys().cloned().collect::<Vec<_>>(), expected);
    assert!(ids.values().all(|n| *n == 1), "{ids:?}");
}
