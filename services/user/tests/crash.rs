//! kill -9 of the user service right after `SignUp` returned loses nothing: the event
//! committed with the user is published once the service is back. While the broker is
//! away, the service's metrics show the row waiting.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::signup_request;
use weft_proto::user::user_service_client::UserServiceClient;
use weft_testkit::{
    Broker, free_port, header, metric, read_topic_until, scrape_metrics, wait_for_port,
};

fn start(dir: &std::path::Path, grpc: SocketAddr, admin: SocketAddr, brokers: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_weft-user"))
        .args([
            "--grpc-addr",
            &grpc.to_string(),
            "--admin-addr",
            &admin.to_string(),
        ])
        .arg("--data-dir")
        .arg(dir)
        .args(["--kafka-brokers", brokers])
        .env("WEFT_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_after_sign_up_still_publishes_the_event() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on the broker's port until the broker starts, and nothing else
    // takes it meanwhile.
    let broker_port = weft_testkit::ReservedPort::new();
    let brokers = format!("127.0.0.1:{}", broker_port.port());
    let grpc: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();

    // The broker is down: the sign-up commits with its outbox row and nothing more.
    let mut service = start(dir.path(), grpc, admin, &brokers);
    wait_for_port(grpc, Duration::from_secs(30));
    let mut client = UserServiceClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    let user = client
        .sign_up(signup_request("crash@example.com"))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    // Its metrics say so while it waits: the sign-up's rows, older and older.
    let (rows, oldest) = weft_testkit::eventually(
        "the backlog reported while the broker is down",
        Duration::from_secs(30),
        || async {
            let text = scrape_metrics(admin).await.unwrap_or_default();
            let rows = metric(&text, "outbox_backlog")?;
            let oldest = metric(&text, "outbox_oldest_unsent_seconds")?;
            (rows >= 1.0 && oldest >= 1.0).then_some((rows, oldest))
        },
    )
    .await;
    assert!(rows >= 1.0 && oldest >= 1.0, "{rows} {oldest}");
    service.kill().unwrap(); // SIGKILL
    service.wait().unwrap();

    let broker = Broker::start_on(broker_port.release());
    let kafka = weft_events::kafka::KafkaArgs::new(broker.bootstrap());
    weft_events::topics::provision(&kafka, &weft_events::topics::all_topics())
        .await
        .unwrap();
    let mut service = start(dir.path(), grpc, admin, &brokers);
    let records = read_topic_until(
        &broker.bootstrap(),
        "user-events",
        Duration::from_secs(60),
        |s| !s.is_empty(),
    );
    assert_eq!(
        header(&records[0], "ce_subject"),
        Some(user.user_id.as_str())
    );
    assert_eq!(
        header(&records[0], "ce_type"),
        Some("weft.user.v1.UserSignedUp")
    );
    service.kill().unwrap();
    service.wait().unwrap();
}
