//! Group commit through [`Database::write`], on SQLite and on PostgreSQL (the server
//! named by `WEFT_TEST_DATABASE_URL`): concurrent callers' jobs share transactions, a
//! caller is answered only with what committed, a failing job undoes nothing of the
//! others and keeps none of its own writes, and a caller that stops waiting still has
//! its job committed at most once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use sqlx::AnyConnection;
use weft_events::Database;
use weft_testkit::Db;

async fn database(kind: Db, table: &str) -> (tempfile::TempDir, Database) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::connect(&kind.url(dir.path(), "group").await)
        .await
        .unwrap();
    sqlx::query(&format!(
        "CREATE TABLE IF NOT EXISTS {table} (n BIGINT PRIMARY KEY)"
    ))
    .execute(db.pool())
    .await
    .unwrap();
    sqlx::query(&format!("DELETE FROM {table}"))
        .execute(db.pool())
        .await
        .unwrap();
    (dir, db)
}

/// Inserts `n` twice over (two statements) into `table`; fails after the first
/// insert when `n` is a multiple of 7, so a kept half would show.
async fn insert(conn: &mut AnyConnection, table: &str, n: i64) -> Result<i64, sqlx::Error> {
    sqlx::query(&format!("INSERT INTO {table} (n) VALUES ($1)"))
        .bind(n)
        .execute(&mut *conn)
        .await?;
    if n % 7 == 0 {
        return Err(sqlx::Error::Protocol(format!("job {n} refused")));
    }
    sqlx::query(&format!("INSERT INTO {table} (n) VALUES ($1)"))
        .bind(-n)
        .execute(&mut *conn)
        .await?;
    Ok(n)
}

async fn stored(db: &Database, table: &str) -> BTreeSet<i64> {
    let rows: Vec<(i64,)> = sqlx::query_as(&format!("SELECT n FROM {table}"))
        .fetch_all(db.pool())
        .await
        .unwrap();
    rows.into_iter().map(|(n,)| n).collect()
}

async fn concurrent_jobs_commit_together_and_fail_alone(kind: Db) {
    let table = "group_probe";
    let (_dir, db) = database(kind, table).await;
    let calls: Vec<_> = (1..=200i64)
        .map(|n| {
            let db = db.clone();
            tokio::spawn(
                async move { db.write(move |conn| Box::pin(insert(conn, table, n))).await },
            )
        })
        .collect();
    let mut answered_ok = BTreeSet::new();
    for (n, call) in (1..=200i64).zip(calls) {
        match call.await.unwrap() {
            Ok(got) => {
                assert_eq!(got, n, "each caller gets its own job's result");
                answered_ok.insert(n);
            }
            Err(e) => {
                assert_eq!(n % 7, 0, "only the refused jobs fail: {n}: {e}");
                assert!(e.to_string().contains(&format!("job {n} refused")), "{e}");
            }
        }
    }
    let wanted: BTreeSet<i64> = (1..=200).filter(|n| n % 7 != 0).collect();
    assert_eq!(answered_ok, wanted);
    let both_halves: BTreeSet<i64> = wanted.iter().flat_map(|&n| [n, -n]).collect();
    assert_eq!(
        stored(&db, table).await,
        both_halves,
        "every answered job whole, no half of a refused one"
    );
}

async fn a_caller_that_stops_waiting_has_its_job_committed_once(kind: Db) {
    let table = "group_cancel_probe";
    let (_dir, db) = database(kind, table).await;
    let mut gave_up = 0;
    for n in 1..=300i64 {
        let n = n * 7 + 1; // never a multiple of 7: never refused
        let wait = Duration::from_micros((n as u64 % 50) * 20);
        let write = db.write(move |conn| Box::pin(insert(conn, table, n)));
        if tokio::time::timeout(wait, write).await.is_err() {
            gave_up += 1;
        }
    }
    // A last write through the same queue: answered after every job before it.
    db.write(move |conn| Box::pin(insert(conn, table, 1)))
        .await
        .unwrap();
    let rows = stored(&db, table).await;
    let jobs: BTreeSet<i64> = rows.iter().copied().filter(|n| *n > 0).collect();
    assert_eq!(
        rows.len(),
        2 * jobs.len(),
        "each job kept whole ({gave_up} callers gave up)"
    );
    let all: BTreeSet<i64> = (1..=300i64).map(|n| n * 7 + 1).chain([1]).collect();
    assert_eq!(
        jobs, all,
        "a job handed over is committed even when its caller left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_jobs_commit_together_and_fail_alone_on_sqlite() {
    concurrent_jobs_commit_together_and_fail_alone(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_jobs_commit_together_and_fail_alone_on_postgres() {
    concurrent_jobs_commit_together_and_fail_alone(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_stops_waiting_has_its_job_committed_once_on_sqlite() {
    a_caller_that_stops_waiting_has_its_job_committed_once(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_stops_waiting_has_its_job_committed_once_on_postgres() {
    a_caller_that_stops_waiting_has_its_job_committed_once(Db::Postgres).await;
}
