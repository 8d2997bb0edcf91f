//! The event backbone on SQLite, through the real broker and a consumer process.
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

use weft_events::db::sqlite_url;
use weft_testkit::BrokerKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_to_consumer_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    scenario::outbox_to_consumer(
        BrokerKind::Embedded,
        sqlite_url(dir.path(), "publisher").unwrap(),
        sqlite_url(dir.path(), "consumer").unwrap(),
    )
    .await;
}

/// kill -9 of the relay between the commit and the publish loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_killed_before_publish_publishes_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    scenario::relay_killed_before_publish(
        BrokerKind::Embedded,
        sqlite_url(dir.path(), "user").unwrap(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_batch_settles_every_record_once_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    batching::a_mixed_batch_settles_every_record_once(
        BrokerKind::Embedded,
        sqlite_url(dir.path(), "c").unwrap(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_batch_loses_and_doubles_nothing_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    batching::kill_9_mid_batch_loses_and_doubles_nothing(
        BrokerKind::Embedded,
        sqlite_url(dir.path(), "c").unwrap(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_record_stops_the_consumer_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    poison::no_record_stops_the_consumer(
        BrokerKind::Embedded,
        sqlite_url(dir.path(), "poison").unwrap(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_offsets_stop_the_consumer_until_reset_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    stale::stale_offsets_stop_the_consumer_until_reset(
        BrokerKind::Embedded,
        sqlite_url(dir.path(), "stale").unwrap(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_rows_are_pruned_and_recent_ones_kept_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    pruning::old_rows_are_pruned_and_recent_ones_kept(sqlite_url(dir.path(), "prune").unwrap())
        .await;
}

/// Two relays on one database: one publishes at a time and the other takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_relay_publishes_at_a_time_and_another_takes_over_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    handover::one_relay_publishes_at_a_time_and_another_takes_over(
        BrokerKind::Embedded,
        sqlite_url(dir.path(), "shared").unwrap(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_share_the_partitions_and_hand_them_over_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    group::members_share_the_partitions_and_hand_them_over(
        BrokerKind::Embedded,
        sqlite_url(dir.path(), "shared").unwrap(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_partitions_were_claimed_commits_nothing_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    group::a_member_whose_partitions_were_claimed_commits_nothing(
        BrokerKind::Embedded,
        sqlite_url(dir.path(), "fenced").unwrap(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_begins_at_its_stored_offsets_or_where_told_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    group::a_group_begins_at_its_stored_offsets_or_where_told(
        BrokerKind::Embedded,
        sqlite_url(dir.path(), "start").unwrap(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_of_another_deployment_is_refused_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    group::a_member_of_another_deployment_is_refused(
        BrokerKind::Embedded,
        sqlite_url(dir.path(), "a").unwrap(),
        sqlite_url(dir.path(), "b").unwrap(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewind_replays_the_whole_group_one_at_a_time_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    group::a_rewind_replays_the_whole_group_one_at_a_time(
        BrokerKind::Embedded,
        sqlite_url(dir.path(), "rewind").unwrap(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_prunes_at_a_time_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    pruning::one_replica_prunes_at_a_time(sqlite_url(dir.path(), "prune").unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_added_to_a_topic_are_read_without_a_restart_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    group::partitions_added_to_a_topic_are_read_without_a_restart(
        BrokerKind::Embedded,
        sqlite_url(dir.path(), "grow").unwrap(),
    )
    .await;
}
