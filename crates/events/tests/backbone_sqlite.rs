//! The event backbone on SQLite, through the real broker and a consumer process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/batching.rs"]
mod batching;
mod common;
#[path = "common/poison.rs"]
mod poison;
#[path = "common/pruning.rs"]
mod pruning;
#[path = "common/scenario.rs"]
mod scenario;
#[path = "common/stale.rs"]
mod stale;

use std::time::Duration;

use common::*;
use weft_events::db::sqlite_url;
use weft_events::kafka::KafkaArgs;
use weft_events::{Database, topics};
use weft_testkit::Broker;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_to_consumer_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    scenario::outbox_to_consumer(
        sqlite_url(dir.path(), "publisher").unwrap(),
        sqlite_url(dir.path(), "consumer").unwrap(),
    )
    .await;
}

/// kill -9 of the relay between the commit and the publish loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_killed_before_publish_publishes_after_restart() {
    let broker = Broker::start();
    let kafka = KafkaArgs::new(broker.bootstrap());
    topics::provision(&kafka, &topics::all_topics())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path(), "user").unwrap();
    let db = Database::connect(&url).await.unwrap();

    let event = signup("crash-1");
    let id = event.metadata.clone().unwrap().event_id;
    enqueue(&db, &[event]).await;

    let mut relay = Probe::spawn(&[
        "--db",
        &url,
        "--brokers",
        &broker.bootstrap(),
        "relay",
        "--hang-before-publish",
    ]);
    relay.wait_line(
        "the relay to reach the fault point",
        Duration::from_secs(30),
        |l| l.contains("hanging before publish"),
    );
    relay.kill9();
    assert_eq!(
        unsent(&db).await,
        1,
        "the row is still unsent after the crash"
    );

    let _relay = Probe::spawn(&["--db", &url, "--brokers", &broker.bootstrap(), "relay"]);
    let seen = read_topic_until(
        &broker.bootstrap(),
        "user-events",
        Duration::from_secs(60),
        |seen| seen.iter().any(|m| header(m, "ce_id") == Some(id.as_str())),
    );
    let record = seen
        .iter()
        .find(|m| header(m, "ce_id") == Some(id.as_str()))
        .unwrap();
    assert_eq!(header(record, "ce_type"), Some("weft.user.v1.UserSignedUp"));
    assert_eq!(header(record, "ce_subject"), Some("crash-1"));
    assert_eq!(header(record, "content-type"), Some("application/protobuf"));
    weft_testkit::eventually(
        "the row to be marked sent",
        Duration::from_secs(30),
        || async { (unsent(&db).await == 0).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_batch_settles_every_record_once_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    batching::a_mixed_batch_settles_every_record_once(sqlite_url(dir.path(), "c").unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_batch_loses_and_doubles_nothing_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    batching::kill_9_mid_batch_loses_and_doubles_nothing(sqlite_url(dir.path(), "c").unwrap())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_record_stops_the_consumer_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    poison::no_record_stops_the_consumer(sqlite_url(dir.path(), "poison").unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_offsets_stop_the_consumer_until_reset_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    stale::stale_offsets_stop_the_consumer_until_reset(sqlite_url(dir.path(), "stale").unwrap())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_rows_are_pruned_and_recent_ones_kept_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    pruning::old_rows_are_pruned_and_recent_ones_kept(sqlite_url(dir.path(), "prune").unwrap())
        .await;
}
