//! The backends a backbone scenario runs on: a broker (weft-broker or the Apache
//! Kafka cluster) and a kind of database (SQLite files in the test's own directory,
//! or fresh databases on the test PostgreSQL server). [`backbone_tests!`] makes one
//! test per scenario for a backend, under that backend's name for the test.

use tempfile::TempDir;
use weft_testkit::{BrokerKind, Db};

/// A broker and a source of fresh databases for one test; its SQLite files go when
/// it is dropped.
pub struct TestBackend {
    /// The broker the scenario starts.
    pub broker: BrokerKind,
    db: Db,
    dir: TempDir,
}

impl TestBackend {
    /// weft-broker and SQLite.
    pub fn sqlite() -> Self {
        Self::new(BrokerKind::Embedded, Db::Sqlite)
    }

    /// weft-broker and PostgreSQL (the server named by `WEFT_TEST_DATABASE_URL`).
    pub fn postgres() -> Self {
        Self::new(BrokerKind::Embedded, Db::Postgres)
    }

    /// A namespace of the Apache Kafka cluster (`WEFT_TEST_KAFKA`) and SQLite.
    pub fn kafka() -> Self {
        Self::new(BrokerKind::Kafka, Db::Sqlite)
    }

    fn new(broker: BrokerKind, db: Db) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self { broker, db, dir }
    }

    /// The URL of a database for `name`: `<dir>/<name>.db` on SQLite (the same name,
    /// the same file), a new empty database on each call on PostgreSQL.
    pub async fn database(&self, name: &str) -> String {
        self.db.url(self.dir.path(), name).await
    }
}

/// The tests of every scenario in `common/` on one backend (`sqlite`, `postgres` or
/// `kafka`, the [`TestBackend`] constructor of the same name). Each row names a scenario
/// and its test on SQLite, on PostgreSQL and on Kafka, in that order; `-` where it
/// does not run there (retention and the relay's lease are the database's, not the
/// broker's).
macro_rules! backbone_tests {
    ($on:ident) => {
        $crate::common::backbone_tests! { @rows $on
            scenario::outbox_to_consumer:
                outbox_to_consumer_on_sqlite,
                outbox_to_consumer_on_postgres,
                outbox_to_consumer_on_kafka;
            scenario::relay_killed_before_publish:
                relay_killed_before_publish_publishes_after_restart,
                relay_killed_before_publish_publishes_after_restart_on_postgres,
                relay_killed_before_publish_publishes_after_restart_on_kafka;
            batching::a_mixed_batch_settles_every_record_once:
                a_mixed_batch_settles_every_record_once_on_sqlite,
                a_mixed_batch_settles_every_record_once_on_postgres,
                a_mixed_batch_settles_every_record_once_on_kafka;
            batching::kill_9_mid_batch_loses_and_doubles_nothing:
                kill_9_mid_batch_loses_and_doubles_nothing_on_sqlite,
                kill_9_mid_batch_loses_and_doubles_nothing_on_postgres,
                kill_9_mid_batch_loses_and_doubles_nothing_on_kafka;
            poison::no_record_stops_the_consumer:
                no_record_stops_the_consumer_on_sqlite,
                no_record_stops_the_consumer_on_postgres,
                no_record_stops_the_consumer_on_kafka;
            stale::stale_offsets_stop_the_consumer_until_reset:
                stale_offsets_stop_the_consumer_until_reset_on_sqlite,
                stale_offsets_stop_the_consumer_until_reset_on_postgres,
                stale_offsets_stop_the_consumer_until_reset_on_kafka;
            pruning::old_rows_are_pruned_and_recent_ones_kept:
                old_rows_are_pruned_and_recent_ones_kept_on_sqlite,
                old_rows_are_pruned_and_recent_ones_kept_on_postgres,
                -;
            pruning::one_replica_prunes_at_a_time:
                one_replica_prunes_at_a_time_on_sqlite,
                one_replica_prunes_at_a_time_on_postgres,
                -;
            handover::one_relay_publishes_at_a_time_and_another_takes_over:
                one_relay_publishes_at_a_time_and_another_takes_over_on_sqlite,
                one_relay_publishes_at_a_time_and_another_takes_over_on_postgres,
                -;
            group::members_share_the_partitions_and_hand_them_over:
                members_share_the_partitions_and_hand_them_over_on_sqlite,
                members_share_the_partitions_and_hand_them_over_on_postgres,
                members_share_the_partitions_and_hand_them_over_on_kafka;
            group::a_member_whose_partitions_were_claimed_commits_nothing:
                a_member_whose_partitions_were_claimed_commits_nothing_on_sqlite,
                a_member_whose_partitions_were_claimed_commits_nothing_on_postgres,
                a_member_whose_partitions_were_claimed_commits_nothing_on_kafka;
            group::a_group_begins_at_its_stored_offsets_or_where_told:
                a_group_begins_at_its_stored_offsets_or_where_told_on_sqlite,
                a_group_begins_at_its_stored_offsets_or_where_told_on_postgres,
                a_group_begins_at_its_stored_offsets_or_where_told_on_kafka;
            group::a_member_of_another_deployment_is_refused:
                a_member_of_another_deployment_is_refused_on_sqlite,
                a_member_of_another_deployment_is_refused_on_postgres,
                a_member_of_another_deployment_is_refused_on_kafka;
            group::a_rewind_replays_the_whole_group_one_at_a_time:
                a_rewind_replays_the_whole_group_one_at_a_time_on_sqlite,
                a_rewind_replays_the_whole_group_one_at_a_time_on_postgres,
                a_rewind_replays_the_whole_group_one_at_a_time_on_kafka;
            group::partitions_added_to_a_topic_are_read_without_a_restart:
                partitions_added_to_a_topic_are_read_without_a_restart_on_sqlite,
                partitions_added_to_a_topic_are_read_without_a_restart_on_postgres,
                partitions_added_to_a_topic_are_read_without_a_restart_on_kafka;
        }
    };
    (@rows $on:ident $($module:ident::$scenario:ident: $sqlite:tt, $postgres:tt, $kafka:tt;)*) => {
        $($crate::common::backbone_tests! { @pick $on $module::$scenario, $sqlite, $postgres, $kafka })*
    };
    (@pick sqlite $module:ident::$scenario:ident, $name:tt, $postgres:tt, $kafka:tt) => {
        $crate::common::backbone_tests! { @test sqlite $module::$scenario, $name }
    };
    (@pick postgres $module:ident::$scenario:ident, $sqlite:tt, $name:tt, $kafka:tt) => {
        $crate::common::backbone_tests! { @test postgres $module::$scenario, $name }
    };
    (@pick kafka $module:ident::$scenario:ident, $sqlite:tt, $postgres:tt, $name:tt) => {
        $crate::common::backbone_tests! { @test kafka $module::$scenario, $name }
    };
    (@test $on:ident $module:ident::$scenario:ident, -) => {};
    (@test $on:ident $module:ident::$scenario:ident, $name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            $crate::common::$module::$scenario(&$crate::common::TestBackend::$on()).await;
        }
    };
}

pub(crate) use backbone_tests;
