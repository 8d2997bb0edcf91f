//! What the coordinator answers: the outcome of a JoinGroup or a SyncGroup (sent
//! through a member's held response when its round completes) and a group as
//! DescribeGroups shows it.

use bytes::Bytes;

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
    /// A refused join of `member_id`: no generation, nothing else.
    pub(super) fn error(error: i16, member_id: &str) -> Self {
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

impl Synced {
    /// A refused sync: the error and no assignment.
    pub(super) fn error(error: i16) -> Self {
        Self {
            error,
            assignment: Bytes::new(),
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
