//! The event backbone on PostgreSQL (the server named by `WEFT_TEST_DATABASE_URL`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/batching.rs"]
mod batching;
mod common;
#[path = "common/group.rs"]
mod group;
#[path = "common/handover.rs"]
mod handover;
#[path = "common/poison.rs"]
mod poison;
#[path = "common/pruning.rs"]
mod pruning;
#[path = "common/scenario.rs"]
mod scenario;
#[path = "common/stale.rs"]
mod stale;

use weft_testkit::BrokerKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_to_consumer_on_postgres() {
    let publisher = weft_testkit::postgres_database().await;
    let consumer = weft_testkit::postgres_database().await;
    scenario::outbox_to_consumer(BrokerKind::Embedded, publisher, consumer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_batch_settles_every_record_once_on_postgres() {
    batching::a_mixed_batch_settles_every_record_once(
        BrokerKind::Embedded,
        weft_testkit::postgres_database().await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_batch_loses_and_doubles_nothing_on_postgres() {
    batching::kill_9_mid_batch_loses_and_doubles_nothing(
        BrokerKind::Embedded,
        weft_testkit::postgres_database().await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_record_stops_the_consumer_on_postgres() {
    poison::no_record_stops_the_consumer(
        BrokerKind::Embedded,
        weft_testkit::postgres_database().await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_offsets_stop_the_consumer_until_reset_on_postgres() {
    stale::stale_offsets_stop_the_consumer_until_reset(
        BrokerKind::Embedded,
        weft_testkit::postgres_database().await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_rows_are_pruned_and_recent_ones_kept_on_postgres() {
    pruning::old_rows_are_pruned_and_recent_ones_kept(weft_testkit::postgres_database().await)
        .await;
}

/// kill -9 of the relay between the commit and the publish loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_killed_before_publish_publishes_after_restart_on_postgres() {
    scenario::relay_killed_before_publish(
        BrokerKind::Embedded,
        weft_testkit::postgres_database().await,
    )
    .await;
}

/// Two relays on one database: one publishes at a time and the other takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_relay_publishes_at_a_time_and_another_takes_over_on_postgres() {
    handover::one_relay_publishes_at_a_time_and_another_takes_over(
        BrokerKind::Embedded,
        weft_testkit::postgres_database().await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_share_the_partitions_and_hand_them_over_on_postgres() {
    group::members_share_the_partitions_and_hand_them_over(
        BrokerKind::Embedded,
        weft_testkit::postgres_database().await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_partitions_were_claimed_commits_nothing_on_postgres() {
    group::a_member_whose_partitions_were_claimed_commits_nothing(
        BrokerKind::Embedded,
        weft_testkit::postgres_database().await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_begins_at_its_stored_offsets_or_where_told_on_postgres() {
    group::a_group_begins_at_its_stored_offsets_or_where_told(
        BrokerKind::Embedded,
        weft_testkit::postgres_database().await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_of_another_deployment_is_refused_on_postgres() {
    group::a_member_of_another_deployment_is_refused(
        BrokerKind::Embedded,
        weft_testkit::postgres_database().await,
        weft_testkit::postgres_database().await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewind_replays_the_whole_group_one_at_a_time_on_postgres() {
    group::a_rewind_replays_the_whole_group_one_at_a_time(
        BrokerKind::Embedded,
        weft_testkit::postgres_database().await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_prunes_at_a_time_on_postgres() {
    pruning::one_replica_prunes_at_a_time(weft_testkit::postgres_database().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_added_to_a_topic_are_read_without_a_restart_on_postgres() {
    group::partitions_added_to_a_topic_are_read_without_a_restart(
        BrokerKind::Embedded,
        weft_testkit::postgres_database().await,
    )
    .await;
}

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
