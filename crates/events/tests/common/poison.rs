//! No record stops a consumer, run on SQLite and on PostgreSQL: a record whose effect
//! the database refuses for its data (a check violation; on PostgreSQL also a NUL
//! byte) is dead-lettered at once, a record whose handler fails transiently for ever
//! is dead-lettered after the retry limit with `retries-exhausted`, and the records
//! after each are applied.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sqlx::AnyConnection;
use tokio_util::sync::CancellationToken;
use weft_events::catalog::USER_EVENTS;
use weft_events::consumer::{Handler, HandlerError, Received, StartFrom};
use weft_events::db::Backend;
use weft_events::{Consumer, Database};
use weft_proto::user::UserSignedUp;
use weft_testkit::{eventually, header};

use super::*;

const WAIT: Duration = Duration::from_secs(60);

/// Stores each signup's name; the user `stuck` always fails transiently.
struct Store {
    tries_of_stuck: Arc<AtomicU32>,
}

#[async_trait::async_trait]
impl Handler for Store {
    async fn handle(&self, tx: &mut AnyConnection, event: &Received) -> Result<(), HandlerError> {
        let e = event.decode::<UserSignedUp>()?;
        if e.user_id == "stuck" {
            self.tries_of_stuck.fetch_add(1, Ordering::SeqCst);
            return Err(HandlerError::Transient(
                "the thing it needs stays down".into(),
            ));
        }
        sqlx::query("INSERT INTO poison_effects (user_id, name) VALUES ($1, $2)")
            .bind(e.user_id)
            .bind(e.name)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}

async fn produce(producer: &RawProducer, user_id: &str, name: &str) {
    let mut event = signup(user_id);
    event.name = name.to_owned();
    producer.send_event("same-key", &event).await;
}

pub async fn no_record_stops_the_consumer(on: &TestBackend) {
    let url = on.database("poison").await;
    let (broker, kafka) = provisioned(on.broker).await;
    let db = Database::connect(&url).await.unwrap();
    sqlx::query(
        "CREATE TABLE poison_effects (user_id TEXT NOT NULL, name TEXT NOT NULL CHECK (length(name) <= 20))",
    )
    .execute(db.pool())
    .await
    .unwrap();

    let producer = RawProducer::new(&kafka);
    produce(&producer, "first", "Ada").await;
    produce(
        &producer,
        "too-long",
        "a name longer than twenty characters",
    )
    .await;
    let nul = db.backend() == Backend::Postgres;
    if nul {
        // PostgreSQL refuses a NUL byte in text (invalid byte sequence); SQLite keeps it.
        produce(&producer, "nul", "Ada\u{0}").await;
    }
    produce(&producer, "stuck", "Grace").await;
    produce(&producer, "last", "Lin").await;

    let tries_of_stuck = Arc::new(AtomicU32::new(0));
    let consumer = Consumer::new("poison-test", kafka.clone(), db.clone())
        .on::<UserSignedUp>(Store {
            tries_of_stuck: tries_of_stuck.clone(),
        })
        .max_attempts(Some(3))
        .start_from(Some(StartFrom::Earliest));
    let stop = CancellationToken::new();
    let task = tokio::spawn(consumer.run(stop.clone()));

    let applied = eventually("the last record applied", WAIT, || async {
        let users = user_ids(&db, "poison_effects").await;
        users.contains(&"last".to_owned()).then_some(users)
    })
    .await;
    assert_eq!(
        applied,
        ["first", "last"],
        "only the valid records have effects"
    );
    assert_eq!(
        tries_of_stuck.load(Ordering::SeqCst),
        3,
        "the stuck record was tried up to the limit"
    );

    let expected = 2 + usize::from(nul);
    let dlq = dead_letters(&broker, USER_EVENTS, expected);
    let by_reason: Vec<(String, String)> = dlq
        .iter()
        .map(|m| {
            (
                header(m, "dlq_reason").unwrap_or_default().to_owned(),
                header(m, "dlq_error").unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(dlq.len(), expected, "{by_reason:?}");
    let exhausted: Vec<_> = by_reason
        .iter()
        .filter(|(r, _)| r == "retries-exhausted")
        .collect();
    assert_eq!(exhausted.len(), 1, "{by_reason:?}");
    assert!(exhausted[0].1.contains("after 3 attempts"), "{by_reason:?}");
    let refused: Vec<_> = by_reason.iter().filter(|(r, _)| r == "invalid").collect();
    assert_eq!(refused.len(), 1 + usize::from(nul), "{by_reason:?}");
    assert!(
        refused.iter().all(|(_, e)| e.contains("database refused")),
        "{by_reason:?}"
    );

    stop.cancel();
    task.await.unwrap().unwrap();
}
