//! The event backbone on Apache Kafka: the scenarios of `backbone_sqlite.rs`, written
//! once in `common/`, on a namespace of their own of the 3-node KRaft cluster named by
//! `WEFT_TEST_KAFKA` (topics with replication factor 3 and `min.insync.replicas` 2),
//! with SQLite databases.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/batching.rs"]
mod batching;
mod common;
#[path = "common/group.rs"]
mod group;
#[path = "common/poison.rs"]
mod poison;
#[path = "common/scenario.rs"]
mod scenario;
#[path = "common/stale.rs"]
mod stale;

use weft_events::db::sqlite_url;
use weft_testkit::BrokerKind::Kafka;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_to_consumer_on_kafka() {
    let dir = tempfile::tempdir().unwrap();
    scenario::outbox_to_consumer(
        Kafka,
        sqlite_url(dir.path(), "publisher").unwrap(),
        sqlite_url(dir.path(), "consumer").unwrap(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_killed_before_publish_publishes_after_restart_on_kafka() {
    let dir = tempfile::tempdir().unwrap();
    scenario::relay_killed_before_publish(Kafka, sqlite_url(dir.path(), "user").unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_batch_settles_every_record_once_on_kafka() {
    let dir = tempfile::tempdir().unwrap();
    batching::a_mixed_batch_settles_every_record_once(Kafka, sqlite_url(dir.path(), "c").unwrap())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_batch_loses_and_doubles_nothing_on_kafka() {
    let dir = tempfile::tempdir().unwrap();
    batching::kill_9_mid_batch_loses_and_doubles_nothing(
        Kafka,
        sqlite_url(dir.path(), "c").unwrap(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_record_stops_the_consumer_on_kafka() {
    let dir = tempfile::tempdir().unwrap();
    poison::no_record_stops_the_consumer(Kafka, sqlite_url(dir.path(), "poison").unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_offsets_stop_the_consumer_until_reset_on_kafka() {
    let dir = tempfile::tempdir().unwrap();
    stale::stale_offsets_stop_the_consumer_until_reset(
        Kafka,
        sqlite_url(dir.path(), "stale").unwrap(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_share_the_partitions_and_hand_them_over_on_kafka() {
    let dir = tempfile::tempdir().unwrap();
    group::members_share_the_partitions_and_hand_them_over(
        Kafka,
        sqlite_url(dir.path(), "shared").unwrap(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_partitions_were_claimed_commits_nothing_on_kafka() {
    let dir = tempfile::tempdir().unwrap();
    group::a_member_whose_partitions_were_claimed_commits_nothing(
        Kafka,
        sqlite_url(dir.path(), "fenced").unwrap(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_begins_at_its_stored_offsets_or_where_told_on_kafka() {
    let dir = tempfile::tempdir().unwrap();
    group::a_group_begins_at_its_stored_offsets_or_where_told(
        Kafka,
        sqlite_url(dir.path(), "start").unwrap(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_of_another_deployment_is_refused_on_kafka() {
    let dir = tempfile::tempdir().unwrap();
    group::a_member_of_another_deployment_is_refused(
        Kafka,
        sqlite_url(dir.path(), "a").unwrap(),
        sqlite_url(dir.path(), "b").unwrap(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewind_replays_the_whole_group_one_at_a_time_on_kafka() {
    let dir = tempfile::tempdir().unwrap();
    group::a_rewind_replays_the_whole_group_one_at_a_time(
        Kafka,
        sqlite_url(dir.path(), "rewind").unwrap(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_added_to_a_topic_are_read_without_a_restart_on_kafka() {
    let dir = tempfile::tempdir().unwrap();
    group::partitions_added_to_a_topic_are_read_without_a_restart(
        Kafka,
        sqlite_url(dir.path(), "grow").unwrap(),
    )
    .await;
}

/// The same on Kafka's next consumer group protocol (KIP-848, `group.protocol=consumer`):
/// the brokers assign, and the members claim and hand over as on the classic one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_share_the_partitions_and_hand_them_over_on_kafka_with_kip_848() {
    let dir = tempfile::tempdir().unwrap();
    group::members_share_the_partitions_and_hand_them_over_with(
        Kafka,
        sqlite_url(dir.path(), "kip848").unwrap(),
        &[("group.protocol", "consumer")],
    )
    .await;
}
