//! The dead-letter topics for operators: read what went there and why, choose
//! records by position and consumer group, replay them to the topic they came from,
//! and purge a dead-letter topic. `weft dlq` and the operations API both work
//! through this module.
//!
//! A replay re-publishes the original key, value and headers (without the `dlq_*`
//! ones, plus [`REPLAYED_FROM`]) to the original topic with the idempotent producer.
//! Every consumer group sees it again: those that applied the event skip it (their
//! inbox knows its `ce_id`), the one that gave up on it tries again, so replaying a
//! record twice applies it once.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message as _, Offset, TopicPartitionList};

use super::header;
use crate::catalog::{TOPICS, dead_letter_topic};
use crate::consumer::Record;
use crate::error::EventsError;
use crate::kafka::KafkaArgs;

/// The header a replayed record carries: `<dlq topic>/<partition>:<offset>`.
pub const REPLAYED_FROM: &str = "dlq_replayed_from";

const TIMEOUT: Duration = Duration::from_secs(10);

/// One record of a dead-letter topic, as read back.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The dead-letter topic's name on the cluster.
    pub topic: String,
    /// Its partition there.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
    /// When it was written to the dead-letter topic (ms since the epoch), if the
    /// broker says.
    pub timestamp_ms: Option<i64>,
    /// The original key.
    pub key: Option<Vec<u8>>,
    /// The original value.
    pub payload: Option<Vec<u8>>,
    /// The original headers and the `dlq_*` ones, in order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl DeadLetter {
    /// The text of header `name` ("" when missing or not UTF-8).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
            .and_then(|v| std::str::from_utf8(v).ok())
            .unwrap_or("")
    }

    /// Why it was dead-lettered: `malformed-envelope`, `unknown-type`, …
    pub fn reason(&self) -> &str {
        self.header(header::REASON)
    }

    /// The consumer group that gave up on it.
    pub fn group(&self) -> &str {
        self.header(header::CONSUMER_GROUP)
    }

    /// Its `ce_type` ("" when it had none).
    pub fn event_type(&self) -> &str {
        self.header(crate::envelope::header::TYPE)
    }

    /// `<partition>:<offset>`.
    pub fn position(&self) -> String {
        format!("{}:{}", self.partition, self.offset)
    }
}

/// A dead letter published again: where from and where to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// `<dlq topic>/<partition>:<offset>`.
    pub from: String,
    /// The topic it went back to (its name on the cluster).
    pub topic: String,
    /// Its partition there.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
}

/// weft's name of the dead-letter topic of `topic` (`user-events` or
/// `user-events.dlq` → `user-events.dlq`); anything else is refused.
pub fn dlq_topic(topic: &str) -> Result<String, EventsError> {
    let source = topic.trim_end_matches(".dlq");
    if !TOPICS.contains(&source) {
        return Err(EventsError::NotADeadLetterTopic {
            topic: dead_letter_topic(source),
            known: TOPICS.join(", "),
        });
    }
    Ok(dead_letter_topic(source))
}

/// `2:15` → partition 2, offset 15; `15` → partition 0, offset 15.
pub fn parse_position(at: &str) -> Result<(i32, i64), EventsError> {
    let bad = || EventsError::BadPosition(at.to_owned());
    match at.split_once(':') {
        Some((p, o)) => Ok((p.parse().map_err(|_| bad())?, o.parse().map_err(|_| bad())?)),
        None => Ok((0, at.parse().map_err(|_| bad())?)),
    }
}

/// Every record of the dead-letter topic `topic` (its name on the cluster),
/// partition by partition, to the end as it is now. Blocking: run it off the async
/// workers.
pub fn read_all(kafka: &KafkaArgs, topic: &str) -> Result<Vec<DeadLetter>, EventsError> {
    let id = format!("weft-dlq-{}", std::process::id());
    let consumer: BaseConsumer = kafka
        .client(&id)
        .set("group.id", kafka.group(&id))
        .set("enable.auto.commit", "false")
        .create()?;
    let partitions = crate::kafka::partitions_of(&consumer, topic, &kafka.brokers)?;
    let mut out = Vec::new();
    for p in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, TIMEOUT)?;
        if high <= low {
            continue;
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, p, Offset::Offset(low))?;
        consumer.assign(&tpl)?;
        let deadline = Instant::now() + TIMEOUT * 3;
        let mut next = low;
        while next < high {
            if Instant::now() > deadline {
                return Err(EventsError::ReadTimedOut {
                    topic: topic.to_owned(),
                    partition: p,
                    at: next,
                    end: high,
                });
            }
            if let Some(m) = consumer.poll(Duration::from_millis(500)) {
                let m = m?;
                next = m.offset() + 1;
                let record = Record::of(&m, "");
                out.push(DeadLetter {
                    topic: record.topic,
                    partition: record.partition,
                    offset: record.offset,
                    timestamp_ms: m.timestamp().to_millis(),
                    key: record.key,
                    payload: record.payload,
                    headers: record.headers,
                });
            }
        }
    }
    Ok(out)
}

/// The records at `positions` (each must be there), or every record when `None`;
/// only those of consumer group `group` when given. `records` were read from the
/// dead-letter topic `topic`.
pub fn choose<'a>(
    topic: &str,
    records: &'a [DeadLetter],
    positions: Option<&[(i32, i64)]>,
    group: Option<&str>,
) -> Result<Vec<&'a DeadLetter>, EventsError> {
    if let Some(wanted) = positions {
        for &(partition, offset) in wanted {
            if !records
                .iter()
                .any(|m| m.partition == partition && m.offset == offset)
            {
                return Err(EventsError::NoDeadLetter {
                    topic: topic.to_owned(),
                    partition,
                    offset,
                });
            }
        }
    }
    Ok(records
        .iter()
        .filter(|m| positions.is_none_or(|w| w.contains(&(m.partition, m.offset))))
        .filter(|m| group.is_none_or(|g| m.group() == g))
        .collect())
}

/// Publishes `chosen` (read from the dead-letter topic `dlq`) again to the topics
/// they came from, one after the other, each acknowledged before the next.
pub async fn replay(
    kafka: &KafkaArgs,
    dlq: &str,
    chosen: &[&DeadLetter],
) -> Result<Vec<Replayed>, EventsError> {
    let producer: FutureProducer = kafka.producer("weft-dlq-replay").create()?;
    let mut done = Vec::with_capacity(chosen.len());
    for m in chosen {
        // The source header holds weft's name of the topic; a dead letter without one
        // goes back to the topic its dead-letter topic is named after.
        let source = match m.header(header::SOURCE_TOPIC) {
            "" => dlq.trim_end_matches(".dlq").to_owned(),
            s => kafka.topic(s),
        };
        let from = format!("{dlq}/{}", m.position());
        let mut headers = OwnedHeaders::new();
        for (key, value) in m.headers.iter().filter(|(k, _)| !k.starts_with("dlq_")) {
            headers = headers.insert(Header {
                key,
                value: value.as_deref(),
            });
        }
        headers = headers.insert(Header {
            key: REPLAYED_FROM,
            value: Some(from.as_bytes()),
        });
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&source).headers(headers);
        if let Some(key) = &m.key {
            record = record.key(key);
        }
        if let Some(payload) = &m.payload {
            record = record.payload(payload);
        }
        let delivery = producer.send(record, TIMEOUT).await.map_err(|(e, _)| e)?;
        done.push(Replayed {
            from,
            topic: source.clone(),
            partition: delivery.partition,
            offset: delivery.offset,
        });
    }
    Ok(done)
}

/// Deletes the topic `topic` (its name on the cluster) and creates it again, empty,
/// with as many partitions and replicas as it had; how many partitions.
pub async fn purge(kafka: &KafkaArgs, topic: &str) -> Result<usize, EventsError> {
    let admin: AdminClient<DefaultClientContext> = kafka.client("weft-dlq-purge").create()?;
    let (partitions, replicas) = admin
        .inner()
        .fetch_metadata(Some(topic), TIMEOUT)?
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| {
            let replicas = t.partitions().first().map_or(1, |p| p.replicas().len());
            (t.partitions().len(), replicas)
        })
        .ok_or_else(|| EventsError::MissingTopic {
            topic: topic.to_owned(),
            brokers: kafka.brokers.clone(),
        })?;
    let replicas = i32::try_from(replicas).unwrap_or(1).max(1);
    let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    for result in admin.delete_topics(&[topic], &options).await? {
        result.map_err(|(t, e)| EventsError::Provision {
            topic: t,
            reason: format!("deleting it: {e}"),
        })?;
    }
    let count = i32::try_from(partitions).unwrap_or(1);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let new = NewTopic::new(topic, count, TopicReplication::Fixed(replicas));
        match admin
            .create_topics(&[new], &options)
            .await?
            .into_iter()
            .next()
        {
            Some(Ok(_)) | None => break,
            // The deletion is not done yet.
            Some(Err(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Some(Err((t, e))) => {
                return Err(EventsError::Provision {
                    topic: t,
                    reason: e.to_string(),
                });
            }
        }
    }
    Ok(partitions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_topics_are_checked() {
        assert_eq!(parse_position("2:15").unwrap(), (2, 15));
        assert_eq!(parse_position("15").unwrap(), (0, 15));
        assert!(matches!(
            parse_position("x:1"),
            Err(EventsError::BadPosition(_))
        ));
        assert_eq!(dlq_topic("user-events").unwrap(), "user-events.dlq");
        assert_eq!(dlq_topic("user-events.dlq").unwrap(), "user-events.dlq");
        assert!(matches!(
            dlq_topic("payments"),
            Err(EventsError::NotADeadLetterTopic { .. })
        ));
    }

    const T: &str = "user-events.dlq";

    fn letter(partition: i32, offset: i64, group: &str) -> DeadLetter {
        DeadLetter {
            topic: T.into(),
            partition,
            offset,
            timestamp_ms: None,
            key: None,
            payload: None,
            headers: vec![(
                header::CONSUMER_GROUP.into(),
                Some(group.as_bytes().to_vec()),
            )],
        }
    }

    #[test]
    fn records_are_chosen_by_position_and_group() {
        let all = [letter(0, 1, "a"), letter(0, 2, "b"), letter(1, 1, "a")];
        let at = |c: Vec<&DeadLetter>| c.iter().map(|m| m.position()).collect::<Vec<_>>();
        assert_eq!(
            at(choose(T, &all, None, None).unwrap()),
            ["0:1", "0:2", "1:1"]
        );
        assert_eq!(
            at(choose(T, &all, None, Some("a")).unwrap()),
            ["0:1", "1:1"]
        );
        assert_eq!(at(choose(T, &all, Some(&[(0, 2)]), None).unwrap()), ["0:2"]);
        assert_eq!(
            at(choose(T, &all, Some(&[(0, 2)]), Some("a")).unwrap()),
            Vec::<String>::new()
        );
        assert!(matches!(
            choose(T, &all, Some(&[(5, 5)]), None),
            Err(EventsError::NoDeadLetter {
                partition: 5,
                offset: 5,
                ..
            })
        ));
    }
}
