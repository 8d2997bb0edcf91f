//! Records a test puts on a topic itself, as a producing service would: with its
//! headers, acknowledged by the broker before the test goes on.

use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Sends `record` with `headers` (name and UTF-8 value) as its headers, and waits up to 10 s for the broker's acknowledgement; panics naming the topic when
/// the broker does not take it.
pub async fn produce<K, V>(
    producer: &FutureProducer,
    record: FutureRecord<'_, str, [u8]>,
    headers: impl IntoIterator<Item = (K, V)>,
) where
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut all = OwnedHeaders::new();
    for (key, value) in headers {
        all = all.insert(Header {
            key: key.as_ref(),
            value: Some(value.as_ref().as_bytes()),
        });
    }
    let topic = record.topic;
    if let Err((e, _)) = producer
        .send(record.headers(all), Duration::from_secs(10))
        .await
    {
        panic!("the broker did not take a record for {topic}: {e}");
    }
}
