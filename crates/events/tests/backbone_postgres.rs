//! The event backbone on PostgreSQL (the server named by `WEFT_TEST_DATABASE_URL`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/scenario.rs"]
mod scenario;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_to_consumer_on_postgres() {
    let publisher = weft_testkit::postgres_database().await;
    let consumer = weft_testkit::postgres_database().await;
    scenario::outbox_to_consumer(publisher, consumer).await;
}
