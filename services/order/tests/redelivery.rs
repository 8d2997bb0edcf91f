//! The same `UserSignedUp` delivered five times, with the order service restarted in
//! the middle, still makes exactly one welcome order and one `OrderCreated`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use prost::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use support::*;
use weft_events::EventContext;
use weft_events::envelope::Envelope;
use weft_proto::order::*;
use weft_proto::user::{SignupSource, UserSignedUp};
use weft_testkit::{header, produce, read_topic_until};

const WAIT: Duration = Duration::from_secs(60);

fn signup(user_id: &str) -> UserSignedUp {
    UserSignedUp {
        metadata: Some(EventContext::root().metadata("user", "test")),
        user_id: user_id.into(),
        email: format!("{user_id}@example.com"),
        name: "Replayed".into(),
        source: SignupSource::Web as i32,
        ..Default::default()
    }
}

async fn deliver(producer: &FutureProducer, event: &UserSignedUp) {
    // One partition for every record, so the sentinel below is processed after them.
    let payload = event.encode_to_vec();
    let record = FutureRecord::to("user-events")
        .partition(0)
        .key(event.user_id.as_str())
        .payload(payload.as_slice());
    produce(producer, record, Envelope::of(event).unwrap().headers()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_deliveries_and_a_restart_make_one_welcome_order() {
    let mut mesh = spawn_mesh(Db::Sqlite).await;
    // Staff read every user's orders.
    let (_, root) = mesh.staff("root@example.com").await;
    mesh.wait_ready(&root).await;
    let kafka = weft_events::kafka::KafkaArgs::new(mesh.home.bootstrap());
    let producer: FutureProducer = kafka.producer("replayer").create().unwrap();

    let event = signup("replayed-user");
    for _ in 0..3 {
        deliver(&producer, &event).await;
    }
    mesh.stop_order().await;
    mesh.start_order().await;
    for _ in 0..2 {
        deliver(&producer, &event).await;
    }
    // A sentinel behind them on the same partition: once it is applied, so are they.
    let sentinel = signup("sentinel-user");
    deliver(&producer, &sentinel).await;
    mesh.wait_ready(&root).await;
    let mut orders = mesh.orders().await;
    let list = |user: &str| {
        with_token(
            ListOrdersRequest {
                user_id: user.into(),
                ..Default::default()
            },
            &root,
        )
    };
    weft_testkit::eventually("the sentinel's welcome order", WAIT, || {
        let mut orders = orders.clone();
        let req = list("sentinel-user");
        async move {
            (!orders
                .list_orders(req)
                .await
                .ok()?
                .into_inner()
                .orders
                .is_empty())
            .then_some(())
        }
    })
    .await;

    let replayed = orders
        .list_orders(list("replayed-user"))
        .await
        .unwrap()
        .into_inner()
        .orders;
    assert_eq!(replayed.len(), 1, "exactly one welcome order: {replayed:?}");
    assert_eq!(replayed[0].kind, OrderKind::Welcome as i32);
    // The outbox publishes in commit order, so the sentinel's event comes last.
    let sentinel_id = sentinel.metadata.as_ref().unwrap().event_id.clone();
    let cause = event.metadata.as_ref().unwrap().event_id.clone();
    let events = read_topic_until(&mesh.home.bootstrap(), "order-events", WAIT, |s| {
        let caused_by = |id: &str| s.iter().any(|m| header(m, "ce_causationid") == Some(id));
        caused_by(&sentinel_id) && caused_by(&cause)
    });
    // The relay may publish a record twice (at least once); what must be one is the
    // event: one distinct OrderCreated id caused by the replayed signup.
    let mut ids: Vec<_> = events
        .iter()
        .filter(|m| header(m, "ce_causationid") == Some(cause.as_str()))
        .filter_map(|m| header(m, "ce_id"))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        1,
        "exactly one OrderCreated caused by the replayed signup"
    );
}
