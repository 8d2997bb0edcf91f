//! The event backbone on PostgreSQL (the server named by `WEFT_TEST_DATABASE_URL`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/batching.rs"]
mod batching;
mod common;
#[path = "common/poison.rs"]
mod poison;
#[path = "common/scenario.rs"]
mod scenario;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_to_consumer_on_postgres() {
    let publisher = weft_testkit::postgres_database().await;
    let consumer = weft_testkit::postgres_database().await;
    scenario::outbox_to_consumer(publisher, consumer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_batch_settles_every_record_once_on_postgres() {
    batching::a_mixed_batch_settles_every_record_once(weft_testkit::postgres_database().await)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_batch_loses_and_doubles_nothing_on_postgres() {
    batching::kill_9_mid_batch_loses_and_doubles_nothing(weft_testkit::postgres_database().await)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_record_stops_the_consumer_on_postgres() {
    poison::no_record_stops_the_consumer(weft_testkit::postgres_database().await).await;
}
