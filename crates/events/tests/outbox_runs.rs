//! `Outbox::enqueue_all` on SQLite and on PostgreSQL (the server named by
//! `WEFT_TEST_DATABASE_URL`): a hundred events written in runs of powers of two (64, 32
//! and 4) all reach the outbox once, in the order given, each with its own id, key,
//! type and payload; an empty list writes nothing; a transaction rolled back keeps none
//! of them; and the same events (the same ids) are refused a second time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use prost::Message as _;
use sqlx::Row as _;
use weft_events::catalog::DomainEvent as _;
use weft_events::{Database, EventContext, Outbox};
use weft_proto::user::UserSignedUp;
use weft_testkit::Db;

fn signup(n: usize) -> UserSignedUp {
    UserSignedUp {
        metadata: Some(EventContext::root().metadata("user", "test")),
        user_id: format!("user-{n:03}"),
        email: format!("user-{n:03}@example.com"),
        name: format!("User {n}"),
        ..Default::default()
    }
}

async fn database(kind: Db) -> (tempfile::TempDir, Database) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::connect(&kind.url(dir.path(), "outbox_runs").await)
        .await
        .unwrap();
    sqlx::query("DELETE FROM weft_outbox")
        .execute(db.pool())
        .await
        .unwrap();
    (dir, db)
}

async fn runs_reach_the_outbox_once_in_order(kind: Db) {
    let (_dir, db) = database(kind).await;
    let events: Vec<UserSignedUp> = (0..100).map(signup).collect();

    let mut tx = db.begin().await.unwrap();
    Outbox::enqueue_all(&mut tx, &events).await.unwrap();
    Outbox::enqueue_all::<UserSignedUp>(&mut tx, &[])
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let rows = sqlx::query(
        "SELECT event_id, topic, event_key, event_type, payload FROM weft_outbox \
         WHERE sent_at IS NULL ORDER BY seq",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    assert_eq!(
        rows.len(),
        100,
        "every event once, nothing from the empty list"
    );
    let mut ids = std::collections::HashSet::new();
    for (row, event) in rows.iter().zip(&events) {
        assert_eq!(row.get::<String, _>("topic"), UserSignedUp::TOPIC);
        assert_eq!(row.get::<String, _>("event_type"), UserSignedUp::TYPE);
        assert_eq!(
            row.get::<String, _>("event_key"),
            event.user_id,
            "in the order given"
        );
        let payload = UserSignedUp::decode(row.get::<Vec<u8>, _>("payload").as_slice()).unwrap();
        assert_eq!(&payload, event);
        assert!(
            ids.insert(row.get::<String, _>("event_id")),
            "ids are unique"
        );
    }

    let fresh: Vec<UserSignedUp> = (100..105).map(signup).collect();
    let mut tx = db.begin().await.unwrap();
    Outbox::enqueue_all(&mut tx, &fresh).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(
        Outbox::backlog(&db).await.unwrap(),
        100,
        "a rollback keeps none"
    );

    let mut tx = db.begin().await.unwrap();
    assert!(
        Outbox::enqueue_all(&mut tx, &events[..5]).await.is_err(),
        "the same events (the same ids) are refused a second time"
    );
    tx.rollback().await.unwrap();
    assert_eq!(Outbox::backlog(&db).await.unwrap(), 100);
}

#[tokio::test]
async fn runs_reach_the_outbox_once_in_order_on_sqlite() {
    runs_reach_the_outbox_once_in_order(Db::Sqlite).await;
}

#[tokio::test]
async fn runs_reach_the_outbox_once_in_order_on_postgres() {
    runs_reach_the_outbox_once_in_order(Db::Postgres).await;
}
