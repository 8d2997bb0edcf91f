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
//!
//! - `group`: one group's state machine, its members and the assignment;
//! - `membership`: the member requests (join, sync, heartbeat, leave, may commit);
//! - `coordinator`: every group, the session timer and the read-only views;
//! - [`code`]: the error codes, and `reply`: the answers.

pub mod code;
mod coordinator;
mod group;
mod membership;
mod reply;

pub use coordinator::{Coordinator, GroupConfig};
pub use reply::{Description, Joined, Synced};
