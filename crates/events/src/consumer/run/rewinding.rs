//! Rewinds asked of this member ([`crate::consumer::Rewinder`]). One replay runs in a
//! group at a time, under the group's rebuild lease: a member asked while a replay
//! runs (here or, by the lease, anywhere) answers that it is busy. The member that
//! takes a rewind resets the projection, which releases every claim of the group,
//! follows the replay at each look at its claims, renewing the lease meanwhile, and
//! answers once the group caught up, after giving the lease back.

use std::time::Duration;

use crate::consumer::Consumer;
use crate::consumer::replay::{Progress, Replay, RewindError, RewindReply, rebuild_lease};
use crate::lease::Lease;

/// How long a rebuild lease outlives the last renewal of a replica that died during
/// the replay (renewed at every look while the replay runs).
const REBUILD_LEASE_TTL: Duration = Duration::from_secs(30);

/// The replay this member runs, if any, and the group's rebuild lease.
pub(super) struct Rewinding {
    replay: Option<Replay>,
    rebuild: Lease,
}

impl Rewinding {
    /// Gives the rebuild lease back when the member stops during a replay: the group
    /// goes on replaying; a rewind may be asked of another member.
    pub(super) async fn stop(&mut self) {
        if self.replay.is_some() {
            self.rebuild.release().await;
        }
    }
}

impl Consumer {
    /// No replay yet, and this member's hold on the group's rebuild lease.
    pub(super) fn rewinding(&self) -> Rewinding {
        Rewinding {
            replay: None,
            rebuild: Lease::new(
                self.db.clone(),
                &rebuild_lease(&self.group),
                &self.replica,
                REBUILD_LEASE_TTL,
            ),
        }
    }

    /// Takes the rewind `reply` waits for: refused as busy while a replay runs, here
    /// or under another member's lease; otherwise the replay starts, or its failure
    /// is answered at once. `true` unless it was refused: the reset released the
    /// claims, which the member then looks at.
    pub(super) async fn take_rewind(
        &self,
        rewinding: &mut Rewinding,
        reply: RewindReply,
        topics: &[String],
    ) -> bool {
        if rewinding.replay.is_some() {
            let _ = reply.send(Err(RewindError::Busy {
                group: self.group.clone(),
                holder: self.replica.clone(),
            }));
            return false;
        }
        match rewinding.rebuild.ensure().await {
            Ok(Some(_)) => {}
            Ok(None) => {
                let holder = rewinding
                    .rebuild
                    .current()
                    .await
                    .ok()
                    .flatten()
                    .map_or_else(|| "another replica".to_owned(), |h| h.holder);
                let _ = reply.send(Err(RewindError::Busy {
                    group: self.group.clone(),
                    holder,
                }));
                return false;
            }
            Err(e) => {
                let _ = reply.send(Err(RewindError::Failed(format!(
                    "taking the rebuild lease: {e}"
                ))));
                return false;
            }
        }
        let started = Replay::start(
            &self.db,
            &self.kafka,
            &self.group,
            topics,
            self.reset.as_ref(),
            reply,
        )
        .await;
        match started {
            Ok(r) => rewinding.replay = Some(r),
            Err(failed) => {
                rewinding.rebuild.release().await;
                failed.send();
            }
        }
        true
    }

    /// Looks at the replay this member runs, if any: renews the lease while it runs,
    /// answers once it finished.
    pub(super) async fn follow_replay(&self, rewinding: &mut Rewinding) {
        let Some(r) = rewinding.replay.take() else {
            return;
        };
        match r.progress(&self.db, &self.group).await {
            Progress::Running(r) => {
                rewinding.replay = Some(r);
                // Renewed while the replay runs; a failed renewal is retried at the
                // next look.
                let _ = rewinding.rebuild.ensure().await;
            }
            Progress::Finished(answer) => {
                // The lease first: a rewind asked the moment this one is answered
                // finds it free.
                rewinding.rebuild.release().await;
                answer.send();
            }
        }
    }
}
