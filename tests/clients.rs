//! The contract in other languages: the Python client (`clients/python`, code
//! generated from `proto/` by stock grpcio-tools when it runs) and the Node client
//! (`clients/node`, contracts loaded from `proto/` by @grpc/proto-loader and
//! protobufjs) each call every RPC of every service of a `weft up` mesh and decode
//! every event type from the three topics, checking each event's metadata against its
//! CloudEvents headers. The Java client (`clients/java`: Maven, grpc-java,
//! kafka-clients) and the Go client (`clients/go`: buf with protoc-gen-go, grpc-go,
//! franz-go), built by `scripts/client-java` and `scripts/client-go`, do the same and
//! read the topics as a consumer group of their own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;

use support::{BrokerKind, Ports, Up, WEFT};

/// Runs a client's check against a fresh mesh on `kind`; its output.
fn check(
    kind: BrokerKind,
    program: std::path::PathBuf,
    script: &str,
    env: &[(&str, std::path::PathBuf)],
) -> String {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let up = Up::start_on(kind, dir.path(), &ports, None, &[]);
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
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    up.stop();
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
        out.contains("25 RPCs called; 13 event types decoded"),
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
        out.contains("25 RPCs called; 13 event types decoded"),
        "{out}"
    );
}

#[test]
fn the_python_client_calls_every_rpc_and_decodes_every_event() {
    python(BrokerKind::Embedded);
}

#[test]
fn the_python_client_calls_every_rpc_and_decodes_every_event_on_kafka() {
    python(BrokerKind::Kafka);
}

#[test]
fn the_node_client_calls_every_rpc_and_decodes_every_event() {
    node(BrokerKind::Embedded);
}

#[test]
fn the_node_client_calls_every_rpc_and_decodes_every_event_on_kafka() {
    node(BrokerKind::Kafka);
}

/// The Java or Go client's check through its build script (`scripts/client-LANG`),
/// which takes a path under `clients/` (`java`, `go/check`) as its first argument.
fn compiled(kind: BrokerKind, lang: &str, path: &str) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(format!("client-{lang}"));
    let out = check(kind, script, path, &[]);
    assert!(
        out.contains(&format!(
            "{lang} client: 25 RPCs called; 13 event types decoded"
        )),
        "{out}"
    );
}

#[test]
fn the_java_client_calls_every_rpc_and_decodes_every_event_in_a_group() {
    compiled(BrokerKind::Embedded, "java", "java");
}

#[test]
fn the_java_client_calls_every_rpc_and_decodes_every_event_in_a_group_on_kafka() {
    compiled(BrokerKind::Kafka, "java", "java");
}

#[test]
fn the_go_client_calls_every_rpc_and_decodes_every_event_in_a_group() {
    compiled(BrokerKind::Embedded, "go", "go/check");
}

#[test]
fn the_go_client_calls_every_rpc_and_decodes_every_event_in_a_group_on_kafka() {
    compiled(BrokerKind::Kafka, "go", "go/check");
}
