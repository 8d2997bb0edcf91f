//! Kafka error codes the handlers answer with.

/// No error.
pub const NONE: i16 = 0;
/// Something unexpected.
pub const UNKNOWN_SERVER_ERROR: i16 = -1;
/// The offset is outside the log.
pub const OFFSET_OUT_OF_RANGE: i16 = 1;
/// A batch failed its checks.
pub const CORRUPT_MESSAGE: i16 = 2;
/// No such topic or partition.
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
/// A batch larger than the broker takes.
pub const MESSAGE_TOO_LARGE: i16 = 10;
/// Not a coordinator of that kind.
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
/// A record timestamp out of the range the broker takes.
pub const INVALID_TIMESTAMP: i16 = 32;
/// An illegal topic name.
pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
/// `acks` other than 0, 1 or -1.
pub const INVALID_REQUIRED_ACKS: i16 = 21;
/// Unsupported version of a request.
pub const UNSUPPORTED_VERSION: i16 = 35;
/// The topic exists.
pub const TOPIC_ALREADY_EXISTS: i16 = 36;
/// A partition count out of range.
pub const INVALID_PARTITIONS: i16 = 37;
/// A replication factor other than 1 (this broker is one node).
pub const INVALID_REPLICATION_FACTOR: i16 = 38;
/// Manual replica assignments (this broker is one node).
pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
/// A topic config this broker cannot honour.
pub const INVALID_CONFIG: i16 = 40;
/// A request this broker does not serve (transactions).
pub const INVALID_REQUEST: i16 = 42;
/// Not message format v2.
pub const UNSUPPORTED_FOR_MESSAGE_FORMAT: i16 = 43;
/// Writing the log failed.
pub const KAFKA_STORAGE_ERROR: i16 = 56;
/// An unknown compression codec.
pub const UNSUPPORTED_COMPRESSION_TYPE: i16 = 76;
/// Records that do not parse.
pub const INVALID_RECORD: i16 = 87;
