//! End to end through the `weft` binary: `weft up` starts the embedded broker with
//! its topics, events published through the outbox show in `weft tail` decoded by
//! type, and with SQLite broker storage they survive a restart of the mesh.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use weft_events::db::sqlite_url;
use weft_events::kafka::KafkaArgs;
use weft_events::outbox::RelayConfig;
use weft_events::{Database, EventContext, Outbox, Relay};
use weft_proto::user::{SignupSource, UserSignedUp};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");

struct Up {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Up {
    fn start(data_dir: &Path, port: u16) -> Self {
        let mut child = Command::new(WEFT)
            .args(["up", "--broker-port", &port.to_string()])
            .arg("--data-dir")
            .arg(data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let up = Self { child, lines: rx };
        up.wait_for("weft is up", Duration::from_secs(90));
        up
    }

    fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut seen = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => {
                    seen.push_str(&line);
                    seen.push('\n');
                }
                Err(_) => panic!("no {needle:?} from weft up within {timeout:?}; output:\n{seen}"),
            }
        }
    }

    fn stop(mut self) {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM).unwrap();
        self.wait_for("stopped broker", Duration::from_secs(30));
        let status = self.child.wait().unwrap();
        assert!(status.success(), "weft up exited with {status}");
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(port: u16, topic: &str) -> (bool, String, String) {
    let out = Command::new(WEFT)
        .args([
            "tail",
            topic,
            "--exit",
            "--kafka-brokers",
            &format!("127.0.0.1:{port}"),
        ])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_provisions_topics_and_tail_decodes_events_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = weft_testkit::free_port();
    let up = Up::start(&data, port);

    // Publish one signup through the outbox of a service database.
    let db = Database::connect(&sqlite_url(dir.path(), "svc").unwrap())
        .await
        .unwrap();
    let event = UserSignedUp {
        metadata: Some(EventContext::root().metadata("user", "test")),
        user_id: "u-42".into(),
        email: "ada@example.com".into(),
        name: "Ada".into(),
        source: SignupSource::Mobile as i32,
        ..Default::default()
    };
    let mut tx = db.begin().await.unwrap();
    Outbox::enqueue(&mut tx, &event).await.unwrap();
    tx.commit().await.unwrap();
    let kafka = KafkaArgs::new(format!("127.0.0.1:{port}"));
    let relay = Relay::new(db, &kafka, "up-test", RelayConfig::default()).unwrap();
    assert_eq!(relay.publish_pending().await.unwrap(), 1);

    let (ok, out, err) = tail(port, "user-events");
    assert!(ok, "{err}");
    let record: serde_json::Value =
        serde_json::from_str(out.lines().next().expect("one record")).unwrap();
    assert_eq!(record["type"], "weft.user.v1.UserSignedUp");
    assert_eq!(record["key"], "u-42");
    assert_eq!(record["event"]["email"], "ada@example.com");
    assert_eq!(record["event"]["source"], "SIGNUP_SOURCE_MOBILE");
    assert_eq!(record["headers"]["ce_specversion"], "1.0");
    assert_eq!(record["headers"]["content-type"], "application/protobuf");
    assert_eq!(
        record["event"]["metadata"]["eventId"],
        event.metadata.as_ref().unwrap().event_id.as_str()
    );

    // Every topic exists, including the dead-letter topics, and is empty but readable.
    for topic in ["order-events", "notification-events", "user-events.dlq"] {
        let (ok, out, err) = tail(port, topic);
        assert!(ok && out.is_empty(), "{topic}: {err}{out}");
    }
    // A topic weft does not have is a clear error.
    let (ok, _, err) = tail(port, "no-such-topic");
    assert!(!ok && err.contains("does not exist"), "{err}");

    up.stop();

    // Same data dir: the broker's SQLite storage kept the event.
    let up = Up::start(&data, port);
    let (ok, out, err) = tail(port, "user-events");
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    up.stop();
}

#[test]
fn bad_flags_exit_64_and_external_broker_needs_an_address() {
    let out = Command::new(WEFT)
        .args(["up", "--broker-port", "not-a-port"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let out = Command::new(WEFT)
        .args(["up", "--broker", "external"])
        .env_remove("KAFKA_BROKERS")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--kafka-brokers"));
    let out = Command::new(WEFT).arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
}
