//! A second mesh with fresh databases pointed at a first mesh's topics, on both
//! brokers: while the first runs it is refused (its consumers would split the groups
//! with another deployment, and replay a history they have no offsets for); with the
//! first stopped it starts only where it is told (`--from latest`). Either way it
//! creates no order and sends no email for the first mesh's sign-ups, and the first
//! mesh's figures do not move.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use support::{BrokerKind, Ports, Up};
use weft_proto::user::user_service_client::UserServiceClient;
use weft_proto::user::{SignUpRequest, SignupSource};

const WAIT: Duration = Duration::from_secs(90);
/// The welcome email, the contact verification and the welcome order's confirmation.
const EMAILS_PER_SIGNUP: i64 = 3;

async fn sign_up(port: u16, email: &str) {
    UserServiceClient::connect(format!("http://127.0.0.1:{port}"))
        .await
        .unwrap()
        .sign_up(SignUpRequest {
            email: email.into(),
            name: "Second".into(),
            password: "correct horse battery 9".into(),
            source: SignupSource::Api as i32,
            ..Default::default()
        })
        .await
        .unwrap();
}

/// (sign-ups, orders, emails) as the mesh's analytics counts them.
async fn figures(ports: &Ports) -> (i64, i64, i64) {
    let m = support::grpc::metrics(ports.analytics).await;
    (m.signups, m.orders_created, m.emails_sent)
}

fn mails(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("mail")).map_or(0, |d| {
        d.filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
            .count()
    })
}

/// `weft up` for a second mesh in `dir` on the first mesh's broker.
fn second_up(first: &Up, dir: &Path, ports: &Ports, from: Option<&str>) -> std::process::Command {
    let mut command = support::up_command(dir, ports);
    command.envs(first.broker.env());
    command.env("WEFT_BROKER", "external");
    if let Some(from) = from {
        command.env("WEFT_CONSUMER_FROM", from);
    }
    command
}

async fn a_second_mesh_adds_no_order_and_sends_no_email(kind: BrokerKind) {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (ports_a, ports_b) = (Ports::free(), Ports::free());
    let first = Up::start_on_async(kind, dir_a.path(), &ports_a, &[]).await;
    for i in 0..3 {
        sign_up(ports_a.user, &format!("first{i}@example.com")).await;
    }
    // Each sign-up: a welcome order, and its emails.
    let settled = weft_testkit::eventually("the first mesh to settle", WAIT, || async {
        let f = figures(&ports_a).await;
        (f.0 == 3 && f.1 == 3 && f.2 == 3 * EMAILS_PER_SIGNUP).then_some(f)
    })
    .await;
    let first_mails = mails(dir_a.path());

    // While the first mesh runs: refused, naming the way out.
    let out = {
        let mut command = second_up(&first, dir_b.path(), &ports_b, None);
        tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap()
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("--from latest") || stderr.contains("another deployment"),
        "{stderr}"
    );
    assert_eq!(mails(dir_b.path()), 0, "the refused mesh sent nothing");

    // With the first mesh stopped, the same topics and fresh databases: refused until
    // told where to begin; told `latest`, it applies none of the history.
    let broker = first.broker.clone();
    tokio::task::spawn_blocking(move || first.stop())
        .await
        .unwrap();
    let second = match kind {
        BrokerKind::Kafka => {
            Up::start_with_broker_async(
                broker,
                dir_b.path(),
                &ports_b,
                &[("WEFT_CONSUMER_FROM", "latest")],
            )
            .await
        }
        BrokerKind::Embedded => {
            // The first mesh's embedded broker data, under the second's fresh databases.
            copy_dir(&dir_a.path().join("broker"), &dir_b.path().join("broker"));
            let out = {
                let mut command = support::up_command(dir_b.path(), &ports_b);
                tokio::task::spawn_blocking(move || command.output().unwrap())
                    .await
                    .unwrap()
            };
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{stderr}");
            assert!(stderr.contains("--from latest"), "{stderr}");
            Up::start_on_async(
                kind,
                dir_b.path(),
                &ports_b,
                &[("WEFT_CONSUMER_FROM", "latest")],
            )
            .await
        }
    };
    sign_up(ports_b.user, "second@example.com").await;
    weft_testkit::eventually("the second mesh's own sign-up to settle", WAIT, || async {
        (figures(&ports_b).await == (1, 1, EMAILS_PER_SIGNUP)).then_some(())
    })
    .await;
    assert_eq!(
        mails(dir_b.path()) as i64,
        EMAILS_PER_SIGNUP,
        "the emails of its one sign-up, none for the history"
    );
    assert_eq!(
        mails(dir_a.path()),
        first_mails,
        "the first mesh's mail is untouched"
    );
    assert_eq!(settled, (3, 3, 3 * EMAILS_PER_SIGNUP));
    tokio::task::spawn_blocking(move || second.stop())
        .await
        .unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_mesh_adds_no_order_and_sends_no_email_on_weft_broker() {
    a_second_mesh_adds_no_order_and_sends_no_email(BrokerKind::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_mesh_adds_no_order_and_sends_no_email_on_kafka() {
    a_second_mesh_adds_no_order_and_sends_no_email(BrokerKind::Kafka).await;
}
