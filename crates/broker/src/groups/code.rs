//! Kafka error codes of the group protocol, as the coordinator answers them.

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
