//! The end-to-end backbone scenario, run on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use weft_events::catalog::{ORDER_EVENTS, USER_EVENTS};
use weft_events::envelope::Envelope;
use weft_events::outbox::RelayConfig;
use weft_events::{Database, EventContext, Relay, topics};
use weft_proto::order::OrderCreated;

use super::*;

const WAIT: Duration = Duration::from_secs(60);

/// Outbox → relay → broker → consumer in another process: applied once, duplicates
/// skipped, poison dead-lettered, and the consumer keeps going.
pub async fn outbox_to_consumer(on: &TestBackend) {
    let publisher_url = on.database("publisher").await;
    let consumer_url = on.database("consumer").await;
    let (broker, kafka) = provisioned(on.broker).await;
    // Provisioning again is a no-op, not an error.
    assert!(
        topics::provision(&kafka, &topics::all_topics())
            .await
            .unwrap()
            .is_empty()
    );

    let publisher = Database::connect(&publisher_url).await.unwrap();
    let consumer_db = Database::connect(&consumer_url).await.unwrap();
    let probe = Probe::spawn(
        &broker,
        &[
            "--db",
            &consumer_url,
            "--brokers",
            &broker.bootstrap(),
            "consume",
            "--group",
            "probe",
            // The events may be on the topic before the consumer first looks.
            "--from",
            "earliest",
        ],
    );

    // Three events, committed together, published by the relay.
    let events: Vec<_> = ["u1", "u2", "u3"].iter().map(|u| signup(u)).collect();
    enqueue(&publisher, &events).await;
    assert_eq!(unsent(&publisher).await, 3);
    let relay = Relay::new(
        publisher.clone(),
        &kafka,
        "test-relay",
        RelayConfig::default(),
    )
    .unwrap();
    assert_eq!(relay.publish_pending().await.unwrap(), 3);
    assert_eq!(unsent(&publisher).await, 0);

    let applied = probe.wait_outcomes("Applied", 3, WAIT);
    let mut ids: Vec<_> = applied
        .iter()
        .map(|v| v["event_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    let mut expected: Vec<_> = events
        .iter()
        .map(|e| e.metadata.clone().unwrap().event_id)
        .collect();
    expected.sort();
    assert_eq!(ids, expected);
    assert!(
        applied
            .iter()
            .all(|v| v["type"] == "weft.user.v1.UserSignedUp")
    );

    // The relay crashed after publishing but before marking: every row goes out again.
    sqlx::query("UPDATE weft_outbox SET sent_at = NULL")
        .execute(publisher.pool())
        .await
        .unwrap();
    assert_eq!(relay.publish_pending().await.unwrap(), 3);
    probe.wait_outcomes("Duplicate", 3, WAIT);
    assert_eq!(
        effects(&consumer_db).await,
        (3, 3),
        "each event applied exactly once"
    );

    // Poison: garbage with no envelope, an unknown type, and a valid order event that
    // misses required fields.
    let producer = RawProducer::new(&kafka);
    let garbage = b"\xde\xad\xbe\xef not protobuf".to_vec();
    producer.send(USER_EVENTS, "junk", &garbage, &[]).await;
    let good = Envelope::of(&signup("u-x")).unwrap();
    let mut unknown: Vec<(String, String)> = good.headers();
    for (k, v) in &mut unknown {
        if k == "ce_type" {
            *v = "weft.user.v1.UserTeleported".into();
        }
    }
    producer.send(USER_EVENTS, "u-x", b"", &unknown).await;
    let hollow = OrderCreated {
        metadata: Some(EventContext::root().metadata("order", "test")),
        order_id: "o-1".into(),
        ..Default::default()
    };
    producer.send_event("o-1", &hollow).await;

    // The consumer keeps going: a later valid event is applied.
    let later = signup("u4");
    enqueue(&publisher, std::slice::from_ref(&later)).await;
    relay.publish_pending().await.unwrap();
    let later_id = later.metadata.unwrap().event_id;
    probe.wait_line("the event after the poison", WAIT, |l| {
        l.contains(&later_id) && l.contains("Applied")
    });

    let dlq = dead_letters(&broker, USER_EVENTS, 2);
    let reasons = reasons(&dlq);
    assert!(reasons.contains(&"malformed-envelope"), "{reasons:?}");
    assert!(reasons.contains(&"unknown-type"), "{reasons:?}");
    let junk = dlq
        .iter()
        .find(|m| header(m, "dlq_reason") == Some("malformed-envelope"))
        .unwrap();
    use rdkafka::Message as _;
    assert_eq!(
        junk.payload(),
        Some(garbage.as_slice()),
        "original bytes kept"
    );
    assert_eq!(junk.key(), Some(b"junk".as_slice()), "original key kept");
    assert_eq!(header(junk, "dlq_source_topic"), Some(USER_EVENTS));
    assert_eq!(header(junk, "dlq_consumer_group"), Some("probe"));
    let teleported = dlq
        .iter()
        .find(|m| header(m, "dlq_reason") == Some("unknown-type"))
        .unwrap();
    assert_eq!(
        header(teleported, "ce_type"),
        Some("weft.user.v1.UserTeleported"),
        "original headers kept"
    );

    let order_dlq = dead_letters(&broker, ORDER_EVENTS, 1);
    assert_eq!(header(&order_dlq[0], "dlq_reason"), Some("invalid"));
    assert!(
        header(&order_dlq[0], "dlq_error")
            .unwrap()
            .contains("without user")
    );

    assert_eq!(effects(&consumer_db).await, (4, 4), "poison left no effect");
}

/// kill -9 of the relay between the commit and the publish loses nothing.
pub async fn relay_killed_before_publish(on: &TestBackend) {
    let url = on.database("user").await;
    let (broker, _) = provisioned(on.broker).await;
    let db = Database::connect(&url).await.unwrap();

    let event = signup("crash-1");
    let id = event.metadata.clone().unwrap().event_id;
    enqueue(&db, &[event]).await;

    let mut relay = Probe::spawn(
        &broker,
        &[
            "--db",
            &url,
            "--brokers",
            &broker.bootstrap(),
            "relay",
            "--hang-before-publish",
        ],
    );
    relay.wait_line(
        "the relay to reach the fault point",
        Duration::from_secs(30),
        |l| l.contains("hanging before publish"),
    );
    relay.kill9();
    assert_eq!(
        unsent(&db).await,
        1,
        "the row is still unsent after the crash"
    );

    let _relay = Probe::spawn(
        &broker,
        &["--db", &url, "--brokers", &broker.bootstrap(), "relay"],
    );
    let seen = read_topic_until(
        &broker.bootstrap(),
        &broker.topic("user-events"),
        Duration::from_secs(60),
        |seen| seen.iter().any(|m| header(m, "ce_id") == Some(id.as_str())),
    );
    let record = seen
        .iter()
        .find(|m| header(m, "ce_id") == Some(id.as_str()))
        .unwrap();
    assert_eq!(header(record, "ce_type"), Some("weft.user.v1.UserSignedUp"));
    assert_eq!(header(record, "ce_subject"), Some("crash-1"));
    assert_eq!(header(record, "content-type"), Some("application/protobuf"));
    weft_testkit::eventually(
        "the row to be marked sent",
        Duration::from_secs(30),
        || async { (unsent(&db).await == 0).then_some(()) },
    )
    .await;
}
