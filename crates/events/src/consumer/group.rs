//! Group membership: the client context of every weft consumer. It turns librdkafka's
//! rebalance callbacks into [`Change`]s for the run loop, and publishes consumer lag.
//!
//! The callback does not assign anything itself. librdkafka waits for the application
//! to call `incremental_assign`, so the run loop can first claim the partitions in the
//! database and put the stored offsets into the assignment (seeking right after an
//! assignment fails in librdkafka). Revocations, too, are left to the run loop, which
//! takes them only between batches: the batch of a revoked partition has settled (or
//! rolled back) before the partition is released. A *lost* assignment (the session
//! expired) is released at once, without waiting for anything; the database's fence
//! ([`super::claims`]) rolls back whatever the member still tries to commit.
//!
//! While the consumer closes, the callback releases and assigns directly, as
//! librdkafka's default does, since no batch is in flight then.
//!
//! Lag is the partition's high watermark (from librdkafka's statistics) minus the
//! next offset this member will apply — the offsets live in the service database, not
//! in Kafka, so librdkafka's own `consumer_lag` would know nothing of them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext, RebalanceProtocol};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Statistics, TopicPartitionList};
use tokio::sync::mpsc;

use super::claims::Partition;

/// A change of this member's assignment, for the run loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The group gave this member these partitions: claim them, then assign them at
    /// their stored offsets.
    Assign(Vec<Partition>),
    /// The group takes these back: settle, then release them.
    Revoke(Vec<Partition>),
    /// The member lost these (its session expired); already released.
    Lost(Vec<Partition>),
}

/// Whether a member has taken up an assignment from its group (its first, or the one
/// after it lost everything): a readiness probe, so that a service reports ready only
/// once its consumer has begun where it should and holds its share.
#[derive(Clone, Default)]
pub struct Membership(Arc<AtomicBool>);

impl Membership {
    /// Whether the member holds an assignment now.
    pub fn joined(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    pub(super) fn set(&self, joined: bool) {
        self.0.store(joined, Ordering::SeqCst);
    }

    /// A probe for [`weft_kit::readiness`]: fails until the member has joined.
    pub fn probe(
        &self,
    ) -> impl Fn() -> std::future::Ready<Result<(), String>> + Send + Sync + 'static {
        let me = self.clone();
        move || {
            std::future::ready(if me.joined() {
                Ok(())
            } else {
                Err("the consumer has not taken up its partitions from its group yet".into())
            })
        }
    }
}

/// The next offset to apply of each partition this member holds (for lag).
pub type Positions = Arc<Mutex<HashMap<Partition, i64>>>;

/// The client context of a weft consumer (see the module docs).
pub struct GroupContext {
    group: String,
    prefix: String,
    changes: mpsc::UnboundedSender<Change>,
    closing: AtomicBool,
    positions: Positions,
}

impl GroupContext {
    /// The context of `group`'s consumer, whose topics carry `prefix` on the cluster;
    /// changes go to `changes`.
    pub fn new(
        group: &str,
        prefix: &str,
        changes: mpsc::UnboundedSender<Change>,
        positions: Positions,
    ) -> Self {
        Self {
            group: group.to_owned(),
            prefix: prefix.to_owned(),
            changes,
            closing: AtomicBool::new(false),
            positions,
        }
    }

    /// From now on the callback assigns and releases by itself (the consumer is
    /// leaving its group).
    pub fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
    }

    fn partitions(&self, tpl: &TopicPartitionList) -> Vec<Partition> {
        tpl.elements()
            .iter()
            .map(|e| {
                let topic = e.topic();
                (
                    topic.strip_prefix(&self.prefix).unwrap_or(topic).to_owned(),
                    e.partition(),
                )
            })
            .collect()
    }

    fn positions(&self) -> std::sync::MutexGuard<'_, HashMap<Partition, i64>> {
        self.positions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Adds `tpl` to `consumer`'s assignment, by the protocol in use.
pub fn assign<C: rdkafka::consumer::Consumer<X>, X: ConsumerContext>(
    consumer: &C,
    tpl: &TopicPartitionList,
) -> rdkafka::error::KafkaResult<()> {
    match consumer.rebalance_protocol() {
        RebalanceProtocol::Cooperative => consumer.incremental_assign(tpl),
        _ => consumer.assign(tpl),
    }
}

/// Takes `tpl` out of `consumer`'s assignment, by the protocol in use.
pub fn release<C: rdkafka::consumer::Consumer<X>, X: ConsumerContext>(
    consumer: &C,
    tpl: &TopicPartitionList,
) -> rdkafka::error::KafkaResult<()> {
    match consumer.rebalance_protocol() {
        RebalanceProtocol::Cooperative => consumer.incremental_unassign(tpl),
        _ => consumer.unassign(),
    }
}

impl ClientContext for GroupContext {
    fn stats(&self, statistics: Statistics) {
        let positions = self.positions();
        for (topic, t) in statistics.topics {
            let name = topic.strip_prefix(&self.prefix).unwrap_or(&topic);
            for (partition, p) in t.partitions {
                let Some(next) = positions.get(&(name.to_owned(), partition)) else {
                    continue;
                };
                if partition >= 0 && p.hi_offset >= 0 {
                    metrics::gauge!(
                        "consumer_lag",
                        "group" => self.group.clone(),
                        "topic" => name.to_owned(),
                        "partition" => partition.to_string()
                    )
                    .set((p.hi_offset - next).max(0) as f64);
                }
            }
        }
    }
}

impl ConsumerContext for GroupContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let partitions = self.partitions(tpl);
        let closing = self.closing.load(Ordering::SeqCst);
        let done = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if closing || self.changes.send(Change::Assign(partitions)).is_err() {
                    assign(consumer, tpl)
                } else {
                    Ok(())
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let lost = consumer.assignment_lost();
                if lost {
                    tracing::warn!(group = %self.group, ?partitions, "the group's session expired: partitions lost, released without settling");
                    for p in &partitions {
                        self.positions().remove(p);
                    }
                    let _ = self.changes.send(Change::Lost(partitions));
                    release(consumer, tpl)
                } else if closing || self.changes.send(Change::Revoke(partitions)).is_err() {
                    release(consumer, tpl)
                } else {
                    Ok(())
                }
            }
            other => {
                tracing::warn!(group = %self.group, error = ?other, "rebalance failed");
                Ok(())
            }
        };
        if let Err(e) = done {
            tracing::warn!(group = %self.group, error = %e, "changing the assignment failed");
        }
    }
}
