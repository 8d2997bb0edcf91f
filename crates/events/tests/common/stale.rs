//! Stored offsets past a fresh broker's ends, run on SQLite and on PostgreSQL: the
//! consumer stops with an error naming the topic, partition, stored offset and end,
//! and after the explicit reset (earliest) it reads what the broker has.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use sqlx::AnyConnection;
use tokio_util::sync::CancellationToken;
use weft_events::catalog::USER_EVENTS;
use weft_events::consumer::offsets::StaleOffsets;
use weft_events::consumer::{Handler, HandlerError, Received, StartFrom};
use weft_events::kafka::KafkaArgs;
use weft_events::{Consumer, Database, EventsError, topics};
use weft_proto::user::UserSignedUp;
use weft_testkit::{TestBroker, eventually};

use super::*;

const WAIT: Duration = Duration::from_secs(60);

struct Count;

#[async_trait::async_trait]
impl Handler for Count {
    async fn handle(&self, tx: &mut AnyConnection, event: &Received) -> Result<(), HandlerError> {
        let e = event.decode::<UserSignedUp>()?;
        sqlx::query("INSERT INTO stale_effects (user_id) VALUES ($1)")
            .bind(e.user_id)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}

fn consumer(kafka: &KafkaArgs, db: &Database, policy: StaleOffsets) -> Consumer {
    Consumer::new("stale-test", kafka.clone(), db.clone())
        .on::<UserSignedUp>(Count)
        .start_from(Some(StartFrom::Earliest))
        .on_stale_offsets(policy)
}

pub async fn stale_offsets_stop_the_consumer_until_reset(on: &TestBackend) {
    let url = on.database("stale").await;
    let broker = TestBroker::start(on.broker);
    let mut kafka = kafka_args(&broker);
    kafka.topic_partitions = 1;
    topics::provision(&kafka, &topics::all_topics())
        .await
        .unwrap();
    let db = Database::connect(&url).await.unwrap();
    sqlx::query("CREATE TABLE stale_effects (user_id TEXT NOT NULL)")
        .execute(db.pool())
        .await
        .unwrap();
    // The database remembers a topic far longer than this broker's.
    sqlx::query(
        "INSERT INTO weft_consumer_offsets (consumer_group, topic, kafka_partition, next_offset) \
         VALUES ('stale-test', $1, 0, 1000)",
    )
    .bind(USER_EVENTS)
    .execute(db.pool())
    .await
    .unwrap();
    let producer = RawProducer::new(&kafka);
    for id in ["s1", "s2"] {
        producer.send_event(id, &signup(id)).await;
    }

    let err = tokio::time::timeout(
        WAIT,
        consumer(&kafka, &db, StaleOffsets::Stop).run(CancellationToken::new()),
    )
    .await
    .expect("the consumer stops at once")
    .expect_err("stale offsets are an error");
    match &err {
        EventsError::StaleOffsets {
            topic,
            partition,
            stored,
            end,
            ..
        } => {
            assert_eq!(
                (topic.as_str(), *partition, *stored, *end),
                (USER_EVENTS, 0, 1000, 2)
            );
        }
        other => panic!("{other}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("--reset-offsets earliest") && message.contains("1000"),
        "{message}"
    );
    assert_eq!(
        count_rows(&db, "stale_effects").await,
        0,
        "nothing read past the check"
    );

    let stop = CancellationToken::new();
    let task = tokio::spawn(consumer(&kafka, &db, StaleOffsets::Earliest).run(stop.clone()));
    eventually("both records applied after the reset", WAIT, || async {
        (user_ids(&db, "stale_effects").await == ["s1", "s2"]).then_some(())
    })
    .await;
    stop.cancel();
    task.await.unwrap().unwrap();
    let (next,): (i64,) = sqlx::query_as(
        "SELECT next_offset FROM weft_consumer_offsets WHERE consumer_group = 'stale-test'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(next, 2, "the offset follows the new log");
}
