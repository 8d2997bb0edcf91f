//! A user's own, secured Kafka: the mesh through the local cluster's SASL_SSL listener
//! (SCRAM-SHA-512 over TLS, with the certificate `scripts/kafka` made for it), every
//! client's settings in one `--kafka-config-file`. A wrong password stops `weft up` at
//! once with the brokers' reason, and a setting weft relies on cannot be overridden.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::output::failed_saying;
use support::{BrokerKind, MeshBroker, Ports, Up, WEFT, up_command};

const WAIT: Duration = Duration::from_secs(60);

/// The SASL_SSL listener of the test cluster (`scripts/test` exports it).
struct Sasl {
    brokers: String,
    username: String,
    password: String,
    ca: String,
}

fn sasl() -> Sasl {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("{name} is not set: the SASL_SSL test needs the cluster scripts/test starts")
        })
    };
    Sasl {
        brokers: var("WEFT_TEST_KAFKA_SASL"),
        username: var("WEFT_TEST_KAFKA_SASL_USERNAME"),
        password: var("WEFT_TEST_KAFKA_SASL_PASSWORD"),
        ca: var("WEFT_TEST_KAFKA_CA"),
    }
}

/// A client properties file for the listener, with `password`.
fn properties(dir: &Path, s: &Sasl, password: &str) -> PathBuf {
    let path = dir.join("kafka.properties");
    std::fs::write(
        &path,
        format!(
            "# the test cluster's SASL_SSL listener\nsecurity.protocol=SASL_SSL\nsasl.mechanisms=SCRAM-SHA-512\nsasl.username={}\nsasl.password={password}\nssl.ca.location={}\n",
            s.username, s.ca
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mesh_runs_through_sasl_ssl() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let s = sasl();
    let dir = tempfile::tempdir().unwrap();
    let props = properties(dir.path(), &s, &s.password);
    let ports = Ports::free();
    let data = dir.path().join("data");
    // A namespace of its own on the cluster; every client goes through SASL_SSL.
    let broker = MeshBroker::new(BrokerKind::Kafka, &ports);
    let prefix = broker.prefix().to_owned();
    let env = [
        ("KAFKA_BROKERS", s.brokers.as_str()),
        ("WEFT_KAFKA_CONFIG_FILE", props.to_str().unwrap()),
    ];
    let up = Up::start_with_broker_async(broker, &data, &ports, &env).await;

    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{}", ports.gateway);
    support::rest::signup_and_login(&http, &base, "sasl@example.com").await;
    weft_testkit::eventually(
        "the sign-up and its welcome order counted",
        WAIT,
        || async {
            let m = support::grpc::metrics(ports.analytics).await;
            (m.signups == 1 && m.orders_created == 1 && m.emails_sent >= 1).then_some(())
        },
    )
    .await;

    // weft tail reads through the same listener with the same file.
    let out = Command::new(WEFT)
        .args(["tail", "user-events", "--exit"])
        .env("KAFKA_BROKERS", &s.brokers)
        .env("WEFT_KAFKA_PREFIX", &prefix)
        .env("WEFT_KAFKA_CONFIG_FILE", &props)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("weft.user.v1.UserSignedUp"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The password never reaches a log.
    for log in std::fs::read_dir(data.join("logs")).unwrap() {
        let text = std::fs::read_to_string(log.unwrap().path()).unwrap();
        assert!(!text.contains(&s.password), "a log holds the password");
    }
    up.stop();
}

#[test]
fn a_wrong_password_stops_weft_up_at_once_with_the_reason() {
    let s = sasl();
    let dir = tempfile::tempdir().unwrap();
    let props = properties(dir.path(), &s, "not-the-password");
    let ports = Ports::free();
    let mut child = up_command(&dir.path().join("data"), &ports)
        .env("WEFT_BROKER", "external")
        .env("KAFKA_BROKERS", &s.brokers)
        .env("WEFT_KAFKA_CONFIG_FILE", &props)
        .env("WEFT_KAFKA_PREFIX", "wrong-password.")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("weft up with a wrong password still runs after {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("refused the connection") && stderr.contains("Authentication failed"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-password"), "{stderr}");
}

#[test]
fn settings_weft_relies_on_cannot_be_overridden() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    for (flag, says) in [
        ("acks=1", "acks cannot be set"),
        (
            "enable.idempotence=false",
            "enable.idempotence cannot be set",
        ),
        ("security.protocol", "expected KEY=VALUE"),
    ] {
        let out = up_command(&dir.path().join("data"), &ports)
            .args(["--kafka-config", flag])
            .output()
            .unwrap();
        failed_saying(flag, &out, Some(64), says);
    }
    let missing = up_command(&dir.path().join("data"), &ports)
        .args(["--kafka-config-file", "/nonexistent/kafka.properties"])
        .output()
        .unwrap();
    let says = "cannot read the Kafka settings file";
    failed_saying("--kafka-config-file", &missing, Some(64), says);
}
