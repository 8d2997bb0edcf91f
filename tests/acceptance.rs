//! The user/order acceptance story against `weft up`, driven by the repository's own
//! grpcurl script (`scripts/demo`) and checked on the broker: one `UserSignedUp`, the
//! address verified from the emailed link, exactly one welcome `OrderCreated` with
//! the signup's correlation id and the signup as its cause, the seed order priced
//! from the catalogue at exactly 109.97 USD, and `OrderShipped` by a staff member the
//! operator's tool made.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;
use std::time::Duration;

use prost::Message as _;
use rdkafka::Message as _;
use support::{Ports, Up, value};
use weft_proto::order::{OrderCreated, OrderKind, OrderShipped};
use weft_testkit::{header, read_topic_until};

const WAIT: Duration = Duration::from_secs(60);
/// Events of the story: 2 sign-ups + 2 verification requests + 1 verification + 1
/// grant; 3 orders created + payment + shipping; 8 emails.
const EVENTS: u32 = 19;

#[test]
fn the_grpcurl_demo_tells_the_whole_story() {
    story(None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_story_on_postgresql_through_database_url() {
    let server = weft_testkit::postgres_database().await;
    tokio::task::spawn_blocking(move || story(Some(&server)))
        .await
        .unwrap();
}

fn story(database_url: Option<&str>) {
    weft_testkit::require_tool("grpcurl");
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let up = Up::start_with(dir.path(), &ports, database_url);
    let brokers = format!("127.0.0.1:{}", ports.broker);

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/demo");
    let mut demo = Command::new("bash");
    demo.arg(script)
        .env("WEFT_USER_ADDR", format!("127.0.0.1:{}", ports.user))
        .env("WEFT_ORDER_ADDR", format!("127.0.0.1:{}", ports.order))
        .env("WEFT_DATA_DIR", dir.path())
        .env("WEFT_BIN", support::WEFT)
        .env("DEMO_EMAIL", "story@example.com");
    match database_url {
        Some(url) => demo.env("WEFT_USER_DATABASE_URL", format!("{url}_user")),
        None => demo.env_remove("WEFT_USER_DATABASE_URL"),
    };
    let out = demo.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let user_id = value(&stdout, "signed-up", "user_id").to_owned();
    let welcome_id = value(&stdout, "welcome-order", "order_id").to_owned();
    let order_id = value(&stdout, "order", "order_id").to_owned();
    assert_eq!(value(&stdout, "verified", "email_verified"), "True");
    assert_eq!(value(&stdout, "order", "total"), "109.97_USD");
    assert_eq!(value(&stdout, "paid", "status"), "ORDER_STATUS_CONFIRMED");
    assert_eq!(value(&stdout, "shipped", "status"), "ORDER_STATUS_SHIPPED");

    let of = |id: &str, ty: &str, m: &rdkafka::message::OwnedMessage| {
        m.key() == Some(id.as_bytes()) && header(m, "ce_type") == Some(ty)
    };
    let users = read_topic_until(&brokers, "user-events", WAIT, |s| {
        s.iter()
            .any(|m| of(&user_id, "weft.user.v1.ContactVerified", m))
    });
    let signups: Vec<_> = users
        .iter()
        .filter(|m| of(&user_id, "weft.user.v1.UserSignedUp", m))
        .collect();
    assert_eq!(signups.len(), 1, "one UserSignedUp");
    let signup = signups[0];
    assert_eq!(header(signup, "ce_type"), Some("weft.user.v1.UserSignedUp"));
    assert_eq!(header(signup, "ce_subject"), Some(user_id.as_str()));

    // Records of different orders sit on different partitions: read until all three
    // (welcome, manual, shipped) have arrived.
    let orders = read_topic_until(&brokers, "order-events", WAIT, |s| {
        let has = |key: &str, ty: &str| {
            s.iter()
                .any(|m| m.key() == Some(key.as_bytes()) && header(m, "ce_type") == Some(ty))
        };
        has(&welcome_id, "weft.order.v1.OrderCreated")
            && has(&order_id, "weft.order.v1.OrderCreated")
            && has(&order_id, "weft.order.v1.OrderShipped")
    });
    let created: Vec<_> = orders
        .iter()
        .filter(|m| header(m, "ce_type") == Some("weft.order.v1.OrderCreated"))
        .map(|m| (m, OrderCreated::decode(m.payload().unwrap()).unwrap()))
        .collect();
    let welcomes: Vec<_> = created
        .iter()
        .filter(|(_, e)| e.kind == OrderKind::Welcome as i32 && e.user_id == user_id)
        .collect();
    let mut welcome_ids: Vec<_> = welcomes.iter().map(|(m, _)| header(m, "ce_id")).collect();
    welcome_ids.sort_unstable();
    welcome_ids.dedup();
    assert_eq!(welcome_ids.len(), 1, "exactly one welcome OrderCreated");
    let (welcome_record, welcome) = welcomes[0];
    assert_eq!(welcome.order_id, welcome_id);
    assert_eq!(
        header(welcome_record, "ce_correlationid"),
        header(signup, "ce_correlationid")
    );
    assert_eq!(
        header(welcome_record, "ce_causationid"),
        header(signup, "ce_id")
    );

    let (_, manual) = created
        .iter()
        .find(|(_, e)| e.order_id == order_id)
        .unwrap();
    let total = manual.total.clone().unwrap();
    assert_eq!(
        (total.currency_code.as_str(), total.units, total.nanos),
        ("USD", 109, 970_000_000)
    );
    let shipped = orders
        .iter()
        .find(|m| header(m, "ce_type") == Some("weft.order.v1.OrderShipped"))
        .map(|m| OrderShipped::decode(m.payload().unwrap()).unwrap())
        .unwrap();
    assert_eq!(
        (shipped.order_id.as_str(), shipped.carrier.as_str()),
        (order_id.as_str(), "UPS")
    );

    // The notification and analytics services saw the whole story — the customer's
    // welcome, verification, two order confirmations and shipping email; the staff
    // member's welcome, verification and welcome order confirmation — and exact
    // metrics (asked with the same grpcurl a user has).
    let analytics = format!("127.0.0.1:{}", ports.analytics);
    let deadline = std::time::Instant::now() + WAIT;
    let metrics = loop {
        let out = Command::new(weft_testkit::require_tool("grpcurl"))
            .args([
                "-plaintext",
                &analytics,
                "weft.analytics.v1.AnalyticsService/GetMetrics",
            ])
            .output()
            .unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        // Every event of the story counted (the topics are consumed independently):
        // two sign-ups, their verification requests, one verification, the grant,
        // three orders, the payment, the shipping and eight emails.
        let processed = json["metrics"]["eventsProcessed"]
            .as_str()
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or_default();
        if json["metrics"]["emailsSent"] == "8" && processed >= EVENTS {
            break json;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "metrics never settled: {json}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let m = &metrics["metrics"];
    assert_eq!(m["eventsProcessed"], EVENTS.to_string(), "{m}");
    assert_eq!(m["signups"], "2", "{m}");
    assert_eq!(m["ordersCreated"], "3", "{m}");
    assert_eq!(m["revenue"][0]["currencyCode"], "USD", "{m}");
    assert_eq!(m["revenue"][0]["units"], "109", "{m}");
    assert_eq!(m["revenue"][0]["nanos"], 970_000_000, "{m}");
    if database_url.is_none() {
        assert_eq!(support::mails(dir.path()).len(), 8);
    }
    up.stop();
    if let Some(url) = database_url {
        // Each service kept its data in a database of its own on that server.
        assert!(!dir.path().join("user.db").exists() && !dir.path().join("order.db").exists());
        assert!(!dir.path().join("analytics.db").exists());
        let count = |service: &str, table: &str| {
            let url = format!("{url}_{service}");
            let sql = format!("SELECT COUNT(*) AS n FROM {table}");
            tokio::runtime::Handle::current().block_on(async move {
                use sqlx::{Connection as _, Row as _};
                let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
                sqlx::query(&sql)
                    .fetch_one(&mut conn)
                    .await
                    .unwrap()
                    .get::<i64, _>("n")
            })
        };
        assert_eq!(
            count("user", "users"),
            2,
            "the customer and the staff member"
        );
        assert_eq!(count("user", "role_changes"), 1);
        assert_eq!(
            count("order", "orders"),
            3,
            "two welcome orders and the seed order"
        );
        assert_eq!(count("notification", "notifications"), 8);
        assert_eq!(
            count("analytics", "recent_events"),
            i64::from(EVENTS),
            "every event of the story"
        );
    }
}
