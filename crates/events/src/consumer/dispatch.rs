//! From a Kafka record to what the runtime does with it: parse the CloudEvents
//! envelope and pick the handler by `ce_type` — never by trying to parse the payload
//! as one type after another. A record without a usable envelope, or of a type no
//! catalogue knows, is a dead letter before any handler sees it.

use std::collections::HashMap;
use std::sync::Arc;

use rdkafka::Message as _;
use rdkafka::message::{BorrowedMessage, Headers as _};

use super::{Handler, HandlerError, Projection};
use crate::catalog::{self, DomainEvent};
use crate::dlq::DeadRecord;
use crate::envelope::{Envelope, EventContext};

/// One record as a handler sees it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The CloudEvents attributes.
    pub envelope: Envelope,
    /// Topic it came from.
    pub topic: String,
    /// Partition it came from.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// The record key.
    pub key: Option<String>,
    /// The protobuf payload.
    pub payload: Vec<u8>,
    /// The record headers as they arrived.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Whether this record is replayed by a rewind (see [`super::Rewinder`]) rather
    /// than read live.
    pub replaying: bool,
}

impl Received {
    /// Decodes the payload as `E`, which must be the type the envelope names, and
    /// checks its metadata agrees with the envelope. Any mismatch is permanent.
    pub fn decode<E: DomainEvent>(&self) -> Result<E, HandlerError> {
        if self.envelope.event_type != E::TYPE {
            return Err(HandlerError::Permanent(format!(
                "handler for {} got {}",
                E::TYPE,
                self.envelope.event_type
            )));
        }
        let event = E::decode(self.payload.as_slice())
            .map_err(|e| HandlerError::Undecodable(format!("undecodable {}: {e}", E::TYPE)))?;
        let meta = event
            .metadata()
            .ok_or_else(|| HandlerError::Permanent("payload has no metadata".into()))?;
        if meta.event_id != self.envelope.id {
            return Err(HandlerError::Permanent(format!(
                "payload event id {:?} differs from ce_id {:?}",
                meta.event_id, self.envelope.id
            )));
        }
        Ok(event)
    }

    /// The record as a dead letter copies it.
    pub fn dead_record(&self) -> DeadRecord<'_> {
        DeadRecord {
            topic: &self.topic,
            partition: self.partition,
            offset: self.offset,
            key: self.key.as_deref().map(str::as_bytes),
            payload: Some(&self.payload),
            headers: self
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), Some(v.as_slice())))
                .collect(),
        }
    }

    /// The context of events this record causes: same correlation, caused by it.
    pub fn context(&self) -> EventContext {
        EventContext {
            correlation_id: if self.envelope.correlation_id.is_empty() {
                self.envelope.id.clone()
            } else {
                self.envelope.correlation_id.clone()
            },
            causation_id: self.envelope.id.clone(),
        }
    }
}

/// A record taken off the consumer, owned, with its bytes exactly as they arrived.
#[derive(Debug, Clone)]
pub struct Record {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes.
    pub payload: Option<Vec<u8>>,
    /// Headers, in order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Record {
    /// Copies a record out of librdkafka's buffer, naming its topic as weft does
    /// (without `prefix`, the cluster's `--kafka-prefix`).
    pub fn of(msg: &BorrowedMessage<'_>, prefix: &str) -> Self {
        let topic = msg.topic();
        Self {
            topic: topic.strip_prefix(prefix).unwrap_or(topic).to_owned(),
            partition: msg.partition(),
            offset: msg.offset(),
            key: msg.key().map(<[u8]>::to_vec),
            payload: msg.payload().map(<[u8]>::to_vec),
            headers: msg
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// The record as a dead letter copies it.
    pub fn dead(&self) -> DeadRecord<'_> {
        DeadRecord {
            topic: &self.topic,
            partition: self.partition,
            offset: self.offset,
            key: self.key.as_deref(),
            payload: self.payload.as_deref(),
            headers: self
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_deref()))
                .collect(),
        }
    }
}

/// How a record is applied.
#[derive(Clone)]
pub enum Apply {
    /// By a handler, on its own.
    Each(Arc<dyn Handler>),
    /// By a projection's scope, with the other records of its transaction.
    Scoped(Arc<dyn Projection>),
}

/// What the runtime does with a record.
pub enum Decision {
    /// Apply it.
    Apply(Apply, Box<Received>),
    /// A known event type this consumer does not handle: only its offset moves.
    Ignore,
    /// The record's partition is no longer this member's: left to the member that
    /// holds it now (nothing applied, no offset moved).
    Fenced,
    /// Send it to the dead-letter topic with this reason and error.
    DeadLetter {
        /// Machine-readable reason (`dlq_reason`).
        reason: &'static str,
        /// Human-readable error (`dlq_error`).
        error: String,
        /// The parsed record, when the envelope was readable.
        received: Option<Box<Received>>,
    },
}

impl Decision {
    /// The dead letter a handler's permanent failure on `received` turns into:
    /// `undecodable` for a payload that does not decode, `invalid` otherwise.
    pub fn rejected(received: Box<Received>, error: &HandlerError) -> Self {
        let (reason, error) = match error {
            HandlerError::Undecodable(e) => ("undecodable", e.clone()),
            HandlerError::Permanent(e) | HandlerError::Transient(e) => ("invalid", e.clone()),
        };
        Self::DeadLetter {
            reason,
            error,
            received: Some(received),
        }
    }
}

/// The `dlq_reason` of a record whose handler kept failing transiently.
pub const RETRIES_EXHAUSTED: &str = "retries-exhausted";

/// The handlers of a consumer, by event type.
pub struct Dispatch {
    /// Handlers by full proto name.
    pub handlers: HashMap<&'static str, Apply>,
    /// The handler of every other catalogued type.
    pub fallback: Option<Apply>,
}

impl Dispatch {
    /// Decides what to do with `record`.
    pub fn decide(&self, record: &Record, replaying: bool) -> Decision {
        let headers = record
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_deref()));
        let envelope = match Envelope::from_headers(headers) {
            Ok(e) => e,
            Err(e) => {
                return Decision::DeadLetter {
                    reason: "malformed-envelope",
                    error: e.to_string(),
                    received: None,
                };
            }
        };
        let handler = match self.handlers.get(envelope.event_type.as_str()) {
            Some(h) => h.clone(),
            None if catalog::topic_of(&envelope.event_type).is_none() => {
                return Decision::DeadLetter {
                    reason: "unknown-type",
                    error: format!("unknown event type {:?}", envelope.event_type),
                    received: None,
                };
            }
            None => match &self.fallback {
                Some(f) => f.clone(),
                None => return Decision::Ignore,
            },
        };
        let received = Received {
            envelope,
            topic: record.topic.clone(),
            partition: record.partition,
            offset: record.offset,
            key: record
                .key
                .as_deref()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            payload: record.payload.clone().unwrap_or_default(),
            headers: record
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().unwrap_or_default()))
                .collect(),
            replaying,
        };
        Decision::Apply(handler, Box::new(received))
    }
}
