//! The coordinator: every consumer group of the broker behind one lock, its limits,
//! the timer that expires sessions and ends overdue join rounds, and the read-only
//! views (DescribeGroups, ListGroups). The member requests are in `membership`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::group::Group;
use super::reply::Description;
use crate::store::lock;

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

/// Every consumer group of the broker.
pub struct Coordinator {
    pub(super) groups: Mutex<HashMap<String, Group>>,
    pub(super) config: GroupConfig,
}

impl Coordinator {
    /// A coordinator with no groups.
    pub fn new(config: GroupConfig) -> Self {
        Self {
            groups: Mutex::new(HashMap::new()),
            config,
        }
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
