//! The errors of the event backbone.

/// Errors of the event backbone.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// The database failed.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// A migration failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The Kafka client failed.
    #[error("kafka error: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The broker did not acknowledge a record.
    #[error("delivery failed: {0}")]
    Delivery(String),
    /// A topic weft needs is not on the cluster.
    #[error(
        "topic {topic} does not exist on the brokers at {brokers}: weft never relies on auto-creation; `weft up` creates its topics (with --kafka-prefix, --topic-partitions, --topic-replication), or create it yourself"
    )]
    MissingTopic {
        /// The topic's name on the cluster.
        topic: String,
        /// The brokers asked.
        brokers: String,
    },
    /// The brokers refused weft's credentials or TLS: retrying cannot help.
    #[error(
        "the brokers at {brokers} refused the connection: {reason}. Check the Kafka settings (--kafka-config, --kafka-config-file: security.protocol, sasl.*, ssl.*)"
    )]
    Refused {
        /// The brokers asked.
        brokers: String,
        /// librdkafka's words.
        reason: String,
    },
    /// Topics could not be created.
    #[error("cannot create topic {topic}: {reason}")]
    Provision {
        /// The topic.
        topic: String,
        /// The broker's answer.
        reason: String,
    },
    /// A name that is not a dead-letter topic of weft.
    #[error("{topic} is not a dead-letter topic of weft (those of {known})")]
    NotADeadLetterTopic {
        /// The name given.
        topic: String,
        /// The topics whose dead-letter topics there are.
        known: String,
    },
    /// A dead letter's position that does not parse.
    #[error("{0:?} is not <partition>:<offset> or <offset>")]
    BadPosition(String),
    /// No dead letter at a position.
    #[error("no dead letter at {partition}:{offset} of {topic}")]
    NoDeadLetter {
        /// The dead-letter topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The offset.
        offset: i64,
    },
    /// Reading a topic to its end took too long.
    #[error("reading {topic} partition {partition} timed out at offset {at} of {end}")]
    ReadTimedOut {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The next offset to read.
        at: i64,
        /// The end it was reading to.
        end: i64,
    },
    /// A stored outbox row is unreadable.
    #[error("outbox row {seq} is corrupt: {reason}")]
    CorruptOutboxRow {
        /// Sequence number of the row.
        seq: i64,
        /// What is wrong.
        reason: String,
    },
    /// The database URL is not one weft supports.
    #[error("unsupported database URL scheme {0:?}; use sqlite:// or postgres://")]
    UnsupportedDatabase(String),
    /// A stored offset lies past the end of its partition: the broker's data was
    /// reset or replaced, and reading on would silently skip every new record.
    #[error(
        "consumer {group}: the stored offset {stored} of {topic} partition {partition} lies past the partition's end ({end}); the broker's data was reset or replaced. Start with --reset-offsets earliest (read what the broker has; the inbox skips records already applied) or --reset-offsets latest (skip to the end)"
    )]
    StaleOffsets {
        /// The consumer group.
        group: String,
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The next offset stored in the database.
        stored: i64,
        /// The partition's end (high watermark).
        end: i64,
    },
    /// The database has offsets of a partition the topic no longer has (the topic
    /// was deleted and created again with fewer partitions).
    #[error(
        "consumer group {group} has a stored offset for partition {partition} of {topic}, which now has only {partitions} partition(s): the topic was recreated with fewer partitions, and the records of the missing ones are gone. Start with --reset-offsets earliest (re-read what the topic has; the inbox skips what was applied) or latest to go on without them"
    )]
    LostPartitions {
        /// The consumer group.
        group: String,
        /// The topic.
        topic: String,
        /// The partition that is gone.
        partition: i32,
        /// How many partitions the topic has now.
        partitions: usize,
    },
    /// A consumer whose effects cannot be replayed has no stored offsets, and its
    /// topics have history it was not told about.
    #[error(
        "consumer group {group} has no stored offsets in this database, but its topics ({topics}) hold {records} record(s): another deployment's history, or this one's from before its database was replaced. Applying it would repeat its effects (orders, emails). Start with --from latest to apply only what comes next, or --from earliest to apply the whole history again"
    )]
    NoStartingPoint {
        /// The consumer group.
        group: String,
        /// How many records the topics hold.
        records: i64,
        /// The topics.
        topics: String,
    },
    /// A member of the group belongs to another deployment (another database).
    #[error(
        "consumer group {group} has a member of another deployment ({theirs}, replica {replica}); this database belongs to deployment {ours}. Two meshes with their own databases cannot share a consumer group: give one of them its own --kafka-prefix, or point both at the same databases"
    )]
    ForeignDeployment {
        /// The group on the cluster.
        group: String,
        /// This database's deployment.
        ours: String,
        /// The other member's deployment.
        theirs: String,
        /// The other member's replica id.
        replica: String,
    },
    /// An I/O error (creating the data directory).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl EventsError {
    /// Whether starting the process again cannot mend it: the operator must act
    /// first (stale offsets need `--reset-offsets`).
    pub fn needs_the_operator(&self) -> bool {
        matches!(
            self,
            Self::StaleOffsets { .. }
                | Self::LostPartitions { .. }
                | Self::NoStartingPoint { .. }
                | Self::ForeignDeployment { .. }
        )
    }
}
