//! Retention, on SQLite and on PostgreSQL: inbox rows and sent outbox rows past the
//! retention are pruned, in batches; recent ones and unsent outbox rows stay.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use weft_events::Database;
use weft_events::db::now_micros;
use weft_events::retention::{BATCH, Pruner, RetentionArgs};

use super::{TestBackend, count_rows};

const DAY: i64 = 24 * 3_600_000_000;

/// A week's retention, pruned every ten minutes.
fn a_week() -> RetentionArgs {
    RetentionArgs {
        retention: Duration::from_secs(7 * 24 * 3600),
        prune_interval: Duration::from_secs(600),
    }
}

pub async fn old_rows_are_pruned_and_recent_ones_kept(on: &TestBackend) {
    let url = on.database("prune").await;
    let db = Database::connect(&url).await.unwrap();
    let now = now_micros();
    // More old inbox rows than one batch holds, and a few recent ones.
    let old_inbox = BATCH * 2 + 17;
    let mut tx = db.begin().await.unwrap();
    for i in 0..old_inbox + 5 {
        let at = if i < old_inbox {
            now - 8 * DAY
        } else {
            now - DAY
        };
        inbox_row(&mut tx, &format!("e{i}"), i, at).await;
    }
    // Outbox: old and sent, old but never sent, recent and sent.
    for (i, (created, sent)) in [
        (now - 9 * DAY, Some(now - 9 * DAY)),
        (now - 9 * DAY, Some(now - 8 * DAY)),
        (now - 9 * DAY, None),
        (now - DAY, Some(now - DAY)),
    ]
    .into_iter()
    .enumerate()
    {
        sqlx::query(
            "INSERT INTO weft_outbox (event_id, topic, event_key, event_type, headers, payload, created_at, sent_at) \
             VALUES ($1, 'user-events', 'k', 't', '[]', $2, $3, $4)",
        )
        .bind(format!("o{i}"))
        .bind(vec![1u8, 2, 3])
        .bind(created)
        .bind(sent)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();

    let pruner = Pruner::new(db.clone(), a_week(), Vec::new());
    let done = pruner.prune_once().await.unwrap();
    assert_eq!(done, [("inbox", old_inbox as u64), ("outbox", 2)]);
    assert_eq!(count_rows(&db, "weft_inbox").await, 5);
    let kept: Vec<(String,)> = sqlx::query_as("SELECT event_id FROM weft_outbox ORDER BY event_id")
        .fetch_all(db.pool())
        .await
        .unwrap();
    assert_eq!(
        kept,
        [("o2".to_owned(),), ("o3".to_owned(),)],
        "the unsent row and the recent one stay"
    );
    // A second pass finds nothing more.
    assert_eq!(
        pruner.prune_once().await.unwrap(),
        [("inbox", 0), ("outbox", 0)]
    );
}

/// An inbox row of group `g` for event `id` at `offset`, processed at `at` (µs).
async fn inbox_row(conn: &mut sqlx::AnyConnection, id: &str, offset: i64, at: i64) {
    sqlx::query(
        "INSERT INTO weft_inbox (consumer_group, event_id, event_type, topic, kafka_partition, kafka_offset, processed_at) \
         VALUES ('g', $1, 't', 'user-events', 0, $2, $3)",
    )
    .bind(id.to_owned())
    .bind(offset)
    .bind(at)
    .execute(conn)
    .await
    .unwrap();
}

async fn old_inbox_rows(db: &Database, from: i64, n: i64) {
    let at = now_micros() - 8 * DAY;
    let mut conn = db.pool().acquire().await.unwrap();
    for i in from..from + n {
        inbox_row(&mut conn, &format!("old{i}"), i, at).await;
    }
}

/// Replicas sharing a database prune one at a time: the holder of the pruning lease;
/// once it stops, another replica prunes at its next pass.
pub async fn one_replica_prunes_at_a_time(on: &TestBackend) {
    let url = on.database("prune").await;
    let db = Database::connect(&url).await.unwrap();
    let one = Pruner::for_replica(db.clone(), a_week(), Vec::new(), "one");
    let two = Pruner::for_replica(db.clone(), a_week(), Vec::new(), "two");
    old_inbox_rows(&db, 0, 10).await;
    assert_eq!(
        one.prune_once().await.unwrap(),
        [("inbox", 10), ("outbox", 0)]
    );
    old_inbox_rows(&db, 10, 10).await;
    assert!(
        two.prune_once().await.unwrap().is_empty(),
        "not two's turn while one holds the lease"
    );
    assert_eq!(count_rows(&db, "weft_inbox").await, 10);
    one.release().await;
    assert_eq!(
        two.prune_once().await.unwrap(),
        [("inbox", 10), ("outbox", 0)]
    );
    assert!(
        one.prune_once().await.unwrap().is_empty(),
        "two holds it now"
    );
    assert_eq!(count_rows(&db, "weft_inbox").await, 0);
}
