//! The event backbone on Apache Kafka: the scenarios of `common/` that involve the
//! broker, each a test named `…_on_kafka`, on a namespace of their own of the 3-node
//! KRaft cluster named by `WEFT_TEST_KAFKA` (topics with replication factor 3 and
//! `min.insync.replicas` 2), with SQLite databases.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestBackend, group};

common::backbone_tests!(kafka);

/// The same on Kafka's next consumer group protocol (KIP-848, `group.protocol=consumer`):
/// the brokers assign, and the members claim and hand over as on the classic one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_share_the_partitions_and_hand_them_over_on_kafka_with_kip_848() {
    group::members_share_the_partitions_and_hand_them_over_with(
        &TestBackend::kafka(),
        &[("group.protocol", "consumer")],
    )
    .await;
}
