//! Offsets kept in the service database (`weft_consumer_offsets`): the next offset of
//! each partition, written in the transaction that applies the records before it, and
//! read back to assign the partitions at start-up.
//!
//! A stored offset outside the log — past its end (the broker's data was reset or
//! replaced) or before its start (records deleted unread) — is reported loudly and
//! reading starts at the beginning of what the broker has; the inbox keeps records
//! that come again from being applied twice.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::{Offset, TopicPartitionList};
use sqlx::{AnyConnection, Row as _};

use crate::EventsError;
use crate::db::Database;
use crate::kafka::KafkaArgs;

/// One partition's low and high watermark.
#[derive(Debug, Clone)]
pub struct Marks {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// First offset in the log.
    pub low: i64,
    /// Offset the next record gets.
    pub high: i64,
}

/// Every partition of `topics` with its watermarks, read off the async threads
/// (librdkafka's calls block).
pub async fn watermarks(kafka: &KafkaArgs, topics: &[String]) -> Result<Vec<Marks>, EventsError> {
    let config = kafka.client(&format!("weft-watermarks-{}", std::process::id()));
    let topics = topics.to_vec();
    tokio::task::spawn_blocking(move || {
        let client: BaseConsumer = config.create()?;
        let timeout = Duration::from_secs(5);
        let mut out = Vec::new();
        for topic in &topics {
            let metadata = client.fetch_metadata(Some(topic), timeout)?;
            let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
                return Err(EventsError::Delivery(format!("topic {topic} not found")));
            };
            if let Some(e) = t.error() {
                return Err(EventsError::Delivery(format!("topic {topic}: {e:?}")));
            }
            if t.partitions().is_empty() {
                return Err(EventsError::Delivery(format!(
                    "topic {topic} has no partitions"
                )));
            }
            for p in t.partitions() {
                let (low, high) = client.fetch_watermarks(topic, p.id(), timeout)?;
                out.push(Marks {
                    topic: topic.clone(),
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
    let rows = sqlx::query(
        "SELECT topic, kafka_partition, next_offset FROM weft_consumer_offsets \
         WHERE consumer_group = $1",
    )
    .bind(group.to_owned())
    .fetch_all(db.pool())
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

/// Where each partition starts: its stored offset when that lies in the log, else
/// the beginning (with a warning saying why).
pub fn assignment(
    group: &str,
    marks: &[Marks],
    stored: &HashMap<(String, i32), i64>,
) -> Result<TopicPartitionList, EventsError> {
    let mut tpl = TopicPartitionList::new();
    for m in marks {
        let offset = match stored.get(&(m.topic.clone(), m.partition)) {
            None => Offset::Beginning,
            Some(&next) if next > m.high => {
                tracing::warn!(
                    group,
                    topic = %m.topic,
                    partition = m.partition,
                    stored = next,
                    end = m.high,
                    "the stored offset lies past the end of the log: the broker's data was reset or replaced; reading this partition from its beginning"
                );
                Offset::Beginning
            }
            Some(&next) if next < m.low => {
                tracing::warn!(
                    group,
                    topic = %m.topic,
                    partition = m.partition,
                    stored = next,
                    start = m.low,
                    lost = m.low - next,
                    "records before the log's start were deleted unread; reading from the oldest left"
                );
                Offset::Beginning
            }
            Some(&next) => Offset::Offset(next),
        };
        tpl.add_partition_offset(&m.topic, m.partition, offset)?;
    }
    Ok(tpl)
}

/// Stores the next offset of each partition (after `offsets`' largest offset), in the
/// transaction `conn` belongs to.
pub async fn record(
    conn: &mut AnyConnection,
    group: &str,
    offsets: &BTreeMap<(String, i32), i64>,
) -> Result<(), sqlx::Error> {
    for ((topic, partition), last) in offsets {
        sqlx::query(
            "INSERT INTO weft_consumer_offsets (consumer_group, topic, kafka_partition, next_offset) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (consumer_group, topic, kafka_partition) \
             DO UPDATE SET next_offset = excluded.next_offset",
        )
        .bind(group.to_owned())
        .bind(topic.clone())
        .bind(i64::from(*partition))
        .bind(*last + 1)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Forgets the group's inbox and offsets (a rewind), in the transaction `conn`
/// belongs to.
pub async fn forget(conn: &mut AnyConnection, group: &str) -> Result<(), sqlx::Error> {
    for table in ["weft_inbox", "weft_consumer_offsets"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE consumer_group = $1"))
            .bind(group.to_owned())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
