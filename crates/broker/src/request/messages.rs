//! The decoded requests: what each request the broker serves carries, as the
//! handlers read it. Fields the broker has no use for are read and dropped by the
//! decoders, not kept here.

use bytes::Bytes;

/// A decoded request.
#[derive(Debug, Clone)]
pub enum Request {
    /// ApiVersions.
    ApiVersions,
    /// Metadata: `None` asks for every topic.
    Metadata {
        /// The topics asked for.
        topics: Option<Vec<String>>,
    },
    /// Produce.
    Produce(Produce),
    /// Fetch.
    Fetch(Fetch),
    /// ListOffsets: (topic, [(partition, timestamp)]).
    ListOffsets(Vec<(String, Vec<(i32, i64)>)>),
    /// InitProducerId.
    InitProducerId {
        /// Set by transactional producers, which this broker does not serve.
        transactional_id: Option<String>,
    },
    /// CreateTopics.
    CreateTopics {
        /// The topics to create.
        topics: Vec<NewTopic>,
        /// Check only.
        validate_only: bool,
    },
    /// DeleteTopics.
    DeleteTopics(Vec<String>),
    /// CreatePartitions: grow topics to new partition counts.
    CreatePartitions {
        /// (topic, new count, whether replica assignments were given).
        topics: Vec<(String, i32, bool)>,
        /// Check only.
        validate_only: bool,
    },
    /// FindCoordinator.
    FindCoordinator {
        /// Group id (or transactional id).
        key: String,
        /// 0 group, 1 transaction.
        key_type: i8,
    },
    /// JoinGroup.
    JoinGroup(JoinGroup),
    /// SyncGroup.
    SyncGroup(SyncGroup),
    /// Heartbeat.
    Heartbeat(MemberRef),
    /// LeaveGroup: the group and the leaving (member id, instance id)s.
    LeaveGroup {
        /// The group.
        group_id: String,
        /// Who leaves.
        members: Vec<(String, Option<String>)>,
    },
    /// OffsetCommit.
    OffsetCommit(OffsetCommit),
    /// OffsetFetch: `topics` `None` asks for every committed partition.
    OffsetFetch {
        /// The group.
        group_id: String,
        /// (topic, partitions).
        topics: Option<Vec<(String, Vec<i32>)>>,
    },
    /// DescribeGroups.
    DescribeGroups(Vec<String>),
    /// ListGroups.
    ListGroups,
}

/// A topic's partitions and their records, as Produce carries them.
pub type ProduceTopic = (String, Vec<(i32, Option<Bytes>)>);

/// A topic's partitions with (partition, offset, metadata), as OffsetCommit carries them.
pub type CommitTopic = (String, Vec<(i32, i64, Option<String>)>);

/// A Produce request.
#[derive(Debug, Clone)]
pub struct Produce {
    /// Set by transactional producers.
    pub transactional_id: Option<String>,
    /// 0: no response; 1 or -1: answer once written.
    pub acks: i16,
    /// (topic, [(partition, records)]).
    pub topics: Vec<ProduceTopic>,
}

/// A Fetch request.
#[derive(Debug, Clone)]
pub struct Fetch {
    /// Longest wait for `min_bytes`.
    pub max_wait_ms: i32,
    /// Bytes to wait for.
    pub min_bytes: i32,
    /// Cap of the whole response.
    pub max_bytes: i32,
    /// (topic, partitions).
    pub topics: Vec<(String, Vec<FetchPartition>)>,
}

/// One partition of a Fetch.
#[derive(Debug, Clone, Copy)]
pub struct FetchPartition {
    /// The partition.
    pub partition: i32,
    /// Where to read from.
    pub fetch_offset: i64,
    /// Cap for this partition.
    pub max_bytes: i32,
}

/// A topic to create.
#[derive(Debug, Clone)]
pub struct NewTopic {
    /// Its name.
    pub name: String,
    /// Partitions (-1: the broker's default).
    pub partitions: i32,
    /// Replication factor (-1: the default, 1).
    pub replication: i16,
    /// Manual replica assignments given (unsupported when non-empty).
    pub assignments: usize,
    /// Configs given.
    pub configs: Vec<(String, Option<String>)>,
}

/// A JoinGroup request.
#[derive(Debug, Clone)]
pub struct JoinGroup {
    /// The group.
    pub group_id: String,
    /// Without a heartbeat for this long, the member is removed.
    pub session_timeout_ms: i32,
    /// How long a rebalance waits for members to rejoin.
    pub rebalance_timeout_ms: i32,
    /// Empty on the first join.
    pub member_id: String,
    /// Static membership.
    pub group_instance_id: Option<String>,
    /// E.g. `consumer`.
    pub protocol_type: String,
    /// (assignor name, subscription metadata), in preference order.
    pub protocols: Vec<(String, Bytes)>,
}

/// A member's identity in a generation.
#[derive(Debug, Clone)]
pub struct MemberRef {
    /// The group.
    pub group_id: String,
    /// The generation it believes in.
    pub generation_id: i32,
    /// Its member id.
    pub member_id: String,
}

/// A SyncGroup request.
#[derive(Debug, Clone)]
pub struct SyncGroup {
    /// Who syncs.
    pub member: MemberRef,
    /// The leader's (member id, assignment)s; empty from followers.
    pub assignments: Vec<(String, Bytes)>,
}

/// An OffsetCommit request.
#[derive(Debug, Clone)]
pub struct OffsetCommit {
    /// Who commits (generation -1 and no member id: a commit outside the group).
    pub member: MemberRef,
    /// (topic, [(partition, offset, metadata)]).
    pub topics: Vec<CommitTopic>,
}
