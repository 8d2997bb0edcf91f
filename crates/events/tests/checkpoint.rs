//! SQLite's write-ahead log is copied into the database file in the background, not
//! by the commit that happens to grow it past a size: after a run of small commits,
//! far fewer pages than that, the database file alone holds them all.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use sqlx::Connection as _;
use weft_events::Database;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_copied_into_the_database_file_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let url = weft_events::db::sqlite_url(dir.path(), "checkpoint").unwrap();
    let db = Database::connect(&url).await.unwrap();
    sqlx::query("CREATE TABLE checkpoint_probe (n BIGINT PRIMARY KEY)")
        .execute(db.pool())
        .await
        .unwrap();
    for n in 0..200i64 {
        let mut tx = db.begin().await.unwrap();
        sqlx::query("INSERT INTO checkpoint_probe (n) VALUES ($1)")
            .bind(n)
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let (file, copy) = (dir.path().join("checkpoint.db"), dir.path().join("copy.db"));
    weft_testkit::eventually(
        "every row in the database file itself",
        Duration::from_secs(10),
        || {
            let (file, copy) = (file.clone(), copy.clone());
            async move {
                // The file without its log, as a reader of the file alone sees it.
                std::fs::copy(&file, &copy).ok()?;
                let url = format!("sqlite://{}?mode=rw", copy.display());
                let mut conn = sqlx::sqlite::SqliteConnection::connect(&url).await.ok()?;
                let rows: Option<i64> = sqlx::query_scalar("SELECT COUNT(*) FROM checkpoint_probe")
                    .fetch_one(&mut conn)
                    .await
                    .ok();
                let _ = conn.close().await;
                for end in ["-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{end}", copy.display()));
                }
                (rows == Some(200)).then_some(())
            }
        },
    )
    .await;
}
