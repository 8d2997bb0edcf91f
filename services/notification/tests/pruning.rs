//! The notification service's retention rule, on SQLite and PostgreSQL: the records
//! that triggered settled notifications are pruned once past the retention; those of
//! a notification still pending stay (a later give-up dead-letters them), and so do
//! recent ones and every notification.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use weft_events::Database;
use weft_events::db::now_micros;
use weft_events::retention::{Pruner, RetentionArgs};
use weft_proto::notification::DeliveryStatus;
use weft_testkit::{Db, count_rows, on_each_db, texts};

const DAY: i64 = 24 * 3_600_000_000;

on_each_db!(settled_triggers_are_pruned);

async fn settled_triggers_are_pruned(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::connect(&db.url(dir.path(), "n").await)
        .await
        .unwrap();
    db.migrate(
        sqlx::migrate!("./migrations/sqlite"),
        sqlx::migrate!("./migrations/postgres"),
    )
    .await
    .unwrap();
    let now = now_micros();
    let rows = [
        ("old-sent", now - 8 * DAY, Some(DeliveryStatus::Sent)),
        (
            "old-suppressed",
            now - 8 * DAY,
            Some(DeliveryStatus::Suppressed),
        ),
        ("old-pending", now - 8 * DAY, Some(DeliveryStatus::Pending)),
        ("recent-sent", now - DAY, Some(DeliveryStatus::Sent)),
    ];
    let mut tx = db.begin().await.unwrap();
    for (id, at, status) in rows {
        sqlx::query(
            "INSERT INTO triggers (event_id, event_type, correlation_id, topic, kafka_partition, \
             kafka_offset, event_key, headers, payload, created_at) \
             VALUES ($1, 't', 'c', 'user-events', 0, 0, 'k', '[]', $2, $3)",
        )
        .bind(id)
        .bind(vec![0u8])
        .bind(at)
        .execute(&mut *tx)
        .await
        .unwrap();
        if let Some(status) = status {
            sqlx::query(
                "INSERT INTO notifications (notification_id, user_id, channel, template, \
                 trigger_event_id, context, status, next_attempt_at, created_at) \
                 VALUES ($1, 'u', 1, 'welcome', $2, '{}', $3, 0, $4)",
            )
            .bind(format!("n-{id}"))
            .bind(id)
            .bind(status as i32)
            .bind(at)
            .execute(&mut *tx)
            .await
            .unwrap();
        }
    }
    tx.commit().await.unwrap();

    let pruner = Pruner::new(
        db.clone(),
        RetentionArgs::default(),
        weft_notification::store::prune_rules(),
    );
    let done = pruner.prune_once().await.unwrap();
    assert!(done.contains(&("notification triggers", 2)), "{done:?}");
    let kept = texts(db.pool(), "SELECT event_id FROM triggers ORDER BY event_id").await;
    assert_eq!(kept, ["old-pending", "recent-sent"]);
    let notifications = count_rows(db.pool(), "notifications").await;
    assert_eq!(notifications, 4, "the users' history stays");
}
