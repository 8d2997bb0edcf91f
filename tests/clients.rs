//! The contract in other languages: the Python client (`clients/python`, code
//! generated from `proto/` by stock grpcio-tools when it runs) and the Node client
//! (`clients/node`, contracts loaded from `proto/` by @grpc/proto-loader and
//! protobufjs) each call every RPC of every service of a `weft up` mesh and decode
//! every event type from the three topics, checking each event's metadata against its
//! CloudEvents headers. The Java client (`clients/java`: Maven, grpc-java,
//! kafka-clients) and the Go client (`clients/go`: buf with protoc-gen-go, grpc-go,
//! franz-go), built by `scripts/client-java` and `scripts/client-go`, do the same and
//! read the topics as a consumer group of their own.
//!
//! Before each check the topics get what a newer contract would publish (see
//! [`publish_contract_additions`]): an event type the clients were built without, on
//! every partition, and a known type carrying a field added after them. Every client
//! skips the first by its `ce_type`, says how many it skipped, and decodes the second.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;
use std::time::Duration;

use prost::Message as _;
use rdkafka::producer::FutureRecord;
use support::kafka::signed_up;
use support::{BrokerKind, Mesh, MeshBroker, WEFT, on_each_broker};
use weft_events::Envelope;
use weft_proto::user::SignupSource;

/// An event type no client knows: one a later version of the contract might add.
const ADDED_TYPE: &str = "weft.user.v1.UserNicknameChosen";

/// Publishes what a newer, compatible contract would: a record of [`ADDED_TYPE`] on
/// every partition of the three topics (first on each, so every reader meets some
/// before it has seen every type it waits for), and a `UserSignedUp` carrying a
/// field the clients' code does not have (number 1000). Returns how many records of
/// the added type there are.
fn publish_contract_additions(broker: &MeshBroker) -> usize {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let producer = support::kafka::producer(&broker.bootstrap());
        let event = signed_up(
            "contract-addition",
            "contract-addition@example.com",
            "Ada Added",
            SignupSource::Api,
        );
        let mut extended = event.encode_to_vec();
        // Field 1000, length-delimited: the tag's varint, the length, the bytes.
        extended.extend_from_slice(&[0xc2, 0x3e, 5]);
        extended.extend_from_slice(b"added");
        let known = Envelope::of(&event).unwrap().headers();
        let added: Vec<(String, String)> = known
            .iter()
            .map(|(k, v)| {
                let v = if k == "ce_type" {
                    ADDED_TYPE.to_owned()
                } else {
                    v.clone()
                };
                (k.clone(), v)
            })
            .collect();
        let send = |topic: String,
                    partition: Option<i32>,
                    payload: Vec<u8>,
                    headers: Vec<(String, String)>| {
            let producer = producer.clone();
            async move {
                let mut record = FutureRecord::to(&topic)
                    .key("contract-addition")
                    .payload(payload.as_slice());
                if let Some(p) = partition {
                    record = record.partition(p);
                }
                weft_testkit::produce(&producer, record, headers).await;
            }
        };
        let mut count = 0;
        for topic in ["user-events", "order-events", "notification-events"] {
            let topic = broker.topic(topic);
            let metadata = {
                use rdkafka::producer::Producer as _;
                producer
                    .client()
                    .fetch_metadata(Some(&topic), Duration::from_secs(30))
                    .unwrap()
            };
            let partitions = metadata.topics()[0].partitions().len();
            assert!(partitions > 0, "{topic} has no partitions");
            for p in 0..partitions {
                send(
                    topic.clone(),
                    Some(i32::try_from(p).unwrap()),
                    event.encode_to_vec(),
                    added.clone(),
                )
                .await;
                count += 1;
            }
        }
        send(broker.topic("user-events"), None, extended, known).await;
        count
    })
}

/// How many records of unknown types a check's summary line says it skipped.
fn skipped(out: &str) -> usize {
    let line = out
        .lines()
        .find(|l| l.ends_with("records of unknown types skipped"))
        .unwrap_or_else(|| panic!("no count of skipped records in:\n{out}"));
    line.rsplit("; ")
        .next()
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Runs a client's check against a fresh mesh on `kind`; its output.
fn check(
    kind: BrokerKind,
    program: std::path::PathBuf,
    script: &str,
    env: &[(&str, std::path::PathBuf)],
) -> String {
    let Mesh { dir, ports, up } = Mesh::start_blocking(kind);
    let added = publish_contract_additions(&up.broker);
    let addr = |port: u16| format!("127.0.0.1:{port}");
    let out = Command::new(program)
        .arg(format!("{}/clients/{script}", env!("CARGO_MANIFEST_DIR")))
        .args(["--user", &addr(ports.user)])
        .args(["--order", &addr(ports.order)])
        .args(["--notification", &addr(ports.notification)])
        .args(["--analytics", &addr(ports.analytics)])
        .args(["--brokers", &up.broker.bootstrap()])
        .args(["--prefix", up.broker.prefix()])
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--weft", WEFT])
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .output()
        .unwrap();
    let stdout = support::output::succeeded(script, &out);
    up.stop();
    let seen = skipped(&stdout);
    assert!(
        (1..=added).contains(&seen),
        "the check skipped {seen} records of the {added} of a type it does not know:\n{stdout}"
    );
    stdout
}

fn python(kind: BrokerKind) {
    let out = check(
        kind,
        weft_testkit::require_tool("weft-python"),
        "python/check.py",
        &[],
    );
    assert!(
        out.contains("26 RPCs called; 13 event types decoded"),
        "{out}"
    );
}

fn node(kind: BrokerKind) {
    let modules = weft_testkit::tools_dir().join("npm/node_modules");
    assert!(
        modules.join("kafkajs").exists() && modules.join("@grpc/grpc-js").exists(),
        "the Node client's packages are not installed; run scripts/install-tools"
    );
    let out = check(
        kind,
        "node".into(),
        "node/check.cjs",
        &[("NODE_PATH", modules)],
    );
    assert!(
        out.contains("26 RPCs called; 13 event types decoded"),
        "{out}"
    );
}

on_each_broker!(sync python =>
    the_python_client_calls_every_rpc_and_decodes_every_event,
    the_python_client_calls_every_rpc_and_decodes_every_event_on_kafka
);

on_each_broker!(sync node =>
    the_node_client_calls_every_rpc_and_decodes_every_event,
    the_node_client_calls_every_rpc_and_decodes_every_event_on_kafka
);

/// The Java or Go client's check through its build script (`scripts/client-LANG`),
/// which takes a path under `clients/` (`java`, `go/check`) as its first argument.
fn compiled(kind: BrokerKind, lang: &str, path: &str) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(format!("client-{lang}"));
    let out = check(kind, script, path, &[]);
    assert!(
        out.contains(&format!(
            "{lang} client: 26 RPCs called; 13 event types decoded"
        )),
        "{out}"
    );
}

on_each_broker!(sync |kind| compiled(kind, "java", "java") =>
    the_java_client_calls_every_rpc_and_decodes_every_event_in_a_group,
    the_java_client_calls_every_rpc_and_decodes_every_event_in_a_group_on_kafka
);

on_each_broker!(sync |kind| compiled(kind, "go", "go/check") =>
    the_go_client_calls_every_rpc_and_decodes_every_event_in_a_group,
    the_go_client_calls_every_rpc_and_decodes_every_event_in_a_group_on_kafka
);
