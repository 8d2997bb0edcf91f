//! The producer every weft publisher (the outbox relay, dead letters) sends through:
//! librdkafka's producer with each record's delivery report on a oneshot channel.
//!
//! It stands in for rdkafka's `FutureProducer`, whose polling thread calls
//! `poll(100 ms)` in a loop: rdkafka rounds the last sub-millisecond of each wait
//! down to a zero timeout and spins until the deadline, which costs an idle service
//! about 1 % of a core per producer (measured with `perf`). Here the thread polls with
//! a long timeout — librdkafka still returns the moment a report arrives, so delivery
//! is as prompt — and the spin happens once a minute instead of ten times a second.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext};
use rdkafka::{ClientConfig, ClientContext, Message as _};
use tokio::sync::oneshot;

use crate::error::EventsError;
use crate::kafka::KafkaArgs;

/// How long one poll of the delivery reports may wait.
const POLL: Duration = Duration::from_secs(60);

/// Where a record landed: (partition, offset).
pub type Delivered = (i32, i64);

/// The result of one send, once the broker answered (or the record timed out).
pub type Delivery = oneshot::Receiver<Result<Delivered, KafkaError>>;

/// Routes each delivery report to the sender that waits for it.
pub struct Reports;

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = Box<oneshot::Sender<Result<Delivered, KafkaError>>>;

    fn delivery(&self, result: &DeliveryResult<'_>, reply: Self::DeliveryOpaque) {
        let outcome = match result {
            Ok(m) => Ok((m.partition(), m.offset())),
            Err((e, _)) => Err(e.clone()),
        };
        let _ = reply.send(outcome);
    }
}

/// A producer with its polling thread. It takes weft's topic names and sends to the
/// cluster's (with `--kafka-prefix`).
pub struct Producer {
    inner: Arc<BaseProducer<Reports>>,
    stop: Arc<AtomicBool>,
    prefix: String,
}

impl Producer {
    /// weft's idempotent producer (see [`KafkaArgs::producer`]) as `client_id`.
    pub fn new(kafka: &KafkaArgs, client_id: &str) -> Result<Self, EventsError> {
        Self::with_config(&kafka.producer(client_id), &kafka.client.prefix)
    }

    /// The producer configured by `config`, sending to `prefix` + each topic; starts
    /// its polling thread.
    pub fn with_config(config: &ClientConfig, prefix: &str) -> Result<Self, EventsError> {
        let inner: Arc<BaseProducer<Reports>> = Arc::new(config.create_with_context(Reports)?);
        let stop = Arc::new(AtomicBool::new(false));
        let (producer, stopped) = (inner.clone(), stop.clone());
        std::thread::Builder::new()
            .name("weft-producer-poll".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    producer.poll(POLL);
                }
            })
            .map_err(EventsError::Io)?;
        Ok(Self {
            inner,
            stop,
            prefix: prefix.to_owned(),
        })
    }

    /// Queues one record; its delivery report arrives on the returned channel. `Err`
    /// when the producer refuses it at once (local queue full, unknown topic).
    pub fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: OwnedHeaders,
    ) -> Result<Delivery, KafkaError> {
        let (tx, rx) = oneshot::channel();
        let topic = if self.prefix.is_empty() {
            std::borrow::Cow::Borrowed(topic)
        } else {
            std::borrow::Cow::Owned(format!("{}{topic}", self.prefix))
        };
        let mut record: BaseRecord<'_, [u8], [u8], _> =
            BaseRecord::with_opaque_to(&topic, Box::new(tx)).headers(headers);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(p) = payload {
            record = record.payload(p);
        }
        self.inner.send(record).map_err(|(e, _)| e)?;
        Ok(rx)
    }

    /// Waits for every queued record to be delivered, up to `timeout`.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.inner.flush(timeout)
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        // The thread sees the flag after its current poll; it holds the last handle,
        // so librdkafka's client is destroyed then.
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.inner.flush(Duration::from_secs(5));
    }
}
