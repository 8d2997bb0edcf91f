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

use support::output::{failed_saying, output_async, run_ok};
use support::{BrokerKind, MeshBroker, Ports, Up, grpc, on_each_broker};
use weft_proto::user::SignupSource;

const WAIT: Duration = Duration::from_secs(90);
/// The welcome email, the contact verification and the welcome order's confirmation.
const EMAILS_PER_SIGNUP: i64 = 3;

async fn sign_up(port: u16, email: &str) {
    grpc::sign_up(
        port,
        grpc::sign_up_request(email, "Second", SignupSource::Api),
    )
    .await;
}

/// (sign-ups, orders, emails) as the mesh's analytics counts them.
async fn figures(ports: &Ports) -> (i64, i64, i64) {
    let m = support::grpc::metrics(ports.analytics).await;
    (m.signups, m.orders_created, m.emails_sent)
}

fn mails(dir: &Path) -> usize {
    support::mails(dir).len()
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
    let out = output_async(second_up(&first, dir_b.path(), &ports_b, None)).await;
    let stderr = failed_saying("the second weft up", &out, None, "");
    assert!(
        stderr.contains("--from latest") || stderr.contains("another deployment"),
        "{stderr}"
    );
    assert_eq!(mails(dir_b.path()), 0, "the refused mesh sent nothing");

    // With the first mesh stopped, the same topics and fresh databases: refused until
    // told where to begin; told `latest`, it applies none of the history.
    let broker = first.broker.clone();
    first.stop_async().await;
    let broker = match kind {
        BrokerKind::Kafka => broker,
        BrokerKind::Embedded => {
            // The first mesh's embedded broker data, under the second's fresh databases.
            let mut copy = std::process::Command::new("cp");
            copy.arg("-a")
                .arg(dir_a.path().join("broker"))
                .arg(dir_b.path().join("broker"));
            run_ok("cp -a", &mut copy);
            let out = output_async(support::up_command(dir_b.path(), &ports_b)).await;
            failed_saying("the second weft up", &out, None, "--from latest");
            MeshBroker::new(kind, &ports_b)
        }
    };
    let latest = [("WEFT_CONSUMER_FROM", "latest")];
    let second = Up::start_with_broker_async(broker, dir_b.path(), &ports_b, &latest).await;
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
    second.stop_async().await;
}

on_each_broker!(async a_second_mesh_adds_no_order_and_sends_no_email =>
    a_second_mesh_adds_no_order_and_sends_no_email_on_weft_broker,
    a_second_mesh_adds_no_order_and_sends_no_email_on_kafka
);
