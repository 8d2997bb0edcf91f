//! Dead letters: a record a consumer cannot process (undecodable, invalid, of an
//! unknown type, or failing permanently) is copied to `<topic>.dlq` with its original
//! key, value and headers plus `dlq_*` headers that say why and where it came from.
//! The consumer moves its offset only after the dead-letter topic acknowledged it.
//! [`admin`] reads them back, replays and purges them for operators.

pub mod admin;

use rdkafka::message::{Header, OwnedHeaders};

use crate::catalog::dead_letter_topic;
use crate::error::EventsError;
use crate::kafka::KafkaArgs;
use crate::producer::Producer;

/// Header names added to a dead letter.
pub mod header {
    /// Machine-readable reason: `malformed-envelope`, `unknown-type`, `undecodable`,
    /// `invalid`, `handler-rejected`.
    pub const REASON: &str = "dlq_reason";
    /// Human-readable error.
    pub const ERROR: &str = "dlq_error";
    /// Topic the record came from.
    pub const SOURCE_TOPIC: &str = "dlq_source_topic";
    /// Partition the record came from.
    pub const SOURCE_PARTITION: &str = "dlq_source_partition";
    /// Offset of the record.
    pub const SOURCE_OFFSET: &str = "dlq_source_offset";
    /// Consumer group that gave up on it.
    pub const CONSUMER_GROUP: &str = "dlq_consumer_group";
    /// When it was dead-lettered (RFC 3339).
    pub const TIME: &str = "dlq_time";
}

/// Publishes dead letters for one consumer group.
pub struct DeadLetters {
    producer: Producer,
    group: String,
}

impl DeadLetters {
    /// A dead-letter publisher for `group`.
    pub fn new(kafka: &KafkaArgs, group: &str) -> Result<Self, EventsError> {
        Ok(Self {
            producer: Producer::new(kafka, &format!("{group}-dlq"))?,
            group: group.to_owned(),
        })
    }

    /// Copies a record to its dead-letter topic (the consumer's, or one stored by a
    /// service that gave up on it later) and waits for the acknowledgement.
    pub async fn send_record(
        &self,
        record: &DeadRecord<'_>,
        reason: &str,
        error: &str,
    ) -> Result<(), EventsError> {
        let mut headers = OwnedHeaders::new();
        for (key, value) in &record.headers {
            headers = headers.insert(Header { key, value: *value });
        }
        let partition = record.partition.to_string();
        let offset = record.offset.to_string();
        let time = chrono::Utc::now().to_rfc3339();
        for (k, v) in [
            (header::REASON, reason),
            (header::ERROR, error),
            (header::SOURCE_TOPIC, record.topic),
            (header::SOURCE_PARTITION, partition.as_str()),
            (header::SOURCE_OFFSET, offset.as_str()),
            (header::CONSUMER_GROUP, self.group.as_str()),
            (header::TIME, time.as_str()),
        ] {
            headers = headers.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let topic = dead_letter_topic(record.topic);
        let delivery = self
            .producer
            .send(&topic, record.key, record.payload, headers)
            .map_err(EventsError::Kafka)?;
        match delivery.await {
            Ok(Ok(_)) => {
                metrics::counter!("consumer_dead_letters_total", "group" => self.group.clone(), "reason" => reason.to_owned())
                    .increment(1);
                Ok(())
            }
            Ok(Err(e)) => Err(EventsError::Kafka(e)),
            Err(_) => Err(EventsError::Delivery(
                "dead-letter producer dropped the delivery".into(),
            )),
        }
    }
}

/// The parts of a record that a dead letter copies.
#[derive(Debug, Clone)]
pub struct DeadRecord<'a> {
    /// Topic it came from.
    pub topic: &'a str,
    /// Partition it came from.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// The record key.
    pub key: Option<&'a [u8]>,
    /// The record value.
    pub payload: Option<&'a [u8]>,
    /// The record headers, in order.
    pub headers: Vec<(&'a str, Option<&'a [u8]>)>,
}
