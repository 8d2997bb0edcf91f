//! A write transaction whose caller goes away while it is being started (a cancelled
//! RPC, a passed deadline) leaves no connection of the pool inside a transaction: every
//! later write still begins, commits and is seen. On SQLite and on PostgreSQL (the
//! server named by `WEFT_TEST_DATABASE_URL`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use weft_events::Database;
use weft_testkit::Db;

async fn cancel_begins_then_write(kind: Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::connect(&kind.url(dir.path(), "probe").await)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE IF NOT EXISTS cancel_probe (n BIGINT NOT NULL)")
        .execute(db.pool())
        .await
        .unwrap();
    sqlx::query("DELETE FROM cancel_probe")
        .execute(db.pool())
        .await
        .unwrap();
    // Start transactions and drop each at a different moment of its start, from
    // before the first poll to after it has begun.
    let mut started = 0;
    for i in 0..600u64 {
        let wait = Duration::from_micros(i % 60 * 10);
        if let Ok(Ok(tx)) = tokio::time::timeout(wait, db.begin()).await {
            started += 1;
            drop(tx);
        }
    }
    // Every connection of the pool still writes: each of these would fail (or wait
    // on a write lock nobody releases) on a connection left inside a transaction.
    for n in 0..40i64 {
        let mut tx = tokio::time::timeout(Duration::from_secs(10), db.begin())
            .await
            .expect("a write transaction begins")
            .unwrap_or_else(|e| panic!("write {n} after the cancelled begins: {e}"));
        sqlx::query("INSERT INTO cancel_probe (n) VALUES ($1)")
            .bind(n)
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM cancel_probe")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(count, 40, "{started} of the cancelled begins had started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_begins_leave_no_connection_in_a_transaction_on_sqlite() {
    cancel_begins_then_write(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_begins_leave_no_connection_in_a_transaction_on_postgres() {
    cancel_begins_then_write(Db::Postgres).await;
}
