//! `weft dlq` against `weft up`: a record the consumers gave up on is listed with why
//! and by whom, shown decoded, replayed to its topic (applied once, however often it
//! is replayed), and the dead-letter topic purged; bad arguments get clear errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use support::kafka::signed_up;
use support::{BrokerKind, Mesh, MeshBroker, WEFT, on_each_broker};
use weft_events::{DomainEvent as _, Envelope};
use weft_proto::user::SignupSource;
use weft_testkit::eventually;

const WAIT: Duration = Duration::from_secs(60);

fn dlq(broker: &MeshBroker, args: &[&str]) -> Output {
    Command::new(WEFT)
        .arg("dlq")
        .args(args)
        .env_remove("WEFT_KAFKA_PREFIX")
        .envs(broker.env())
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    support::output::succeeded("weft dlq", out)
}

/// Puts `payload` with `headers` on `topic` under `key`.
async fn send(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    payload: &[u8],
    headers: Vec<(String, String)>,
) {
    let record = FutureRecord::to(topic).key(key).payload(payload);
    weft_testkit::produce(producer, record, headers).await;
}

async fn signups(port: u16) -> (i64, i64) {
    let m = support::grpc::metrics(port).await;
    (m.signups, m.orders_created)
}

async fn analytics_offsets(data: &Path) -> i64 {
    let url = weft_events::db::sqlite_url(data, "analytics").unwrap();
    let db = weft_events::Database::connect(&url).await.unwrap();
    let (n,): (Option<i64>,) = sqlx::query_as(
        "SELECT CAST(SUM(next_offset) AS BIGINT) FROM weft_consumer_offsets WHERE topic = 'user-events'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    n.unwrap_or(0)
}

on_each_broker!(async dead_letters =>
    dead_letters_are_listed_shown_replayed_once_and_purged,
    dead_letters_are_listed_shown_replayed_once_and_purged_on_kafka
);

async fn dead_letters(kind: BrokerKind) {
    let Mesh { dir, ports, up } = Mesh::start(kind).await;
    let brokers = &up.broker;
    let producer = support::kafka::producer(&brokers.bootstrap());

    // A poison record on user-events: every consumer of the topic gives up on it.
    let poison = signed_up("poison", "", "", SignupSource::Unspecified);
    let headers = Envelope::of(&poison).unwrap().headers();
    send(
        &producer,
        &brokers.topic("user-events"),
        "poison",
        b"\xff\xff not protobuf",
        headers,
    )
    .await;
    // And a good signup that (say) a broken analytics gave up on earlier, as the
    // consumers write dead letters.
    let good = signed_up(
        "from-the-dlq",
        "dlq@example.com",
        "Replayed",
        SignupSource::Web,
    );
    let mut headers = Envelope::of(&good).unwrap().headers();
    for (k, v) in [
        ("dlq_reason", "retries-exhausted"),
        ("dlq_error", "after 10 attempts: the database was down"),
        ("dlq_source_topic", "user-events"),
        ("dlq_consumer_group", "weft-analytics"),
        ("dlq_time", "2026-12-01T00:00:00Z"),
    ] {
        headers.push((k.to_owned(), v.to_owned()));
    }
    send(
        &producer,
        &brokers.topic("user-events.dlq"),
        good.key(),
        &prost::Message::encode_to_vec(&good),
        headers,
    )
    .await;

    let listed = eventually("four dead letters", WAIT, || async move {
        let out = dlq(brokers, &["list", "user-events", "--json"]);
        let lines: Vec<Value> = ok(&out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (lines.len() == 4).then_some(lines)
    })
    .await;
    let mut groups: Vec<&str> = listed
        .iter()
        .filter(|l| l["reason"] == "undecodable")
        .map(|l| l["group"].as_str().unwrap())
        .collect();
    groups.sort_unstable();
    assert_eq!(
        groups,
        ["weft-analytics", "weft-notification", "weft-order"]
    );
    let replayable = listed
        .iter()
        .find(|l| l["reason"] == "retries-exhausted")
        .unwrap();
    let at = format!("{}:{}", replayable["partition"], replayable["offset"]);
    let table = ok(&dlq(brokers, &["list", "user-events.dlq"]));
    assert!(
        table.contains("retries-exhausted") && table.contains("weft.user.v1.UserSignedUp"),
        "{table}"
    );

    let shown: Value =
        serde_json::from_str(&ok(&dlq(brokers, &["show", "user-events", &at]))).unwrap();
    assert_eq!(shown["event"]["userId"], "from-the-dlq", "{shown}");
    assert_eq!(shown["headers"]["dlq_consumer_group"], "weft-analytics");

    // Replayed: applied (the signup counted, its welcome order made); replayed again:
    // read, and skipped.
    let before = signups(ports.analytics).await;
    let out = ok(&dlq(brokers, &["replay", "user-events", "--offset", &at]));
    assert!(out.contains("1 replayed"), "{out}");
    eventually("the replayed signup counted", WAIT, || async {
        let now = signups(ports.analytics).await;
        (now == (before.0 + 1, before.1 + 1)).then_some(())
    })
    .await;
    let offsets = analytics_offsets(dir.path()).await;
    ok(&dlq(brokers, &["replay", "user-events", "--offset", &at]));
    eventually("the second replay read", WAIT, || async {
        (analytics_offsets(dir.path()).await > offsets).then_some(())
    })
    .await;
    assert_eq!(
        signups(ports.analytics).await,
        (before.0 + 1, before.1 + 1),
        "a record replayed twice is applied once"
    );
    // Only one group's letters.
    let out = ok(&dlq(
        brokers,
        &["replay", "user-events", "--all", "--group", "nobody"],
    ));
    assert!(out.contains("nothing to replay"), "{out}");

    // Bad arguments.
    for (args, says) in [
        (vec!["list", "payments"], "not a dead-letter topic"),
        (vec!["show", "user-events", "0:999999"], "no dead letter at"),
        (
            vec!["replay", "user-events", "--offset", "0:999999"],
            "no dead letter at 0:999999",
        ),
        (
            vec!["show", "user-events", "zero"],
            "is not <partition>:<offset>",
        ),
        (vec!["replay", "user-events"], "--offset"),
        (vec!["purge", "user-events"], "not purged"),
    ] {
        support::output::failed_saying(&format!("{args:?}"), &dlq(brokers, &args), None, says);
    }

    let out = ok(&dlq(brokers, &["purge", "user-events", "--yes"]));
    let purged = format!("purged {} ", brokers.topic("user-events.dlq"));
    assert!(out.contains(&purged), "{out}");
    let out = ok(&dlq(brokers, &["list", "user-events"]));
    assert!(out.contains("no dead letters"), "{out}");
    up.stop();
}
