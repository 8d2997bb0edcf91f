//! The contract in another language: the Python client (`clients/python`, code
//! generated from `proto/` by stock grpcio-tools when it runs) calls every RPC of every
//! service of a `weft up` mesh and decodes every event type from the three topics,
//! checking each event's metadata against its CloudEvents headers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;

use support::{Ports, Up, WEFT};

#[test]
fn the_python_client_calls_every_rpc_and_decodes_every_event() {
    let python = weft_testkit::require_tool("weft-python");
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let up = Up::start(dir.path(), &ports);
    let addr = |port: u16| format!("127.0.0.1:{port}");
    let out = Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/clients/python/check.py"
        ))
        .args(["--user", &addr(ports.user)])
        .args(["--order", &addr(ports.order)])
        .args(["--notification", &addr(ports.notification)])
        .args(["--analytics", &addr(ports.analytics)])
        .args(["--brokers", &addr(ports.broker)])
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--weft", WEFT])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("25 RPCs called; 13 event types decoded"),
        "{stdout}"
    );
    up.stop();
}
