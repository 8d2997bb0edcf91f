//! The group coordinator: Kafka's classic consumer-group protocol (JoinGroup,
//! SyncGroup, Heartbeat, LeaveGroup), which clients use to share a topic's partitions.
//!
//! A group moves Empty → PreparingRebalance (members join; the round ends when every
//! known member has rejoined, or at the longest rebalance timeout, dropping those that
//! did not) → CompletingRebalance (the leader, given every member's subscription,
//! sends the assignment) → Stable. A member that stops heartbeating for its session
//! timeout is removed and the group rebalances — promptly, by a timer, not only when
//! somebody else calls. Responses to JoinGroup and SyncGroup are held until their
//! round completes, as in Kafka; nothing here holds a lock across an await.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::request::{JoinGroup, MemberRef, SyncGroup};
use crate::store::lock;

/// Kafka error codes of the group protocol.
pub mod code {
    /// No error.
    pub const NONE: i16 = 0;
    /// The generation is not the group's current one.
    pub const ILLEGAL_GENERATION: i16 = 22;
    /// The members share no assignor, or the protocol type differs.
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    /// The member is not (or no longer) in the group.
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    /// The session timeout is outside the broker's range.
    pub const INVALID_SESSION_TIMEOUT: i16 = 26;
    /// A rebalance is under way: rejoin.
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    /// The group id is empty.
    pub const INVALID_GROUP_ID: i16 = 24;
    /// Join again with the member id given.
    pub const MEMBER_ID_REQUIRED: i16 = 79;
    /// Another member took over this static instance id.
    pub const FENCED_INSTANCE_ID: i16 = 82;
}

/// Limits and delays of the coordinator.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// How long the first rebalance of an empty group waits for more members, so a
    /// whole fleet starting together is one rebalance, not one per member.
    pub initial_rebalance_delay: Duration,
    /// Shortest session timeout accepted.
    pub min_session_timeout: Duration,
    /// Longest session timeout accepted.
    pub max_session_timeout: Duration,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            initial_rebalance_delay: Duration::from_millis(100),
            min_session_timeout: Duration::from_millis(1000),
            max_session_timeout: Duration::from_secs(30 * 60),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::PreparingRebalance => "PreparingRebalance",
            Self::CompletingRebalance => "CompletingRebalance",
            Self::Stable => "Stable",
        }
    }
}

/// The answer to a JoinGroup.
#[derive(Debug, Clone, Default)]
pub struct Joined {
    /// Error code.
    pub error: i16,
    /// The new generation.
    pub generation: i32,
    /// The protocol type.
    pub protocol_type: Option<String>,
    /// The assignor chosen.
    pub protocol: Option<String>,
    /// The leader's member id.
    pub leader: String,
    /// The caller's member id.
    pub member_id: String,
    /// For the leader: every (member id, instance id, subscription).
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl Joined {
    fn error(error: i16, member_id: &str) -> Self {
        Self {
            error,
            generation: -1,
            member_id: member_id.to_owned(),
            ..Self::default()
        }
    }
}

/// The answer to a SyncGroup.
#[derive(Debug, Clone, Default)]
pub struct Synced {
    /// Error code.
    pub error: i16,
    /// The member's assignment.
    pub assignment: Bytes,
}

struct Member {
    id: String,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    deadline: Instant,
    join: Option<oneshot::Sender<Joined>>,
    sync: Option<oneshot::Sender<Synced>>,
}

struct Group {
    state: State,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: Vec<Member>,
    pending: HashMap<String, Instant>,
    rebalance_deadline: Option<Instant>,
    not_before: Option<Instant>,
}

impl Group {
    fn new() -> Self {
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

    fn member(&mut self, id: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.id == id)
    }

    fn supports(&self, protocols: &[(String, Bytes)]) -> bool {
        self.members.iter().all(|m| {
            m.protocols
                .iter()
                .any(|(name, _)| protocols.iter().any(|(n, _)| n == name))
        })
    }

    fn prepare_rebalance(&mut self, now: Instant, initial_delay: Duration) {
        if self.state == State::PreparingRebalance {
            return;
        }
        for m in &mut self.members {
            if let Some(tx) = m.sync.take() {
                let _ = tx.send(Synced {
                    error: code::REBALANCE_IN_PROGRESS,
                    assignment: Bytes::new(),
                });
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

    fn maybe_complete_join(&mut self, now: Instant) {
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
        let chosen = self.members[0]
            .protocols
            .iter()
            .map(|(n, _)| n.clone())
            .find(|name| {
                self.members
                    .iter()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            });
        let Some(protocol) = chosen else {
            for m in &mut self.members {
                if let Some(tx) = m.join.take() {
                    let _ = tx.send(Joined::error(code::INCONSISTENT_GROUP_PROTOCOL, &m.id));
                }
            }
            self.members.clear();
            self.state = State::Empty;
            return;
        };
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.iter().any(|m| &m.id == l))
        {
            self.leader = Some(self.members[0].id.clone());
        }
        let leader = self.leader.clone().unwrap_or_default();
        let roster: Vec<(String, Option<String>, Bytes)> = self
            .members
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
            .collect();
        self.state = State::CompletingRebalance;
        self.protocol = Some(protocol.clone());
        for m in &mut self.members {
            m.deadline = now + m.session_timeout;
            m.assignment = Bytes::new();
            if let Some(tx) = m.join.take() {
                let _ = tx.send(Joined {
                    error: code::NONE,
                    generation: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol: Some(protocol.clone()),
                    leader: leader.clone(),
                    member_id: m.id.clone(),
                    members: if m.id == leader {
                        roster.clone()
                    } else {
                        Vec::new()
                    },
                });
            }
        }
    }

    /// Removes a member (its held responses are dropped, which answers them with
    /// UNKNOWN_MEMBER_ID) and rebalances the rest.
    fn remove(&mut self, id: &str, now: Instant, initial_delay: Duration) {
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

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct Description {
    /// State name (`Dead` when unknown).
    pub state: &'static str,
    /// Protocol type.
    pub protocol_type: String,
    /// Chosen assignor.
    pub protocol: String,
    /// (member id, instance id, client id, host, subscription, assignment).
    pub members: Vec<(String, Option<String>, String, String, Bytes, Bytes)>,
}

/// Every consumer group of the broker.
pub struct Coordinator {
    groups: Mutex<HashMap<String, Group>>,
    config: GroupConfig,
}

impl Coordinator {
    /// A coordinator with no groups.
    pub fn new(config: GroupConfig) -> Self {
        Self {
            groups: Mutex::new(HashMap::new()),
            config,
        }
    }

    /// JoinGroup: answers when the round completes (or at once with an error or a
    /// member id to join with).
    pub async fn join(
        &self,
        req: JoinGroup,
        version: i16,
        client_id: &str,
        client_host: &str,
    ) -> Joined {
        let session = Duration::from_millis(req.session_timeout_ms.max(0) as u64);
        let rebalance = Duration::from_millis(req.rebalance_timeout_ms.max(0) as u64);
        let wait = {
            let mut groups = lock(&self.groups);
            let now = Instant::now();
            if req.group_id.is_empty() {
                return Joined::error(code::INVALID_GROUP_ID, &req.member_id);
            }
            if session < self.config.min_session_timeout
                || session > self.config.max_session_timeout
            {
                return Joined::error(code::INVALID_SESSION_TIMEOUT, &req.member_id);
            }
            if req.protocols.is_empty() || req.protocol_type.is_empty() {
                return Joined::error(code::INCONSISTENT_GROUP_PROTOCOL, &req.member_id);
            }
            let g = groups
                .entry(req.group_id.clone())
                .or_insert_with(Group::new);
            if !g.members.is_empty()
                && (g.protocol_type.as_deref() != Some(req.protocol_type.as_str())
                    || !g.supports(&req.protocols))
            {
                return Joined::error(code::INCONSISTENT_GROUP_PROTOCOL, &req.member_id);
            }
            let member_id = if req.member_id.is_empty() {
                if let Some(instance) = &req.group_instance_id
                    && let Some(old) = g
                        .members
                        .iter()
                        .position(|m| m.instance_id.as_ref() == Some(instance))
                {
                    let old = g.members.remove(old);
                    if let Some(tx) = old.join {
                        let _ = tx.send(Joined::error(code::FENCED_INSTANCE_ID, &old.id));
                    }
                }
                let id = format!("{client_id}-{}", uuid::Uuid::new_v4());
                if version >= 4 && req.group_instance_id.is_none() {
                    g.pending.insert(id.clone(), now + session);
                    return Joined::error(code::MEMBER_ID_REQUIRED, &id);
                }
                id
            } else if g.member(&req.member_id).is_some()
                || g.pending.remove(&req.member_id).is_some()
            {
                req.member_id.clone()
            } else {
                return Joined::error(code::UNKNOWN_MEMBER_ID, &req.member_id);
            };
            let (tx, rx) = oneshot::channel();
            match g.member(&member_id) {
                Some(m) => {
                    m.protocols = req.protocols;
                    m.session_timeout = session;
                    m.rebalance_timeout = rebalance;
                    m.deadline = now + rebalance;
                    m.join = Some(tx);
                }
                None => g.members.push(Member {
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
                }),
            }
            g.protocol_type = Some(req.protocol_type);
            g.prepare_rebalance(now, self.config.initial_rebalance_delay);
            g.maybe_complete_join(now);
            (rx, member_id)
        };
        let (rx, member_id) = wait;
        match tokio::time::timeout(rebalance + Duration::from_secs(5), rx).await {
            Ok(Ok(joined)) => joined,
            Ok(Err(_)) => Joined::error(code::UNKNOWN_MEMBER_ID, &member_id),
            Err(_) => Joined::error(code::REBALANCE_IN_PROGRESS, &member_id),
        }
    }

    /// SyncGroup: the leader hands out the assignment; the others wait for it.
    pub async fn sync(&self, req: SyncGroup) -> Synced {
        let refuse = |error| Synced {
            error,
            assignment: Bytes::new(),
        };
        let (rx, session) = {
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
                State::Stable => {
                    let m = g.member(&req.member.member_id);
                    return Synced {
                        error: code::NONE,
                        assignment: m.map(|m| m.assignment.clone()).unwrap_or_default(),
                    };
                }
                State::CompletingRebalance => {}
            }
            let is_leader = g.leader.as_deref() == Some(req.member.member_id.as_str());
            if is_leader {
                let mut given: HashMap<String, Bytes> = req.assignments.into_iter().collect();
                for m in &mut g.members {
                    m.assignment = given.remove(&m.id).unwrap_or_default();
                    m.deadline = now + m.session_timeout;
                    if let Some(tx) = m.sync.take() {
                        let _ = tx.send(Synced {
                            error: code::NONE,
                            assignment: m.assignment.clone(),
                        });
                    }
                }
                g.state = State::Stable;
                let own = g
                    .member(&req.member.member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default();
                return Synced {
                    error: code::NONE,
                    assignment: own,
                };
            }
            let (tx, rx) = oneshot::channel();
            let Some(m) = g.member(&req.member.member_id) else {
                return refuse(code::UNKNOWN_MEMBER_ID);
            };
            m.sync = Some(tx);
            m.deadline = now + m.session_timeout;
            (rx, m.session_timeout)
        };
        match tokio::time::timeout(session, rx).await {
            Ok(Ok(synced)) => synced,
            Ok(Err(_)) => refuse(code::UNKNOWN_MEMBER_ID),
            Err(_) => refuse(code::REBALANCE_IN_PROGRESS),
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

    /// Removes members whose session expired and ends rebalance rounds that are
    /// due. Run every few hundred milliseconds.
    pub fn tick(&self) {
        let mut groups = lock(&self.groups);
        let now = Instant::now();
        for (name, g) in groups.iter_mut() {
            g.pending.retain(|_, deadline| *deadline > now);
            let expired: Vec<String> = g
                .members
                .iter()
                .filter(|m| m.join.is_none() && m.deadline <= now)
                .map(|m| m.id.clone())
                .collect();
            for id in expired {
                tracing::info!(group = %name, member = %id, "member's session expired; rebalancing");
                g.remove(&id, now, self.config.initial_rebalance_delay);
            }
            g.maybe_complete_join(now);
        }
        groups.retain(|_, g| !(g.members.is_empty() && g.pending.is_empty()));
    }

    /// A group's state and members.
    pub fn describe(&self, group_id: &str) -> Description {
        let groups = lock(&self.groups);
        match groups.get(group_id) {
            None => Description {
                state: "Dead",
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            },
            Some(g) => Description {
                state: g.state.name(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                protocol: g.protocol.clone().unwrap_or_default(),
                members: g
                    .members
                    .iter()
                    .map(|m| {
                        let meta = g
                            .protocol
                            .as_ref()
                            .and_then(|p| m.protocols.iter().find(|(n, _)| n == p))
                            .map(|(_, b)| b.clone())
                            .unwrap_or_default();
                        (
                            m.id.clone(),
                            m.instance_id.clone(),
                            m.client_id.clone(),
                            m.client_host.clone(),
                            meta,
                            m.assignment.clone(),
                        )
                    })
                    .collect(),
            },
        }
    }

    /// The protocol type of a group the coordinator knows.
    pub fn protocol_type(&self, group_id: &str) -> Option<String> {
        lock(&self.groups)
            .get(group_id)
            .and_then(|g| g.protocol_type.clone())
    }

    /// Groups with members: (name, protocol type, state).
    pub fn list(&self) -> Vec<(String, String, &'static str)> {
        lock(&self.groups)
            .iter()
            .map(|(name, g)| {
                (
                    name.clone(),
                    g.protocol_type.clone().unwrap_or_default(),
                    g.state.name(),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
