//! Which partitions a member works on. Kafka's coordinator assigns and revokes them
//! (a [`Change`], taken between batches); the member claims what it is assigned in
//! the database, works out where each starts from the offsets stored there, and seeks
//! to them. A periodic look at the claims finds what others changed meanwhile: a
//! partition a rewind released is claimed again and read from its first record, one
//! another member claimed is left to it.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::TopicPartitionList;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::util::Timeout;
use tokio_util::sync::CancellationToken;

use super::held::Held;
use crate::consumer::claims::{self, Partition};
use crate::consumer::group::{self, Change, GroupContext};
use crate::consumer::offsets::{self, Marks};
use crate::consumer::{Consumer, retry};
use crate::error::EventsError;

/// The claimed epoch and the start of each partition a claim took.
type Taken = (HashMap<Partition, i64>, HashMap<Partition, i64>);

impl Consumer {
    /// Takes a change of this member's assignment (see [`Change`]).
    pub(super) async fn change(
        &self,
        consumer: &StreamConsumer<GroupContext>,
        held: &mut Held,
        change: Change,
        topics: &[String],
        shutdown: &CancellationToken,
    ) -> Result<(), EventsError> {
        match change {
            Change::Assign(partitions) => {
                let Some(starts) = self.claim(&partitions, topics, held, shutdown).await? else {
                    return Ok(());
                };
                tracing::info!(group = %self.group, replica = %self.replica, assigned = ?starts, "partitions assigned");
                metrics::counter!("consumer_rebalances_total", "group" => self.group.clone(), "change" => "assigned")
                    .increment(1);
                group::assign(consumer, &self.cluster_list(&starts)?)?;
                self.membership.set(true);
            }
            Change::Revoke(partitions) => {
                for p in &partitions {
                    held.drop_partition(p);
                }
                tracing::info!(group = %self.group, replica = %self.replica, revoked = ?partitions, "partitions revoked after the batch settled");
                metrics::counter!("consumer_rebalances_total", "group" => self.group.clone(), "change" => "revoked")
                    .increment(1);
                let list = partitions
                    .iter()
                    .map(|p| (p.clone(), None))
                    .collect::<Vec<_>>();
                group::release(consumer, &self.cluster_list(&list)?)?;
            }
            Change::Lost(partitions) => {
                for p in &partitions {
                    held.drop_partition(p);
                }
                metrics::counter!("consumer_rebalances_total", "group" => self.group.clone(), "change" => "lost")
                    .increment(1);
                if held.epochs.is_empty() {
                    self.membership.set(false);
                }
            }
        }
        Ok(())
    }

    /// Claims `partitions` and works out where each starts (retrying while the
    /// database or the brokers are away); `None` on shutdown. Records them as held.
    async fn claim(
        &self,
        partitions: &[Partition],
        topics: &[String],
        held: &mut Held,
        shutdown: &CancellationToken,
    ) -> Result<Option<Vec<(Partition, Option<i64>)>>, EventsError> {
        let mut attempt = 0u32;
        loop {
            if partitions.is_empty() {
                return Ok(Some(Vec::new()));
            }
            match self.claim_once(partitions, topics).await {
                Ok((epochs, next)) => {
                    held.epochs.extend(epochs);
                    held.positions().extend(next.clone());
                    let mut out: Vec<(Partition, Option<i64>)> =
                        next.into_iter().map(|(p, o)| (p, Some(o))).collect();
                    out.sort();
                    return Ok(Some(out));
                }
                Err(e) if e.needs_the_operator() => {
                    tracing::error!(error = %e, "stored offsets cannot be right; stopping");
                    return Err(e);
                }
                Err(e) => {
                    attempt = attempt.saturating_add(1);
                    tracing::warn!(group = %self.group, error = %e, attempt, "cannot take up the assigned partitions yet; retrying");
                    if !retry::pause(attempt, shutdown).await {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// One try of [`Self::claim`]: the claim, then where each partition starts, its
    /// stored offset stored again when the operator's `--reset-offsets` moved it.
    async fn claim_once(
        &self,
        partitions: &[Partition],
        topics: &[String],
    ) -> Result<Taken, EventsError> {
        let claimed = claims::claim(&self.db, &self.group, &self.replica, partitions).await?;
        let marks: Vec<Marks> = offsets::watermarks(&self.kafka, topics)
            .await?
            .into_iter()
            .filter(|m| partitions.contains(&(m.topic.clone(), m.partition)))
            .collect();
        if marks.len() < partitions.len() {
            return Err(EventsError::Delivery(
                "the brokers do not list every assigned partition yet".into(),
            ));
        }
        let stored = claimed
            .stored
            .iter()
            .filter(|(p, _)| partitions.contains(p))
            .map(|(p, o)| (p.clone(), *o))
            .collect();
        let starts = offsets::assignment(&self.group, &marks, &stored, self.stale_offsets)?;
        if !starts.resets.is_empty() {
            let mut tx = self.db.begin().await?;
            offsets::overwrite(&mut tx, &self.group, &starts.resets).await?;
            tx.commit().await?;
        }
        Ok((claimed.epochs, starts.next))
    }

    /// Compares this member's claims with the database: a partition released by a
    /// rewind is claimed again and read from its first record; one another member
    /// claimed is dropped (its records are left to that member).
    pub(super) async fn look_at_claims(
        &self,
        consumer: &StreamConsumer<GroupContext>,
        held: &mut Held,
        topics: &[String],
    ) {
        if held.epochs.is_empty() {
            return;
        }
        let Some(released) = self.released_claims(held).await else {
            return;
        };
        if released.is_empty() {
            return;
        }
        for p in &released {
            held.drop_partition(p);
        }
        self.claim_again(consumer, held, &released, topics).await;
    }

    /// The partitions of this member that a rewind released; those another member
    /// claimed are dropped here. `None` when the claims cannot be read.
    async fn released_claims(&self, held: &mut Held) -> Option<Vec<Partition>> {
        let holders = match claims::holders(&self.db, &self.group).await {
            Ok(h) => h,
            Err(e) => {
                tracing::debug!(error = %e, "looking at the claims failed");
                return None;
            }
        };
        let mut released = Vec::new();
        for (p, epoch) in held.epochs.clone() {
            match holders.get(&p) {
                Some((e, _)) if *e == epoch => {}
                Some((_, holder)) if !holder.is_empty() => {
                    tracing::warn!(group = %self.group, partition = ?p, %holder, "another member claimed this partition; leaving it");
                    held.drop_partition(&p);
                }
                _ => released.push(p),
            }
        }
        Some(released)
    }

    /// Claims the `released` partitions again and seeks each back to its start, to be
    /// replayed up to the end it has now.
    async fn claim_again(
        &self,
        consumer: &StreamConsumer<GroupContext>,
        held: &mut Held,
        released: &[Partition],
        topics: &[String],
    ) {
        let unbounded = CancellationToken::new();
        let claimed = async {
            let marks = offsets::watermarks(&self.kafka, topics).await?;
            let starts = self.claim(released, topics, held, &unbounded);
            let starts = tokio::time::timeout(Duration::from_secs(30), starts)
                .await
                .map_err(|_| EventsError::Delivery("claiming again timed out".into()))??;
            Ok::<_, EventsError>((marks, starts))
        }
        .await;
        match claimed {
            Ok((marks, Some(starts))) => {
                for m in marks {
                    let p = (m.topic, m.partition);
                    if released.contains(&p) {
                        held.replay_until.insert(p, m.high);
                    }
                }
                tracing::info!(group = %self.group, partitions = ?starts, "partitions released by a rewind; reading them again");
                self.seek_rewound(consumer, &starts);
            }
            Ok((_, None)) => {}
            Err(e) => {
                tracing::warn!(group = %self.group, error = %e, "claiming the released partitions failed; trying again");
            }
        }
    }

    /// Seeks the partitions claimed again after a rewind to where they start.
    fn seek_rewound(
        &self,
        consumer: &StreamConsumer<GroupContext>,
        starts: &[(Partition, Option<i64>)],
    ) {
        match self.cluster_list(starts) {
            Ok(tpl) => {
                if let Err(e) = consumer.seek_partitions(tpl, Timeout::After(Duration::ZERO)) {
                    tracing::warn!(error = %e, "seeking the rewound partitions failed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "seeking the rewound partitions failed"),
        }
    }

    /// `partitions` on the cluster, each at its offset when it has one.
    fn cluster_list(
        &self,
        partitions: &[(Partition, Option<i64>)],
    ) -> Result<TopicPartitionList, EventsError> {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in partitions {
            let cluster = self.kafka.topic(topic);
            match offset {
                Some(o) => {
                    tpl.add_partition_offset(&cluster, *partition, rdkafka::Offset::Offset(*o))?;
                }
                None => {
                    tpl.add_partition(&cluster, *partition);
                }
            }
        }
        Ok(tpl)
    }
}
