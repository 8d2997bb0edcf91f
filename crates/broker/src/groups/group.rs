//! One consumer group and its state machine: Empty → PreparingRebalance →
//! CompletingRebalance → Stable, with the members, their held JoinGroup and SyncGroup
//! responses, and the assignment the leader hands out.
//!
//! Everything here runs under the coordinator's lock and never waits: a transition
//! answers the held responses it settles by sending on their channels.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::code;
use super::reply::{Joined, Synced};
use crate::request::JoinGroup;

/// Where a group is in its rebalance cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl State {
    /// The name DescribeGroups and ListGroups show.
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::PreparingRebalance => "PreparingRebalance",
            Self::CompletingRebalance => "CompletingRebalance",
            Self::Stable => "Stable",
        }
    }
}

/// A member of a group, with its held responses.
pub(super) struct Member {
    pub(super) id: String,
    pub(super) instance_id: Option<String>,
    pub(super) client_id: String,
    pub(super) client_host: String,
    pub(super) session_timeout: Duration,
    pub(super) rebalance_timeout: Duration,
    /// (assignor name, subscription), in the member's order of preference.
    pub(super) protocols: Vec<(String, Bytes)>,
    pub(super) assignment: Bytes,
    /// Removed by the timer when this passes without a heartbeat.
    pub(super) deadline: Instant,
    pub(super) join: Option<oneshot::Sender<Joined>>,
    pub(super) sync: Option<oneshot::Sender<Synced>>,
}

/// A consumer group.
pub(super) struct Group {
    pub(super) state: State,
    pub(super) generation: i32,
    pub(super) protocol_type: Option<String>,
    pub(super) protocol: Option<String>,
    pub(super) leader: Option<String>,
    pub(super) members: Vec<Member>,
    /// Member ids handed out by a JoinGroup v4+ that have not joined with them yet,
    /// and until when they may.
    pub(super) pending: HashMap<String, Instant>,
    rebalance_deadline: Option<Instant>,
    not_before: Option<Instant>,
}

impl Group {
    pub(super) fn new() -> Self {
        Self {
            state: State::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: Vec::new(),
            pending: HashMap::new(),
            rebalance_deadline: None,
            not_before: None,
        }
    }

    pub(super) fn member(&mut self, id: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.id == id)
    }

    /// Whether every member shares an assignor with `protocols`.
    pub(super) fn supports(&self, protocols: &[(String, Bytes)]) -> bool {
        self.members.iter().all(|m| {
            m.protocols
                .iter()
                .any(|(name, _)| protocols.iter().any(|(n, _)| n == name))
        })
    }

    /// The member id a join goes on with: a known or pending member's own, or a new
    /// member's fresh one (after fencing the member it replaces, for a static
    /// member). `Err` is the (error, member id) to answer at once: MEMBER_ID_REQUIRED
    /// with the fresh id to join again with (JoinGroup v4+ of a dynamic member, which
    /// stays pending until `pending_until`), or UNKNOWN_MEMBER_ID.
    pub(super) fn admit(
        &mut self,
        req: &JoinGroup,
        version: i16,
        client_id: &str,
        pending_until: Instant,
    ) -> Result<String, (i16, String)> {
        if !req.member_id.is_empty() {
            let known = self.member(&req.member_id).is_some()
                || self.pending.remove(&req.member_id).is_some();
            return if known {
                Ok(req.member_id.clone())
            } else {
                Err((code::UNKNOWN_MEMBER_ID, req.member_id.clone()))
            };
        }
        if let Some(instance) = &req.group_instance_id
            && let Some(old) = self
                .members
                .iter()
                .position(|m| m.instance_id.as_ref() == Some(instance))
        {
            let old = self.members.remove(old);
            if let Some(tx) = old.join {
                let _ = tx.send(Joined::error(code::FENCED_INSTANCE_ID, &old.id));
            }
        }
        let id = format!("{client_id}-{}", uuid::Uuid::new_v4());
        if version >= 4 && req.group_instance_id.is_none() {
            self.pending.insert(id.clone(), pending_until);
            return Err((code::MEMBER_ID_REQUIRED, id));
        }
        Ok(id)
    }

    /// Holds a join: the member it names takes its protocols, timeouts, deadline and
    /// held response; a member not in the group yet is added as it is.
    pub(super) fn hold_join(&mut self, joining: Member) {
        match self.member(&joining.id) {
            Some(m) => {
                m.protocols = joining.protocols;
                m.session_timeout = joining.session_timeout;
                m.rebalance_timeout = joining.rebalance_timeout;
                m.deadline = joining.deadline;
                m.join = joining.join;
            }
            None => self.members.push(joining),
        }
    }

    /// Starts a join round (unless one is under way): held syncs are told to rejoin,
    /// and the round ends at the longest rebalance timeout. The first round of an
    /// empty group also waits `initial_delay` for more members.
    pub(super) fn prepare_rebalance(&mut self, now: Instant, initial_delay: Duration) {
        if self.state == State::PreparingRebalance {
            return;
        }
        for m in &mut self.members {
            if let Some(tx) = m.sync.take() {
                let _ = tx.send(Synced::error(code::REBALANCE_IN_PROGRESS));
            }
        }
        let longest = self
            .members
            .iter()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        self.not_before = (self.state == State::Empty).then(|| now + initial_delay.min(longest));
        self.state = State::PreparingRebalance;
        self.rebalance_deadline = Some(now + longest);
    }

    /// Ends the join round once every member has rejoined (and the initial delay is
    /// over), or when it is overdue.
    pub(super) fn maybe_complete_join(&mut self, now: Instant) {
        if self.state != State::PreparingRebalance {
            return;
        }
        let all_in = self.members.iter().all(|m| m.join.is_some());
        let waited = self.not_before.is_none_or(|t| now >= t);
        let overdue = self.rebalance_deadline.is_some_and(|d| now >= d);
        if (all_in && waited) || overdue {
            self.complete_join(now);
        }
    }

    /// Ends the join round: members that did not rejoin are dropped and a new
    /// generation starts on the assignor every member supports, with a leader; each
    /// held join is answered. Without a common assignor every member is refused.
    fn complete_join(&mut self, now: Instant) {
        self.members.retain(|m| m.join.is_some());
        self.rebalance_deadline = None;
        self.not_before = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.state = State::Empty;
            self.protocol = None;
            self.leader = None;
            return;
        }
        let Some(protocol) = self.common_protocol() else {
            for m in &mut self.members {
                if let Some(tx) = m.join.take() {
                    let _ = tx.send(Joined::error(code::INCONSISTENT_GROUP_PROTOCOL, &m.id));
                }
            }
            self.members.clear();
            self.state = State::Empty;
            return;
        };
        let leader = self.elect_leader();
        let roster = self.roster(&protocol);
        self.state = State::CompletingRebalance;
        self.protocol = Some(protocol.clone());
        self.answer_joins(&protocol, &leader, &roster, now);
    }

    /// The first member's most preferred assignor that every member supports.
    fn common_protocol(&self) -> Option<String> {
        self.members[0]
            .protocols
            .iter()
            .map(|(n, _)| n.clone())
            .find(|name| {
                self.members
                    .iter()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
    }

    /// The leader: the old one while it is still a member, else the first member.
    fn elect_leader(&mut self) -> String {
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.iter().any(|m| &m.id == l))
        {
            self.leader = Some(self.members[0].id.clone());
        }
        self.leader.clone().unwrap_or_default()
    }

    /// What the leader is given to assign from: every (member id, instance id,
    /// subscription for `protocol`).
    fn roster(&self, protocol: &str) -> Vec<(String, Option<String>, Bytes)> {
        self.members
            .iter()
            .map(|m| {
                let meta = m
                    .protocols
                    .iter()
                    .find(|(n, _)| *n == protocol)
                    .map(|(_, b)| b.clone())
                    .unwrap_or_default();
                (m.id.clone(), m.instance_id.clone(), meta)
            })
            .collect()
    }

    /// Answers every held join of the new generation (only the leader's with the
    /// roster) and restarts each member's session, its assignment to come.
    fn answer_joins(
        &mut self,
        protocol: &str,
        leader: &str,
        roster: &[(String, Option<String>, Bytes)],
        now: Instant,
    ) {
        for m in &mut self.members {
            m.deadline = now + m.session_timeout;
            m.assignment = Bytes::new();
            if let Some(tx) = m.join.take() {
                let _ = tx.send(Joined {
                    error: code::NONE,
                    generation: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol: Some(protocol.to_owned()),
                    leader: leader.to_owned(),
                    member_id: m.id.clone(),
                    members: if m.id == leader {
                        roster.to_vec()
                    } else {
                        Vec::new()
                    },
                });
            }
        }
    }

    /// Hands out the leader's assignment: each member gets its part (nothing when
    /// left out) and its session restarts, held syncs are answered, and the group is
    /// Stable.
    pub(super) fn assign(&mut self, assignments: Vec<(String, Bytes)>, now: Instant) {
        let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
        for m in &mut self.members {
            m.assignment = given.remove(&m.id).unwrap_or_default();
            m.deadline = now + m.session_timeout;
            if let Some(tx) = m.sync.take() {
                let _ = tx.send(Synced {
                    error: code::NONE,
                    assignment: m.assignment.clone(),
                });
            }
        }
        self.state = State::Stable;
    }

    /// Removes a member (its held responses are dropped, which answers them with
    /// UNKNOWN_MEMBER_ID) and rebalances the rest.
    pub(super) fn remove(&mut self, id: &str, now: Instant, initial_delay: Duration) {
        self.members.retain(|m| m.id != id);
        if self.members.is_empty() {
            if self.state != State::Empty {
                self.generation += 1;
            }
            self.state = State::Empty;
            self.protocol = None;
            self.leader = None;
            self.rebalance_deadline = None;
            self.not_before = None;
        } else {
            self.prepare_rebalance(now, initial_delay);
            self.maybe_complete_join(now);
        }
    }
}
