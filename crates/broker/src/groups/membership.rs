//! The member requests of the group protocol: JoinGroup and SyncGroup, whose
//! responses are held until their round completes (as in Kafka), Heartbeat,
//! LeaveGroup, and whether a member may commit offsets.
//!
//! Each request is settled under the coordinator's lock; a held response is then
//! awaited with the lock released.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::code;
use super::coordinator::Coordinator;
use super::group::{Group, Member, State};
use super::reply::{Joined, Synced};
use crate::request::{JoinGroup, MemberRef, SyncGroup};
use crate::store::lock;

/// An answer given at once, or held until a round completes.
enum Answer<T> {
    Now(T),
    Held {
        rx: oneshot::Receiver<T>,
        /// How long to wait for the round.
        within: Duration,
        /// The answer when the held response is dropped (its member was removed).
        dropped: T,
        /// The answer when the round takes longer than `within`.
        late: T,
    },
}

impl<T> Answer<T> {
    async fn wait(self) -> T {
        match self {
            Self::Now(answer) => answer,
            Self::Held {
                rx,
                within,
                dropped,
                late,
            } => match tokio::time::timeout(within, rx).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(_)) => dropped,
                Err(_) => late,
            },
        }
    }
}

impl Coordinator {
    /// JoinGroup: answers when the round completes (or at once with an error or a
    /// member id to join with).
    pub async fn join(
        &self,
        req: JoinGroup,
        version: i16,
        client_id: &str,
        client_host: &str,
    ) -> Joined {
        self.enter_join(req, version, client_id, client_host)
            .wait()
            .await
    }

    /// Checks a join and enters it in its group's round.
    fn enter_join(
        &self,
        req: JoinGroup,
        version: i16,
        client_id: &str,
        client_host: &str,
    ) -> Answer<Joined> {
        let session = Duration::from_millis(req.session_timeout_ms.max(0) as u64);
        let rebalance = Duration::from_millis(req.rebalance_timeout_ms.max(0) as u64);
        let mut groups = lock(&self.groups);
        let now = Instant::now();
        if let Some(error) = self.join_refusal(&req, session) {
            return Answer::Now(Joined::error(error, &req.member_id));
        }
        let g = groups
            .entry(req.group_id.clone())
            .or_insert_with(Group::new);
        if !g.members.is_empty()
            && (g.protocol_type.as_deref() != Some(req.protocol_type.as_str())
                || !g.supports(&req.protocols))
        {
            return Answer::Now(Joined::error(
                code::INCONSISTENT_GROUP_PROTOCOL,
                &req.member_id,
            ));
        }
        let member_id = match g.admit(&req, version, client_id, now + session) {
            Ok(id) => id,
            Err((error, id)) => return Answer::Now(Joined::error(error, &id)),
        };
        let (tx, rx) = oneshot::channel();
        g.hold_join(Member {
            id: member_id.clone(),
            instance_id: req.group_instance_id,
            client_id: client_id.to_owned(),
            client_host: client_host.to_owned(),
            session_timeout: session,
            rebalance_timeout: rebalance,
            protocols: req.protocols,
            assignment: Bytes::new(),
            deadline: now + rebalance,
            join: Some(tx),
            sync: None,
        });
        g.protocol_type = Some(req.protocol_type);
        g.prepare_rebalance(now, self.config.initial_rebalance_delay);
        g.maybe_complete_join(now);
        Answer::Held {
            rx,
            within: rebalance + Duration::from_secs(5),
            dropped: Joined::error(code::UNKNOWN_MEMBER_ID, &member_id),
            late: Joined::error(code::REBALANCE_IN_PROGRESS, &member_id),
        }
    }

    /// Why a join is refused before its group is looked at, if it is.
    fn join_refusal(&self, req: &JoinGroup, session: Duration) -> Option<i16> {
        if req.group_id.is_empty() {
            Some(code::INVALID_GROUP_ID)
        } else if session < self.config.min_session_timeout
            || session > self.config.max_session_timeout
        {
            Some(code::INVALID_SESSION_TIMEOUT)
        } else if req.protocols.is_empty() || req.protocol_type.is_empty() {
            Some(code::INCONSISTENT_GROUP_PROTOCOL)
        } else {
            None
        }
    }

    /// SyncGroup: the leader hands out the assignment; the others wait for it.
    pub async fn sync(&self, req: SyncGroup) -> Synced {
        self.enter_sync(req).wait().await
    }

    /// Checks a sync; the leader's assignment is handed out at once, a follower's
    /// sync is held until it is.
    fn enter_sync(&self, req: SyncGroup) -> Answer<Synced> {
        let refuse = |error| Answer::Now(Synced::error(error));
        let mut groups = lock(&self.groups);
        let now = Instant::now();
        let Some(g) = groups.get_mut(&req.member.group_id) else {
            return refuse(code::UNKNOWN_MEMBER_ID);
        };
        if g.member(&req.member.member_id).is_none() {
            return refuse(code::UNKNOWN_MEMBER_ID);
        }
        if req.member.generation_id != g.generation {
            return refuse(code::ILLEGAL_GENERATION);
        }
        match g.state {
            State::Empty => return refuse(code::UNKNOWN_MEMBER_ID),
            State::PreparingRebalance => return refuse(code::REBALANCE_IN_PROGRESS),
            State::Stable => return Answer::Now(assigned(g.member(&req.member.member_id))),
            State::CompletingRebalance => {}
        }
        if g.leader.as_deref() == Some(req.member.member_id.as_str()) {
            g.assign(req.assignments, now);
            return Answer::Now(assigned(g.member(&req.member.member_id)));
        }
        let (tx, rx) = oneshot::channel();
        let Some(m) = g.member(&req.member.member_id) else {
            return refuse(code::UNKNOWN_MEMBER_ID);
        };
        m.sync = Some(tx);
        m.deadline = now + m.session_timeout;
        Answer::Held {
            rx,
            within: m.session_timeout,
            dropped: Synced::error(code::UNKNOWN_MEMBER_ID),
            late: Synced::error(code::REBALANCE_IN_PROGRESS),
        }
    }

    /// Heartbeat: keeps a member in the group and tells it about rebalances.
    pub fn heartbeat(&self, req: &MemberRef) -> i16 {
        let mut groups = lock(&self.groups);
        let Some(g) = groups.get_mut(&req.group_id) else {
            return code::UNKNOWN_MEMBER_ID;
        };
        let generation = g.generation;
        let state = g.state;
        let Some(m) = g.member(&req.member_id) else {
            return code::UNKNOWN_MEMBER_ID;
        };
        if req.generation_id != generation {
            return code::ILLEGAL_GENERATION;
        }
        m.deadline = Instant::now() + m.session_timeout;
        match state {
            State::PreparingRebalance => code::REBALANCE_IN_PROGRESS,
            State::Empty => code::UNKNOWN_MEMBER_ID,
            State::CompletingRebalance | State::Stable => code::NONE,
        }
    }

    /// LeaveGroup: the error for each (member id, instance id).
    pub fn leave(&self, group_id: &str, members: &[(String, Option<String>)]) -> Vec<i16> {
        let mut groups = lock(&self.groups);
        let Some(g) = groups.get_mut(group_id) else {
            return vec![code::UNKNOWN_MEMBER_ID; members.len()];
        };
        let now = Instant::now();
        members
            .iter()
            .map(|(id, instance)| {
                let found = g
                    .members
                    .iter()
                    .find(|m| {
                        (!id.is_empty() && m.id == *id)
                            || (id.is_empty() && instance.is_some() && m.instance_id == *instance)
                    })
                    .map(|m| m.id.clone());
                match found {
                    Some(found) => {
                        g.remove(&found, now, self.config.initial_rebalance_delay);
                        code::NONE
                    }
                    None => code::UNKNOWN_MEMBER_ID,
                }
            })
            .collect()
    }

    /// Whether `member` may commit offsets now: `NONE`, or the error to answer.
    /// Generation -1 with no member id is a commit from outside the group (a
    /// consumer that assigns partitions itself), allowed while the group is empty.
    pub fn may_commit(&self, member: &MemberRef) -> i16 {
        let mut groups = lock(&self.groups);
        let Some(g) = groups.get_mut(&member.group_id) else {
            return if member.generation_id < 0 && member.member_id.is_empty() {
                code::NONE
            } else {
                code::UNKNOWN_MEMBER_ID
            };
        };
        if member.generation_id < 0 && member.member_id.is_empty() {
            return if g.members.is_empty() {
                code::NONE
            } else {
                code::UNKNOWN_MEMBER_ID
            };
        }
        let generation = g.generation;
        let state = g.state;
        let Some(m) = g.member(&member.member_id) else {
            return code::UNKNOWN_MEMBER_ID;
        };
        if member.generation_id != generation {
            return code::ILLEGAL_GENERATION;
        }
        m.deadline = Instant::now() + m.session_timeout;
        if state == State::CompletingRebalance {
            return code::REBALANCE_IN_PROGRESS;
        }
        code::NONE
    }
}

/// A successful sync's answer: the member's assignment (nothing for no member).
fn assigned(member: Option<&mut Member>) -> Synced {
    Synced {
        error: code::NONE,
        assignment: member.map(|m| m.assignment.clone()).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::groups::coordinator::GroupConfig;

    fn join_req(group: &str, member: &str) -> JoinGroup {
        JoinGroup {
            group_id: group.into(),
            session_timeout_ms: 2000,
            rebalance_timeout_ms: 3000,
            member_id: member.into(),
            group_instance_id: None,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"sub"))],
        }
    }

    fn coordinator() -> Coordinator {
        Coordinator::new(GroupConfig {
            initial_rebalance_delay: Duration::ZERO,
            ..GroupConfig::default()
        })
    }

    async fn join_fully(c: &Coordinator, group: &str) -> Joined {
        let first = c.join(join_req(group, ""), 5, "client", "/127.0.0.1").await;
        assert_eq!(first.error, code::MEMBER_ID_REQUIRED);
        c.join(join_req(group, &first.member_id), 5, "client", "/127.0.0.1")
            .await
    }

    #[tokio::test]
    async fn one_member_joins_leads_and_gets_its_assignment() {
        let c = coordinator();
        let joined = join_fully(&c, "g").await;
        assert_eq!(joined.error, code::NONE);
        assert_eq!(joined.leader, joined.member_id);
        assert_eq!(joined.members.len(), 1);
        let me = MemberRef {
            group_id: "g".into(),
            generation_id: joined.generation,
            member_id: joined.member_id.clone(),
        };
        let synced = c
            .sync(SyncGroup {
                member: me.clone(),
                assignments: vec![(joined.member_id.clone(), Bytes::from_static(b"p0"))],
            })
            .await;
        assert_eq!(
            (synced.error, &synced.assignment[..]),
            (code::NONE, &b"p0"[..])
        );
        assert_eq!(c.heartbeat(&me), code::NONE);
        assert_eq!(c.describe("g").state, "Stable");
        assert_eq!(
            c.heartbeat(&MemberRef {
                generation_id: 99,
                ..me.clone()
            }),
            code::ILLEGAL_GENERATION
        );
        assert_eq!(
            c.leave("g", &[(me.member_id.clone(), None)]),
            vec![code::NONE]
        );
        assert_eq!(c.describe("g").state, "Empty");
    }

    #[tokio::test]
    async fn a_second_member_triggers_a_rebalance_that_both_complete() {
        let c = std::sync::Arc::new(coordinator());
        let a = join_fully(&c, "g").await;
        let a_ref = MemberRef {
            group_id: "g".into(),
            generation_id: a.generation,
            member_id: a.member_id.clone(),
        };
        c.sync(SyncGroup {
            member: a_ref.clone(),
            assignments: vec![],
        })
        .await;
        let c2 = c.clone();
        let b = tokio::spawn(async move { join_fully(&c2, "g").await });
        // A learns of the rebalance from its heartbeat and rejoins.
        let deadline = Instant::now() + Duration::from_secs(5);
        while c.heartbeat(&a_ref) != code::REBALANCE_IN_PROGRESS {
            assert!(Instant::now() < deadline, "no rebalance started");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let a2 = c.join(join_req("g", &a.member_id), 5, "client", "/h").await;
        let b = b.await.unwrap();
        assert_eq!(a2.error, code::NONE);
        assert_eq!(b.error, code::NONE);
        assert_eq!(a2.generation, b.generation);
        assert_eq!(a2.generation, a.generation + 1);
        let leader_view = if a2.leader == a2.member_id { &a2 } else { &b };
        assert_eq!(leader_view.members.len(), 2);
    }

    #[tokio::test]
    async fn a_member_that_stops_heartbeating_is_removed_by_the_timer() {
        let c = coordinator();
        let a = join_fully(&c, "g").await;
        assert_eq!(c.describe("g").members.len(), 1);
        // Sessions are measured on the std clock: wait this one (2 s) out for real.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !c.describe("g").members.is_empty() {
            assert!(Instant::now() < deadline, "the member was never removed");
            c.tick();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            c.heartbeat(&MemberRef {
                group_id: "g".into(),
                generation_id: a.generation,
                member_id: a.member_id,
            }),
            code::UNKNOWN_MEMBER_ID
        );
    }

    #[tokio::test]
    async fn bad_joins_are_refused_with_their_reasons() {
        let c = coordinator();
        let mut short = join_req("g", "");
        short.session_timeout_ms = 10;
        assert_eq!(
            c.join(short, 5, "c", "h").await.error,
            code::INVALID_SESSION_TIMEOUT
        );
        assert_eq!(
            c.join(join_req("g", "stranger"), 5, "c", "h").await.error,
            code::UNKNOWN_MEMBER_ID
        );
        assert_eq!(
            c.join(join_req("", ""), 5, "c", "h").await.error,
            code::INVALID_GROUP_ID
        );
        join_fully(&c, "g").await;
        let mut other = join_req("g", "");
        other.protocols = vec![("roundrobin".into(), Bytes::new())];
        assert_eq!(
            c.join(other, 5, "c", "h").await.error,
            code::INCONSISTENT_GROUP_PROTOCOL
        );
    }
}
