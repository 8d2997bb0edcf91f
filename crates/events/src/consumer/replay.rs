//! Rewinds: a projection dropped and its topics replayed from the beginning, by the
//! whole consumer group.
//!
//! The replica asked ([`Rewinder::rewind`]) drops the projection, forgets the group's
//! inbox and offsets and releases every claim of the group, in one transaction. Each
//! member — this one at once, the others at their next look at the claims — claims
//! its partitions again and reads them from the first record. The replica asked
//! answers once the group's stored offsets have reached the ends the topics had when
//! the rewind began, with the number of events applied since. One rewind of a group
//! runs at a time: the replica asked holds the group's rebuild lease until it
//! answers, and a rewind asked of any member meanwhile is refused
//! ([`RewindError::Busy`]).

use std::collections::HashMap;
use std::time::Instant;

use sqlx::Row as _;
use tokio::sync::{mpsc, oneshot};

use super::claims::{self, Partition};
use super::{Reset, offsets};
use crate::db::Database;
use crate::kafka::KafkaArgs;

/// The channel a rewind's result comes back on.
pub type RewindReply = oneshot::Sender<Result<u64, RewindError>>;

/// Why a rewind did not happen or did not finish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewindError {
    /// The consumer is not running (stopped, or stopped during the replay).
    #[error("the consumer is not running")]
    NotRunning,
    /// Another rewind of the group is under way: one at a time per group, under the
    /// group's `rebuild:<group>` lease.
    #[error(
        "a rebuild of {group} is already under way on {holder}; try again once it has finished"
    )]
    Busy {
        /// The consumer group.
        group: String,
        /// The replica running it.
        holder: String,
    },
    /// Reading the topics or resetting the projection failed.
    #[error("{0}")]
    Failed(String),
}

/// The lease that lets one rewind of `group` run at a time.
pub fn rebuild_lease(group: &str) -> String {
    format!("rebuild:{group}")
}

/// Asks a consumer to start over: drop the projection (its [`Reset`]), replay every
/// topic from the beginning across the whole group, and report how many events were
/// applied once the group has caught up with the ends of the topics as they were when
/// the rewind began.
#[derive(Clone)]
pub struct Rewinder(pub(super) mpsc::Sender<RewindReply>);

impl Rewinder {
    /// Rewinds and waits for the replay; `Err` when the consumer is not running or
    /// the reset failed.
    pub async fn rewind(&self) -> Result<u64, RewindError> {
        let (tx, rx) = oneshot::channel();
        self.0.send(tx).await.map_err(|_| RewindError::NotRunning)?;
        rx.await.map_err(|_| RewindError::NotRunning)?
    }
}

/// The answer to a rewind, held until the caller has given the rebuild lease back:
/// whoever asks again the moment it is answered must find the lease free.
pub struct Answer {
    reply: RewindReply,
    result: Result<u64, RewindError>,
}

impl Answer {
    /// Sends the answer to whoever asked for the rewind.
    pub fn send(self) {
        let _ = self.reply.send(self.result);
    }

    fn failed(reply: RewindReply, why: String) -> Self {
        Self {
            reply,
            result: Err(RewindError::Failed(why)),
        }
    }
}

/// Where a replay stands after a look at its progress.
pub enum Progress {
    /// Partitions are still short of their targets.
    Running(Replay),
    /// Every partition reached its target: the answer, to send once the lease is
    /// given back.
    Finished(Answer),
}

/// A replay in progress: where each partition must get to, and who waits for the
/// count.
pub struct Replay {
    /// First offset and end of each partition when the rewind began.
    targets: HashMap<Partition, (i64, i64)>,
    started: Instant,
    reply: RewindReply,
}

impl Replay {
    /// Drops the projection and forgets the group's inbox, offsets and claims in one
    /// transaction; the failure's answer (unsent) when that fails.
    pub async fn start(
        db: &Database,
        kafka: &KafkaArgs,
        group: &str,
        topics: &[String],
        reset: &dyn Reset,
        reply: RewindReply,
    ) -> Result<Self, Answer> {
        let marks = match offsets::watermarks(kafka, topics).await {
            Ok(m) => m,
            Err(e) => {
                return Err(Answer::failed(
                    reply,
                    format!("reading the topics' ends: {e}"),
                ));
            }
        };
        let reset_result: Result<(), sqlx::Error> = async {
            let mut tx = db.begin().await?;
            reset.reset(&mut tx).await?;
            offsets::forget(&mut tx, group).await?;
            claims::release_all(&mut tx, group).await?;
            tx.commit().await
        }
        .await;
        if let Err(e) = reset_result {
            return Err(Answer::failed(
                reply,
                format!("resetting the projection: {e}"),
            ));
        }
        tracing::info!(
            group,
            "projection reset; the group replays from the beginning"
        );
        Ok(Self {
            targets: marks
                .into_iter()
                .map(|m| ((m.topic, m.partition), (m.low, m.high)))
                .collect(),
            started: Instant::now(),
            reply,
        })
    }

    /// Finished, with the count of events applied, once the group's stored offsets
    /// reached the targets; running otherwise.
    pub async fn progress(self, db: &Database, group: &str) -> Progress {
        let caught_up = match offsets::stored(db, group).await {
            Ok(stored) => self.targets.iter().all(|(tp, (low, high))| {
                stored.get(tp).copied().unwrap_or(*low).max(*low) >= *high
            }),
            Err(e) => {
                tracing::warn!(error = %e, "reading the replay's progress failed");
                false
            }
        };
        if !caught_up {
            return Progress::Running(self);
        }
        let applied = sqlx::query("SELECT COUNT(*) FROM weft_inbox WHERE consumer_group = $1")
            .bind(group.to_owned())
            .fetch_one(db.pool())
            .await
            .and_then(|row| row.try_get::<i64, _>(0));
        match applied {
            Ok(n) => {
                tracing::info!(group, replayed = n, elapsed = ?self.started.elapsed(), "replay caught up");
                Progress::Finished(Answer {
                    reply: self.reply,
                    result: Ok(u64::try_from(n).unwrap_or(0)),
                })
            }
            Err(e) => {
                tracing::warn!(error = %e, "counting the replayed events failed");
                Progress::Running(self)
            }
        }
    }
}
