//! The configs of a topic to create, checked as Kafka 4.1 checks them: a known name
//! and a value of its type (an unknown name, a null or a value of the wrong type is
//! INVALID_CONFIG), plus the configs this broker cannot honour, compaction and
//! LogAppendTime. Kafka's range checks are not repeated.

/// The value types of Kafka's topic configs (`LogConfig.configNames()` of Kafka 4.1).
const TOPIC_CONFIGS: &[(&str, ConfigType)] = {
    use ConfigType::{Bool, Double, Int, List, Long, Str};
    &[
        ("cleanup.policy", List),
        ("compression.gzip.level", Int),
        ("compression.lz4.level", Int),
        ("compression.type", Str),
        ("compression.zstd.level", Int),
        ("delete.retention.ms", Long),
        ("file.delete.delay.ms", Long),
        ("flush.messages", Long),
        ("flush.ms", Long),
        ("follower.replication.throttled.replicas", List),
        ("index.interval.bytes", Int),
        ("internal.segment.bytes", Int),
        ("leader.replication.throttled.replicas", List),
        ("local.retention.bytes", Long),
        ("local.retention.ms", Long),
        ("max.compaction.lag.ms", Long),
        ("max.message.bytes", Int),
        ("message.timestamp.after.max.ms", Long),
        ("message.timestamp.before.max.ms", Long),
        ("message.timestamp.type", Str),
        ("min.cleanable.dirty.ratio", Double),
        ("min.compaction.lag.ms", Long),
        ("min.insync.replicas", Int),
        ("preallocate", Bool),
        ("remote.log.copy.disable", Bool),
        ("remote.log.delete.on.disable", Bool),
        ("remote.storage.enable", Bool),
        ("retention.bytes", Long),
        ("retention.ms", Long),
        ("segment.bytes", Int),
        ("segment.index.bytes", Int),
        ("segment.jitter.ms", Long),
        ("segment.ms", Long),
        ("unclean.leader.election.enable", Bool),
    ]
};

/// How Kafka parses a topic config's value.
#[derive(Debug, Clone, Copy)]
enum ConfigType {
    Bool,
    Double,
    Int,
    List,
    Long,
    Str,
}

impl ConfigType {
    /// Whether `v` (trimmed) is a value of this type.
    fn parses(self, v: &str) -> bool {
        match self {
            Self::Bool => v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false"),
            Self::Double => v.parse::<f64>().is_ok(),
            Self::Int => v.parse::<i32>().is_ok(),
            Self::Long => v.parse::<i64>().is_ok(),
            Self::List | Self::Str => true,
        }
    }
}

/// Checks one config of a topic to create as Kafka does (a known name, a value of its
/// type; Kafka's range checks are not repeated), and refuses what this broker cannot
/// honour: compaction and LogAppendTime. The other configs are accepted; the broker's
/// own settings (`--retention`, `--max-batch-bytes`, ...) apply to every topic.
pub(super) fn check(name: &str, value: Option<&str>) -> Result<(), String> {
    let Some(&(_, kind)) = TOPIC_CONFIGS.iter().find(|(n, _)| *n == name) else {
        return Err(format!("unknown topic config name: {name}"));
    };
    let Some(value) = value else {
        return Err(format!(
            "null value not supported for topic configs: {name}"
        ));
    };
    let v = value.trim();
    if !kind.parses(v) {
        return Err(format!(
            "invalid value {value} for configuration {name}: not a {kind:?}"
        ));
    }
    match name {
        "cleanup.policy" => cleanup_policy(v),
        "compression.type" => compression_type(v),
        "message.timestamp.type" => timestamp_type(v),
        _ => Ok(()),
    }
}

/// `cleanup.policy`: `delete`, or a list of `delete` and `compact`; compaction is
/// refused.
fn cleanup_policy(v: &str) -> Result<(), String> {
    for policy in v.split(',').map(str::trim) {
        match policy {
            "delete" => {}
            "compact" => {
                return Err(
                    "log compaction is not supported; topics use cleanup.policy=delete".to_owned(),
                );
            }
            other => {
                return Err(format!(
                    "invalid value {other} for configuration cleanup.policy: \
                     String must be one of: compact, delete"
                ));
            }
        }
    }
    Ok(())
}

/// `compression.type`: one of Kafka's codecs, or `producer`.
fn compression_type(v: &str) -> Result<(), String> {
    if matches!(
        v,
        "uncompressed" | "zstd" | "lz4" | "snappy" | "gzip" | "producer"
    ) {
        return Ok(());
    }
    Err(format!(
        "invalid value {v} for configuration compression.type: String must be one of: \
         uncompressed, zstd, lz4, snappy, gzip, producer"
    ))
}

/// `message.timestamp.type`: CreateTime; LogAppendTime is refused.
fn timestamp_type(v: &str) -> Result<(), String> {
    match v {
        "CreateTime" => Ok(()),
        "LogAppendTime" => Err(
            "LogAppendTime is not supported; records keep the producer's timestamp (CreateTime)"
                .to_owned(),
        ),
        other => Err(format!(
            "invalid value {other} for configuration message.timestamp.type: \
             String must be one of: CreateTime, LogAppendTime"
        )),
    }
}
