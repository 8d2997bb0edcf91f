//! `weft fault` against `weft up`: each flag changes what the mesh does while it is on,
//! and the mesh recovers — nothing lost — once it is cleared; bad flags are refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::grpc::{self, authed, channel, metrics};
use support::{BrokerKind, Mesh, Ports, WEFT};
use weft_proto::order::order_service_client::OrderServiceClient;
use weft_proto::order::{CreateOrderRequest, OrderItem, PayOrderRequest, PaymentCard};
use weft_proto::user::SignupSource;
use weft_testkit::eventually;

const WAIT: Duration = Duration::from_secs(60);

fn fault(data: &Path, args: &[&str]) -> std::process::Output {
    Command::new(WEFT)
        .arg("fault")
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap()
}

fn ok(out: &std::process::Output) -> String {
    support::output::succeeded("weft fault", out)
}

/// Turns the fault `flag` (`name=value`) on and waits until every service sees it:
/// the services read the flags again at most every half second and show nothing when
/// they do, so past that interval every look sees the change.
async fn set_fault(data: &Path, flag: &str) {
    ok(&fault(data, &["set", flag]));
    tokio::time::sleep(Duration::from_millis(1200)).await;
}

/// Signs `email` up and logs in: an access token.
async fn sign_up(ports: &Ports, email: &str) -> String {
    let request = grpc::sign_up_request(email, "Fault", SignupSource::Api);
    grpc::sign_up(ports.user, request).await;
    grpc::login(ports.user, email).await.access_token
}

/// One mug at the catalogue's price.
fn one_mug() -> OrderItem {
    OrderItem {
        product_id: "mug".into(),
        quantity: 1,
        ..Default::default()
    }
}

/// The card the test payment provider takes.
fn test_card() -> PaymentCard {
    PaymentCard {
        number: "4242424242424242".into(),
        exp_month: 12,
        exp_year: 2099,
        cvc: "123".into(),
    }
}

async fn signups(port: u16) -> i64 {
    metrics(port).await.signups
}

fn mails(data: &Path) -> usize {
    support::mails(data).len()
}

/// How many of `email`'s notifications a delivery attempt left pending because
/// notification-down was on.
async fn held_back(data: &Path, email: &str) -> i64 {
    let url = weft_events::db::sqlite_url(data, "notification").unwrap();
    let db = weft_events::Database::connect(&url).await.unwrap();
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM notifications n JOIN contacts c ON c.user_id = n.user_id \
         WHERE c.email = $1 AND n.last_error = 'the fault flag notification-down is on'",
    )
    .bind(email.to_owned())
    .fetch_one(db.pool())
    .await
    .unwrap();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_flags_change_the_mesh_while_on_and_nothing_is_lost_after() {
    let Mesh { dir, ports, up } = Mesh::start(BrokerKind::Embedded).await;
    let data = dir.path().to_owned();
    let token = sign_up(&ports, "first@example.com").await;
    eventually("the first signup counted", WAIT, || async {
        (signups(ports.analytics).await == 1).then_some(())
    })
    .await;

    // Payments fail as if the provider were down; then they go through.
    set_fault(&data, "payment-failure=1").await;
    let mut orders = OrderServiceClient::new(channel(ports.order).await);
    let create = CreateOrderRequest {
        items: vec![one_mug()],
        ..Default::default()
    };
    let answer = orders.create_order(authed(create, &token)).await.unwrap();
    let order = answer.into_inner().order.unwrap();
    let pay = || PayOrderRequest {
        order_id: order.order_id.clone(),
        card: Some(test_card()),
    };
    for _ in 0..3 {
        let code = orders
            .pay_order(authed(pay(), &token))
            .await
            .expect_err("payments fail while the flag is on")
            .code();
        assert_eq!(code, tonic::Code::Unavailable);
    }
    let out = ok(&fault(&data, &["list"]));
    assert!(out.contains("on: payment-failure=1"), "{out}");
    ok(&fault(&data, &["clear", "payment-failure"]));
    eventually("payments going through", WAIT, || {
        let mut orders = orders.clone();
        let req = authed(pay(), &token);
        async move { orders.pay_order(req).await.ok() }
    })
    .await;

    // A paused analytics consumer counts nothing, the rest of the mesh goes on; once
    // cleared, it catches up.
    set_fault(&data, "consumer-pause=weft-analytics").await;
    let mails_before = mails(&data);
    sign_up(&ports, "paused@example.com").await;
    eventually("the paused-time signup's emails", WAIT, || async {
        (mails(&data) >= mails_before + 3).then_some(())
    })
    .await;
    assert_eq!(signups(ports.analytics).await, 1, "analytics is paused");
    ok(&fault(&data, &["clear"]));
    eventually("analytics caught up", WAIT, || async {
        (signups(ports.analytics).await == 2).then_some(())
    })
    .await;

    // Notifications down: nothing is written while it is on; everything after.
    set_fault(&data, "notification-down=1").await;
    let mails_before = mails(&data);
    sign_up(&ports, "quiet@example.com").await;
    eventually("the quiet signup counted", WAIT, || async {
        (signups(ports.analytics).await == 3).then_some(())
    })
    .await;
    // Its three emails were each tried and held back.
    eventually("the quiet signup's emails held back", WAIT, || async {
        (held_back(&data, "quiet@example.com").await >= 3).then_some(())
    })
    .await;
    assert_eq!(
        mails(&data),
        mails_before,
        "no email while notifications are down"
    );
    ok(&fault(&data, &["clear", "notification-down"]));
    eventually("the held emails sent", WAIT, || async {
        (mails(&data) >= mails_before + 3).then_some(())
    })
    .await;

    // A slow consumer: 3 s before each record, so a signup is counted late, but counted.
    set_fault(&data, "slow-consumer=3000").await;
    let signed_up = Instant::now();
    sign_up(&ports, "slow@example.com").await;
    eventually("the slow signup counted", WAIT, || async {
        (signups(ports.analytics).await == 4).then_some(())
    })
    .await;
    assert!(
        signed_up.elapsed() >= Duration::from_secs(3),
        "counted {:?} after the signup, not held 3 s",
        signed_up.elapsed()
    );
    ok(&fault(&data, &["clear"]));

    for (args, says) in [
        (vec!["set", "disk-full=1"], "unknown fault"),
        (vec!["set", "payment-failure=2"], "takes a probability"),
        (vec!["set", "slow-consumer=soon"], "takes milliseconds"),
        (vec!["set", "payment-failure"], "not name=value"),
        (vec!["clear", "slow-consumer"], "is not on"),
    ] {
        support::output::failed_saying(&format!("{args:?}"), &fault(&data, &args), None, says);
    }
    up.stop();
}
