//! What tests and benchmarks need besides the records themselves to put events on a
//! mesh's topics and read them back: a producer, a sign-up event as the user service
//! would publish it, and the partitions' end offsets.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::producer::FutureProducer;
use weft_events::EventContext;
use weft_proto::user::{SignupSource, UserSignedUp};

/// A producer with librdkafka's defaults on the cluster at `bootstrap`.
pub fn producer(bootstrap: &str) -> FutureProducer {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap()
}

/// A `UserSignedUp` of `user_id` as the user service publishes it, under a root
/// event context of its own.
pub fn signed_up(user_id: &str, email: &str, name: &str, source: SignupSource) -> UserSignedUp {
    UserSignedUp {
        metadata: Some(EventContext::root().metadata("user", "test")),
        user_id: user_id.into(),
        email: email.into(),
        name: name.into(),
        source: source as i32,
        ..Default::default()
    }
}

/// The high watermark (end offset) of every partition of `topics` on the cluster at
/// `brokers`.
pub fn high_watermarks(brokers: &str, topics: &[impl AsRef<str>]) -> BTreeMap<(String, i32), i64> {
    let client: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let wait = Duration::from_secs(10);
    let mut out = BTreeMap::new();
    for topic in topics.iter().map(AsRef::as_ref) {
        let md = client.fetch_metadata(Some(topic), wait).unwrap();
        for p in md.topics()[0].partitions() {
            let (_, high) = client.fetch_watermarks(topic, p.id(), wait).unwrap();
            out.insert((topic.to_owned(), p.id()), high);
        }
    }
    out
}
