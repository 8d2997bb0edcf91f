//! The batched consumer's invariants, run on SQLite and on PostgreSQL: one batch
//! holding a duplicate, poison and a record that fails transiently ends with every
//! effect applied once, the poison on the dead-letter topic and the offset never past
//! an unapplied record; kill -9 in the middle of a batch loses and doubles nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::{AnyConnection, Row as _};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use weft_events::catalog::USER_EVENTS;
use weft_events::consumer::{Handler, HandlerError, Outcome, Received, StartFrom};
use weft_events::{Consumer, Database};
use weft_proto::user::UserSignedUp;
use weft_testkit::eventually;

use super::*;

const WAIT: Duration = Duration::from_secs(60);

/// Records one effect per event; fails transiently for `flaky` the first `failures`
/// times, telling the test each time.
struct Flaky {
    flaky: String,
    failures: AtomicU32,
    failing: mpsc::UnboundedSender<u32>,
}

#[async_trait::async_trait]
impl Handler for Flaky {
    async fn handle(&self, tx: &mut AnyConnection, event: &Received) -> Result<(), HandlerError> {
        let e = event.decode::<UserSignedUp>()?;
        sqlx::query("INSERT INTO batch_effects (event_id, user_id) VALUES ($1, $2)")
            .bind(event.envelope.id.clone())
            .bind(e.user_id)
            .execute(&mut *tx)
            .await?;
        if event.envelope.id == self.flaky {
            let left = self.failures.load(Ordering::SeqCst);
            if left > 0 {
                self.failures.store(left - 1, Ordering::SeqCst);
                let _ = self.failing.send(left);
                return Err(HandlerError::Transient("the thing it needs is down".into()));
            }
        }
        Ok(())
    }
}

async fn next_offset(db: &Database, group: &str) -> Option<i64> {
    sqlx::query(
        // Every record has one key, so one partition moves; the others stay at 0.
        "SELECT MAX(next_offset) FROM weft_consumer_offsets WHERE consumer_group = $1 AND topic = $2",
    )
    .bind(group)
    .bind(USER_EVENTS)
    .fetch_one(db.pool())
    .await
    .unwrap()
    .get::<Option<i64>, _>(0)
}

async fn effect_counts(db: &Database) -> HashMap<String, i64> {
    sqlx::query("SELECT event_id, COUNT(*) FROM batch_effects GROUP BY event_id")
        .fetch_all(db.pool())
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
        .collect()
}

/// One batch: e1, e2, e1 again, an undecodable record, a record without an
/// envelope, e3 (fails twice, transiently), e4.
pub async fn a_mixed_batch_settles_every_record_once(on: &TestBackend) {
    let url = on.database("c").await;
    let (broker, kafka) = provisioned(on.broker).await;
    let db = Database::connect(&url).await.unwrap();
    sqlx::query("CREATE TABLE batch_effects (event_id TEXT NOT NULL, user_id TEXT NOT NULL)")
        .execute(db.pool())
        .await
        .unwrap();

    let [e1, e2, e3, e4] = ["b1", "b2", "b3", "b4"].map(signup);
    let id = |e: &UserSignedUp| e.metadata.clone().unwrap().event_id;
    // Everything is on the topic before the consumer starts, so its first fetch
    // brings the whole batch.
    let producer = RawProducer::new(&kafka);
    producer.send_event("same-key", &e1).await;
    producer.send_event("same-key", &e2).await;
    producer.send_event("same-key", &e1).await;
    producer
        .send_as("same-key", b"\xff\xff not protobuf", &signup("poison"))
        .await;
    producer
        .send(USER_EVENTS, "same-key", b"no envelope", &[])
        .await;
    producer.send_event("same-key", &e3).await;
    producer.send_event("same-key", &e4).await;

    let (failing_tx, mut failing) = mpsc::unbounded_channel();
    let outcomes: Arc<Mutex<Vec<(String, Outcome, i64)>>> = Arc::default();
    let seen = outcomes.clone();
    let consumer = Consumer::new("batch-test", kafka.clone(), db.clone())
        .on::<UserSignedUp>(Flaky {
            flaky: id(&e3),
            failures: AtomicU32::new(2),
            failing: failing_tx,
        })
        .start_from(Some(StartFrom::Earliest))
        .after_commit(move |r, o| {
            seen.lock()
                .unwrap()
                .push((r.envelope.id.clone(), o, r.offset));
        });
    let stop = CancellationToken::new();
    let task = tokio::spawn(consumer.run(stop.clone()));

    // While e3 fails, what came before it is committed and the offset stops at e3.
    // Its first failure makes the runtime commit the records before it; its second
    // comes after that commit.
    for left in [2, 1] {
        assert_eq!(
            tokio::time::timeout(WAIT, failing.recv()).await.unwrap(),
            Some(left)
        );
    }
    let effects = effect_counts(&db).await;
    assert_eq!(effects.get(&id(&e1)), Some(&1));
    assert_eq!(effects.get(&id(&e2)), Some(&1));
    assert_eq!(
        effects.get(&id(&e3)),
        None,
        "a failed effect is rolled back"
    );
    assert_eq!(
        next_offset(&db, "batch-test").await,
        Some(5),
        "the offset stops at the failing record (offset 5)"
    );

    eventually("e4 to be applied", WAIT, || {
        let done = outcomes
            .lock()
            .unwrap()
            .iter()
            .any(|(eid, o, _)| *eid == id(&e4) && *o == Outcome::Applied);
        async move { done.then_some(()) }
    })
    .await;
    let effects = effect_counts(&db).await;
    for e in [&e1, &e2, &e3, &e4] {
        assert_eq!(effects.get(&id(e)), Some(&1), "{} applied once", e.user_id);
    }
    assert_eq!(effects.len(), 4);
    assert_eq!(next_offset(&db, "batch-test").await, Some(7));
    let by_offset: HashMap<i64, Outcome> = outcomes
        .lock()
        .unwrap()
        .iter()
        .map(|(_, o, off)| (*off, *o))
        .collect();
    assert_eq!(by_offset.get(&2), Some(&Outcome::Duplicate));
    assert_eq!(by_offset.get(&3), Some(&Outcome::DeadLettered));
    assert_eq!(by_offset.get(&5), Some(&Outcome::Applied));

    let dlq = dead_letters(&broker, USER_EVENTS, 2);
    let reasons = reasons(&dlq);
    assert!(reasons.contains(&"undecodable"), "{reasons:?}");
    assert!(reasons.contains(&"malformed-envelope"), "{reasons:?}");
    assert_eq!(dlq.len(), 2, "each poison record dead-lettered once");

    stop.cancel();
    task.await.unwrap().unwrap();
}

/// kill -9 of a consumer (offsets in its database) while a batch's transaction is
/// open, then a restart: every event applied exactly once.
pub async fn kill_9_mid_batch_loses_and_doubles_nothing(on: &TestBackend) {
    let url = on.database("c").await;
    let (broker, kafka) = provisioned(on.broker).await;
    let db = Database::connect(&url).await.unwrap();
    let total = 600;
    let events: Vec<_> = (0..total).map(|i| signup(&format!("k{i}"))).collect();
    let producer = RawProducer::new(&kafka);
    for e in &events {
        producer.send_event("same-key", e).await;
    }
    let args = |hang: Option<&str>| {
        let mut a = vec![
            "--db".to_owned(),
            url.clone(),
            "--brokers".to_owned(),
            broker.bootstrap(),
            "consume".to_owned(),
            "--group".to_owned(),
            "killed".to_owned(),
            "--from".to_owned(),
            "earliest".to_owned(),
        ];
        if let Some(n) = hang {
            a.extend(["--hang-after".to_owned(), n.to_owned()]);
        }
        a
    };
    // Past a whole batch (256 at most), so earlier batches commit and the hang comes
    // inside a later one.
    let first_args = args(Some("300"));
    let refs: Vec<&str> = first_args.iter().map(String::as_str).collect();
    let mut probe = Probe::spawn(&broker, &refs);
    probe.wait_line("the consumer to hang inside a batch", WAIT, |l| {
        l == "hanging"
    });
    probe.kill9();
    let (n, distinct) = effects(&db).await;
    assert_eq!(n, distinct, "nothing doubled before the crash");
    assert!(
        n > 0 && n < 300,
        "earlier batches committed, the open one did not ({n} applied)"
    );

    let again = args(None);
    let refs: Vec<&str> = again.iter().map(String::as_str).collect();
    let _probe = Probe::spawn(&broker, &refs);
    eventually("every event to be applied", WAIT, || {
        let db = db.clone();
        async move { (effects(&db).await.1 == total as i64).then_some(()) }
    })
    .await;
    let (n, distinct) = effects(&db).await;
    assert_eq!(
        (n, distinct),
        (total as i64, total as i64),
        "each event exactly once"
    );
}
