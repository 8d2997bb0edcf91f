//! The event backbone on PostgreSQL (the server named by `WEFT_TEST_DATABASE_URL`):
//! every scenario of `common/`, each a test named `…_on_postgres`, and the relay woken
//! by PostgreSQL's notifications.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use weft_testkit::BrokerKind;

common::backbone_tests!(postgres);

/// Rows another replica commits wake the relay holding the lease: PostgreSQL
/// notifies `weft_outbox` at commit. The relay polls only hourly here, so nothing
/// but the notification can publish the second row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_another_replica_commits_wake_the_relay_on_postgres() {
    use std::time::Duration;
    use weft_events::outbox::RelayConfig;
    use weft_events::{Database, Relay};

    let url = weft_testkit::postgres_database().await;
    let (_broker, kafka) = common::provisioned(BrokerKind::Embedded).await;
    let holder = Database::connect(&url).await.unwrap();
    let other = Database::connect(&url).await.unwrap();
    let relay = Relay::new(
        holder.clone(),
        &kafka,
        "relay-holder",
        RelayConfig {
            replica: "holder".to_owned(),
            poll_interval: Duration::from_secs(3600),
            ..RelayConfig::default()
        },
    )
    .unwrap();
    common::enqueue(&other, &[common::signup("first")]).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(relay.run(stop.clone()));
    // Its first round publishes what waits, then it listens and sleeps.
    weft_testkit::eventually("the first row published", Duration::from_secs(30), || {
        let db = holder.clone();
        async move { (common::unsent(&db).await == 0).then_some(()) }
    })
    .await;
    weft_testkit::eventually("the relay listening", Duration::from_secs(30), || {
        let db = holder.clone();
        async move {
            let listening: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND query ILIKE 'LISTEN%weft_outbox%'",
            )
            .fetch_one(db.pool())
            .await
            .unwrap();
            (listening == 1).then_some(())
        }
    })
    .await;

    common::enqueue(&other, &[common::signup("second")]).await;
    weft_testkit::eventually(
        "the other replica's row published without a poll",
        Duration::from_secs(30),
        || {
            let db = holder.clone();
            async move { (common::unsent(&db).await == 0).then_some(()) }
        },
    )
    .await;
    stop.cancel();
    running.await.unwrap();
}
