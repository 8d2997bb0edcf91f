//! Offsets kept in the service database (`weft_consumer_offsets`): the next offset of
//! each partition, written in the transaction that applies the records before it, and
//! read back to assign the partitions at start-up.
//!
//! A stored offset past a partition's end means the broker's data was reset or
//! replaced: reading on would skip every new record, so the consumer stops with
//! [`EventsError::StaleOffsets`] unless the operator chose a [`StaleOffsets`] way
//! out (`--reset-offsets earliest|latest`), which is logged and counted
//! (`consumer_offsets_reset_total`). A stored offset before a partition's start
//! (records deleted unread) is reported loudly and reading starts at the oldest record
//! left; the inbox keeps records that come again from being applied twice.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::{Offset, TopicPartitionList};
use sqlx::{AnyConnection, Row as _};

use crate::db::Database;
use crate::error::EventsError;
use crate::kafka::KafkaArgs;

/// One partition's low and high watermark.
#[derive(Debug, Clone)]
pub struct Marks {
    /// Topic (weft's name).
    pub topic: String,
    /// The topic's name on the cluster (with `--kafka-prefix`).
    pub cluster_topic: String,
    /// Partition.
    pub partition: i32,
    /// First offset in the log.
    pub low: i64,
    /// Offset the next record gets.
    pub high: i64,
}

/// Every partition of `topics` (weft's names) with its watermarks, read off the async
/// threads (librdkafka's calls block).
pub async fn watermarks(kafka: &KafkaArgs, topics: &[String]) -> Result<Vec<Marks>, EventsError> {
    let config = kafka.client(&format!("weft-watermarks-{}", std::process::id()));
    let topics: Vec<(String, String)> =
        topics.iter().map(|t| (t.clone(), kafka.topic(t))).collect();
    let brokers = kafka.brokers.clone();
    tokio::task::spawn_blocking(move || {
        let client: BaseConsumer = config.create()?;
        let timeout = Duration::from_secs(5);
        let mut out = Vec::new();
        for (name, topic) in &topics {
            let metadata = client.fetch_metadata(Some(topic), timeout)?;
            let missing = || EventsError::MissingTopic {
                topic: topic.clone(),
                brokers: brokers.clone(),
            };
            let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
                return Err(missing());
            };
            match t.error() {
                Some(rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => {
                    return Err(missing());
                }
                Some(e) => return Err(EventsError::Delivery(format!("topic {topic}: {e:?}"))),
                None => {}
            }
            if t.partitions().is_empty() {
                return Err(missing());
            }
            for p in t.partitions() {
                let (low, high) = client.fetch_watermarks(topic, p.id(), timeout)?;
                out.push(Marks {
                    topic: name.clone(),
                    cluster_topic: topic.clone(),
                    partition: p.id(),
                    low,
                    high,
                });
            }
        }
        Ok(out)
    })
    .await
    .map_err(|e| EventsError::Delivery(format!("watermark task failed: {e}")))?
}

/// The stored next offset of every partition of `group`.
pub async fn stored(
    db: &Database,
    group: &str,
) -> Result<HashMap<(String, i32), i64>, EventsError> {
    let mut conn = db.pool().acquire().await?;
    Ok(stored_in(&mut conn, group).await?)
}

/// [`stored`], read through `conn` (inside a transaction, say).
pub async fn stored_in(
    conn: &mut AnyConnection,
    group: &str,
) -> Result<HashMap<(String, i32), i64>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT topic, kafka_partition, next_offset FROM weft_consumer_offsets \
         WHERE consumer_group = $1",
    )
    .bind(group.to_owned())
    .fetch_all(&mut *conn)
    .await?;
    let mut stored = HashMap::new();
    for row in rows {
        let topic: String = row.try_get(0)?;
        let partition: i64 = row.try_get(1)?;
        let next: i64 = row.try_get(2)?;
        stored.insert((topic, partition as i32), next);
    }
    Ok(stored)
}

/// What a consumer does with a stored offset past its partition's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum StaleOffsets {
    /// Stop with [`EventsError::StaleOffsets`]: the operator decides.
    #[default]
    Stop,
    /// Read the partition from its beginning (the inbox skips what was applied).
    Earliest,
    /// Skip to the partition's end: records there now are not read.
    Latest,
}

/// Where a consumer group that has never stored an offset begins (`--from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StartFrom {
    /// At the first record the topics still hold: their whole history is applied.
    Earliest,
    /// At the topics' end: only records published from now on are applied.
    Latest,
}

impl StartFrom {
    /// The flag's word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Earliest => "earliest",
            Self::Latest => "latest",
        }
    }
}

/// The consumer flags every consuming service shares.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConsumerArgs {
    /// What the consumer does with a stored offset past its partition's end (the
    /// broker's data was reset or replaced): `stop` with an error naming it (the
    /// default), read the partition again from the `earliest` record (the inbox skips
    /// what was applied), or skip to the `latest`.
    #[arg(long, env = "WEFT_RESET_OFFSETS", value_enum, default_value_t = StaleOffsets::Stop)]
    pub reset_offsets: StaleOffsets,
    /// Where the consumer begins when its database has no offsets yet but its topics
    /// have history (another deployment's, or this one's before its database was
    /// replaced): the `earliest` record, applying the whole history again (orders
    /// created, emails sent), or the `latest`, applying only what comes next. Without
    /// it such a consumer refuses to start, unless replaying its effects is harmless
    /// (a projection). Ignored once offsets are stored.
    #[arg(long = "from", env = "WEFT_CONSUMER_FROM", value_enum)]
    pub from: Option<StartFrom>,
}

/// Where each partition of `marks` starts, and the offsets to store again because the
/// operator reset them (see [`assignment`]).
#[derive(Debug)]
pub struct Starts {
    /// The partitions at their offsets.
    pub tpl: TopicPartitionList,
    /// The next offset of each partition, as a number (for lag and replays).
    pub next: HashMap<(String, i32), i64>,
    /// Partitions whose stored offset `--reset-offsets` moved, with the new one.
    pub resets: Vec<((String, i32), i64)>,
}

/// Where each partition starts: its stored offset when that lies in the log; past the
/// end, what `stale` says; before the start (or with nothing stored), the oldest record
/// left (with a warning when records were deleted unread).
pub fn assignment(
    group: &str,
    marks: &[Marks],
    stored: &HashMap<(String, i32), i64>,
    stale: StaleOffsets,
) -> Result<Starts, EventsError> {
    check_lost_partitions(group, marks, stored, stale)?;
    let mut tpl = TopicPartitionList::new();
    let mut next_of = HashMap::with_capacity(marks.len());
    let mut resets = Vec::new();
    for m in marks {
        let key = (m.topic.clone(), m.partition);
        let next = match stored.get(&key) {
            None => m.low,
            Some(&next) if next > m.high => {
                let start = past_the_end(group, m, next, stale)?;
                resets.push((key.clone(), start));
                start
            }
            Some(&next) if next < m.low => {
                warn_outside(
                    group,
                    m,
                    next,
                    format_args!(
                        "{} records before the log's start were deleted unread; reading from the oldest left",
                        m.low - next
                    ),
                );
                m.low
            }
            Some(&next) => next,
        };
        tpl.add_partition_offset(&m.cluster_topic, m.partition, Offset::Offset(next))?;
        next_of.insert(key, next);
    }
    Ok(Starts {
        tpl,
        next: next_of,
        resets,
    })
}

/// Refuses offsets stored for a partition the topic no longer has (it was recreated
/// with fewer), unless `stale` says to go on without it.
fn check_lost_partitions(
    group: &str,
    marks: &[Marks],
    stored: &HashMap<(String, i32), i64>,
    stale: StaleOffsets,
) -> Result<(), EventsError> {
    for ((topic, partition), next) in stored {
        let partitions = marks.iter().filter(|m| &m.topic == topic).count();
        if partitions == 0
            || marks
                .iter()
                .any(|m| &m.topic == topic && m.partition == *partition)
        {
            continue;
        }
        if stale == StaleOffsets::Stop {
            return Err(EventsError::LostPartitions {
                group: group.to_owned(),
                topic: topic.clone(),
                partition: *partition,
                partitions,
            });
        }
        tracing::warn!(
            group,
            %topic,
            partition,
            stored = next,
            partitions,
            "the topic has lost this partition (recreated with fewer); going on without it as --reset-offsets asked"
        );
    }
    Ok(())
}

/// Where the partition of `m` starts when its stored offset `next` lies past its end:
/// what `stale` says, logged and counted; an error when it says stop.
fn past_the_end(
    group: &str,
    m: &Marks,
    next: i64,
    stale: StaleOffsets,
) -> Result<i64, EventsError> {
    let (start, to) = match stale {
        StaleOffsets::Stop => {
            return Err(EventsError::StaleOffsets {
                group: group.to_owned(),
                topic: m.topic.clone(),
                partition: m.partition,
                stored: next,
                end: m.high,
            });
        }
        StaleOffsets::Earliest => (m.low, "earliest"),
        StaleOffsets::Latest => (m.high, "latest"),
    };
    warn_outside(
        group,
        m,
        next,
        format_args!(
            "the stored offset lies past the end of the log (the broker's data was reset or replaced); reset to the {to} record as asked by --reset-offsets"
        ),
    );
    metrics::counter!("consumer_offsets_reset_total", "group" => group.to_owned(), "to" => to)
        .increment(1);
    Ok(start)
}

/// Warns that the offset `next` that `group` stored for the partition of `m` lies
/// outside its log, and `what` follows.
fn warn_outside(group: &str, m: &Marks, next: i64, what: std::fmt::Arguments<'_>) {
    tracing::warn!(
        group,
        topic = %m.topic,
        partition = m.partition,
        stored = next,
        start = m.low,
        end = m.high,
        "{what}"
    );
}

/// Stores `offsets` as they are, even backwards (an operator's reset), in the
/// transaction `conn` belongs to.
pub async fn overwrite(
    conn: &mut AnyConnection,
    group: &str,
    offsets: &[((String, i32), i64)],
) -> Result<(), sqlx::Error> {
    for ((topic, partition), next) in offsets {
        sqlx::query(
            "INSERT INTO weft_consumer_offsets (consumer_group, topic, kafka_partition, next_offset) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (consumer_group, topic, kafka_partition) \
             DO UPDATE SET next_offset = excluded.next_offset",
        )
        .bind(group.to_owned())
        .bind(topic.clone())
        .bind(i64::from(*partition))
        .bind(*next)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Stores where a group that has never stored an offset begins: every partition of
/// `marks` at its first record (`Earliest`) or its end (`Latest`), unless a replica
/// starting at the same moment stored its own first.
pub async fn begin_at(
    db: &Database,
    group: &str,
    marks: &[Marks],
    from: StartFrom,
) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    for m in marks {
        let next = match from {
            StartFrom::Earliest => m.low,
            StartFrom::Latest => m.high,
        };
        sqlx::query(
            "INSERT INTO weft_consumer_offsets (consumer_group, topic, kafka_partition, next_offset) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (consumer_group, topic, kafka_partition) DO NOTHING",
        )
        .bind(group.to_owned())
        .bind(m.topic.clone())
        .bind(i64::from(m.partition))
        .bind(next)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// Stores the next offset of each partition (after `offsets`' largest offset), in the
/// transaction `conn` belongs to, with one statement for up to 64 partitions. An
/// offset never moves backwards here (a record read again changes nothing); only
/// [`overwrite`] moves it back.
pub async fn record(
    conn: &mut AnyConnection,
    group: &str,
    offsets: &BTreeMap<(String, i32), i64>,
) -> Result<(), sqlx::Error> {
    let offsets: Vec<_> = offsets.iter().collect();
    for run in crate::sql::pow2_chunks(&offsets, 64) {
        let sql = format!(
            "INSERT INTO weft_consumer_offsets (consumer_group, topic, kafka_partition, next_offset) \
             VALUES {} ON CONFLICT (consumer_group, topic, kafka_partition) \
             DO UPDATE SET next_offset = excluded.next_offset \
             WHERE weft_consumer_offsets.next_offset < excluded.next_offset",
            crate::sql::values(conn, run.len(), 4)
        );
        let mut query = sqlx::query(&sql);
        for ((topic, partition), last) in run {
            query = query
                .bind(group.to_owned())
                .bind(topic.clone())
                .bind(i64::from(*partition))
                .bind(*last + 1);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Forgets the group's inbox and offsets (a rewind of the whole group, which also
/// releases its claims), in the transaction `conn` belongs to.
pub async fn forget(conn: &mut AnyConnection, group: &str) -> Result<(), sqlx::Error> {
    for table in ["weft_inbox", "weft_consumer_offsets"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE consumer_group = $1"))
            .bind(group.to_owned())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks(partitions: i32) -> Vec<Marks> {
        (0..partitions)
            .map(|p| Marks {
                topic: "order-events".into(),
                cluster_topic: "order-events".into(),
                partition: p,
                low: 0,
                high: 10,
            })
            .collect()
    }

    #[test]
    fn offsets_of_a_partition_the_topic_lost_stop_the_consumer_unless_told() {
        let stored: HashMap<(String, i32), i64> = [
            (("order-events".to_owned(), 0), 4),
            (("order-events".to_owned(), 2), 7),
        ]
        .into();
        let err = assignment("weft-analytics", &marks(2), &stored, StaleOffsets::Stop).unwrap_err();
        assert!(err.needs_the_operator());
        let text = err.to_string();
        assert!(text.contains("partition 2 of order-events"), "{text}");
        assert!(text.contains("only 2 partition(s)"), "{text}");

        for told in [StaleOffsets::Earliest, StaleOffsets::Latest] {
            let starts = assignment("weft-analytics", &marks(2), &stored, told).unwrap();
            assert_eq!(starts.tpl.count(), 2);
            assert_eq!(
                starts
                    .tpl
                    .find_partition("order-events", 0)
                    .unwrap()
                    .offset(),
                Offset::Offset(4)
            );
        }
        // The same offsets on a topic that kept its partitions start where they were.
        let starts = assignment("weft-analytics", &marks(3), &stored, StaleOffsets::Stop).unwrap();
        assert_eq!(
            starts
                .tpl
                .find_partition("order-events", 2)
                .unwrap()
                .offset(),
            Offset::Offset(7)
        );
        assert!(starts.resets.is_empty());
    }

    #[test]
    fn a_stale_offset_is_reset_only_as_told_and_stored_again() {
        let stored: HashMap<(String, i32), i64> = [(("order-events".to_owned(), 1), 50)].into();
        let err = assignment("g", &marks(2), &stored, StaleOffsets::Stop).unwrap_err();
        assert!(matches!(
            err,
            EventsError::StaleOffsets {
                stored: 50,
                end: 10,
                ..
            }
        ));
        let early = assignment("g", &marks(2), &stored, StaleOffsets::Earliest).unwrap();
        assert_eq!(early.resets, vec![(("order-events".to_owned(), 1), 0)]);
        let late = assignment("g", &marks(2), &stored, StaleOffsets::Latest).unwrap();
        assert_eq!(late.resets, vec![(("order-events".to_owned(), 1), 10)]);
        // A partition with nothing stored starts at its first record, not reset.
        assert_eq!(late.next[&("order-events".to_owned(), 0)], 0);
    }
}
