//! Delivery through real transports: an SMTP server process (aiosmtpd from PyPI, with
//! a handler that accepts, rejects with 550 or defers with 451 by recipient domain)
//! and an HTTP webhook for text messages that fails once with 503. Events are
//! published to the broker by the test; results are read back from the SMTP
//! server's files, the webhook's requests and the broker's topics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use rdkafka::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use weft_events::{DomainEvent, Envelope, EventContext};
use weft_notification::templates::ORDER_CONFIRMATION;
use weft_proto::common::Money;
use weft_proto::notification::{Channel, DeliveryStatus};
use weft_proto::order::{OrderCreated, OrderItem, OrderShipped};
use weft_proto::user::{
    ContactKind, ContactVerificationRequested, ContactVerified, SignupSource, UserSignedUp,
};
use weft_testkit::{
    Db, Home, eventually, header, on_each_db, produce, read_topic_until, require_tool,
};

const WAIT: Duration = Duration::from_secs(60);

/// aiosmtpd on a free port, writing accepted mail to `out`.
struct SmtpServer {
    child: Child,
    port: u16,
}

impl SmtpServer {
    fn start(out: &Path) -> Self {
        let port = weft_testkit::free_port();
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let child = Command::new(require_tool("aiosmtpd"))
            .args([
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "smtp_rules.Rules",
            ])
            .arg(out)
            .env("PYTHONPATH", &fixtures)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting aiosmtpd");
        weft_testkit::wait_for_port(SocketAddr::from(([127, 0, 0, 1], port)), WAIT);
        Self { child, port }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Requests the SMS webhook received: (idempotency key, JSON body).
type Hits = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

/// An SMS webhook that answers every request 200, except the first one 503 when
/// `fail_first`.
async fn webhook(fail_first: bool) -> (SocketAddr, Hits) {
    async fn receive(
        State((hits, fail_first)): State<(Hits, bool)>,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> StatusCode {
        let key = headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        let mut hits = hits.lock().unwrap();
        hits.push((key, json));
        if fail_first && hits.len() == 1 {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        }
    }
    let hits: Hits = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/sms", axum::routing::post(receive))
        .with_state((hits.clone(), fail_first));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, hits)
}

async fn publish<E: DomainEvent>(producer: &FutureProducer, event: &E) {
    let payload = prost::Message::encode_to_vec(event);
    let record = FutureRecord::to(E::TOPIC)
        .key(event.key())
        .payload(payload.as_slice());
    produce(producer, record, Envelope::of(event).unwrap().headers()).await;
}

/// Event metadata of a root event from the test.
fn metadata() -> Option<weft_proto::common::EventMetadata> {
    Some(EventContext::root().metadata("test", "1"))
}

/// `order_id` of `user_id` shipped with DHL as `tracking_number`.
fn shipped(order_id: &str, user_id: &str, tracking_number: &str) -> OrderShipped {
    OrderShipped {
        metadata: metadata(),
        order_id: order_id.into(),
        user_id: user_id.into(),
        carrier: "DHL".into(),
        tracking_number: tracking_number.into(),
    }
}

fn signup(user_id: &str, email: &str, phone: &str) -> UserSignedUp {
    UserSignedUp {
        metadata: metadata(),
        user_id: user_id.into(),
        email: email.into(),
        name: format!("User {user_id}"),
        source: SignupSource::Web as i32,
        phone: phone.into(),
        ..Default::default()
    }
}

fn files(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<String> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    out.sort();
    out
}

/// The notification service with real transports around it.
struct Rig {
    home: Home,
    smtp: SmtpServer,
    received: PathBuf,
    hits: Hits,
    producer: FutureProducer,
    database_url: String,
    running: weft_kit::host::Running,
}

impl Rig {
    async fn start(db: Db, fail_first: bool, extra: &[&str]) -> Self {
        let home = Home::new();
        let kafka = weft_events::kafka::KafkaArgs::new(home.bootstrap());
        weft_events::topics::provision(&kafka, &weft_events::topics::all_topics())
            .await
            .unwrap();
        let database_url = home.database(db, "notification").await;
        let received = home.dir().join("smtp-received");
        let smtp = SmtpServer::start(&received);
        let (hook, hits) = webhook(fail_first).await;
        let smtp_url = format!("smtp://127.0.0.1:{}", smtp.port);
        let hook_url = format!("http://{hook}/sms");
        let mut args = vec![
            "--smtp-url",
            &smtp_url,
            "--sms-webhook-url",
            &hook_url,
            "--max-attempts",
            "3",
            "--user-service-url",
            "http://127.0.0.1:1",
            // The test publishes as soon as the app is built, before its consumer
            // first looks at the topics.
            "--from",
            "earliest",
        ];
        args.extend(extra);
        let running = home
            .spawn::<weft_notification::App>(&database_url, &args)
            .await;
        let producer: FutureProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", home.bootstrap())
            .create()
            .unwrap();
        Self {
            home,
            smtp,
            received,
            hits,
            producer,
            database_url,
            running,
        }
    }

    async fn stop(self) {
        self.running.stop().await.unwrap();
        drop(self.smtp);
    }

    /// Why each suppressed notification of the users matching `users` (a `LIKE`
    /// pattern) was not sent.
    async fn suppressed_why(&self, users: &str) -> Vec<String> {
        let db = weft_events::Database::connect(&self.database_url)
            .await
            .unwrap();
        sqlx::query_scalar(
            "SELECT last_error FROM notifications WHERE user_id LIKE $1 AND status = $2",
        )
        .bind(users.to_owned())
        .bind(SUPPRESSED)
        .fetch_all(db.pool())
        .await
        .unwrap()
    }

    /// (template, channel, status, recipient) of every planned notification of `user`.
    async fn rows(&self, user: &str) -> Vec<(String, i64, i64, String)> {
        use sqlx::Row as _;
        let db = weft_events::Database::connect(&self.database_url)
            .await
            .unwrap();
        sqlx::query(
            "SELECT template, channel, status, recipient FROM notifications \
             WHERE user_id = $1 ORDER BY created_at",
        )
        .bind(user.to_owned())
        .fetch_all(db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get::<String, _>(0),
                r.get::<i64, _>(1),
                r.get::<i64, _>(2),
                r.get::<String, _>(3),
            )
        })
        .collect()
    }

    /// Whether the contact of `user` has a verified phone number yet.
    async fn phone_verified(&self, user: &str) -> bool {
        use sqlx::Row as _;
        let db = weft_events::Database::connect(&self.database_url)
            .await
            .unwrap();
        sqlx::query("SELECT phone_verified FROM contacts WHERE user_id = $1")
            .bind(user.to_owned())
            .fetch_optional(db.pool())
            .await
            .unwrap()
            .is_some_and(|r| r.get::<i64, _>(0) != 0)
    }
}

fn verified_phone(user_id: &str, phone: &str) -> ContactVerified {
    ContactVerified {
        metadata: metadata(),
        user_id: user_id.into(),
        kind: ContactKind::Phone as i32,
        address: phone.into(),
    }
}

fn verification(
    user_id: &str,
    kind: ContactKind,
    address: &str,
    secret: &str,
) -> ContactVerificationRequested {
    ContactVerificationRequested {
        metadata: metadata(),
        user_id: user_id.into(),
        kind: kind as i32,
        address: address.into(),
        secret: secret.into(),
        expire_time: Some(prost_types::Timestamp {
            seconds: 4_102_444_800,
            nanos: 0,
        }),
    }
}

on_each_db!(smtp_and_webhook_deliveries_retry_and_dead_letter);

async fn smtp_and_webhook_deliveries_retry_and_dead_letter(db: Db) {
    let rig = Rig::start(db, true, &[]).await;
    let (received, hits, producer) = (&rig.received, &rig.hits, &rig.producer);
    // Deferred forever, rejected, and fine — in that order, so the good one has to
    // get past the others.
    publish(producer, &signup("u-busy", "someone@busy.test", "")).await;
    publish(producer, &signup("u-reject", "nobody@reject.test", "")).await;
    let ada = signup("u-ada", "ada@example.com", "+15551234567");
    publish(producer, &ada).await;
    // Text messages go to verified numbers only.
    publish(producer, &verified_phone("u-ada", "+15551234567")).await;
    eventually("Ada's number verified", WAIT, || async {
        rig.phone_verified("u-ada").await.then_some(())
    })
    .await;
    let shipped = shipped("order-1", "u-ada", "TRACK-1");
    publish(producer, &shipped).await;

    // Two emails for Ada through SMTP (welcome, shipping), with stable Message-IDs.
    let mails = eventually("Ada's two emails at the SMTP server", WAIT, || async {
        let f = files(received);
        (f.len() >= 2).then_some(f)
    })
    .await;
    assert_eq!(mails.len(), 2, "{mails:#?}");
    assert!(mails.iter().all(|m| m.contains("To: ada@example.com")));
    assert!(
        mails
            .iter()
            .any(|m| m.contains("Subject: Welcome to weft, User u-ada"))
    );
    assert!(
        mails
            .iter()
            .any(|m| m.contains("is on its way") && m.contains("TRACK-1"))
    );
    assert!(
        mails
            .iter()
            .all(|m| m.contains("Message-ID: <") && m.contains("@weft>"))
    );

    // The text message: a 503 first, then delivered with the same idempotency key.
    let hits = eventually("the SMS delivered on the second try", WAIT, || async {
        let h = hits.lock().unwrap().clone();
        (h.len() >= 2).then_some(h)
    })
    .await;
    assert_eq!(hits.len(), 2, "delivered once after one failure: {hits:?}");
    assert_eq!(hits[0].0, hits[1].0);
    assert!(!hits[0].0.is_empty());
    assert_eq!(hits[1].1["to"], "+15551234567");
    assert!(hits[1].1["body"].as_str().unwrap().contains("TRACK-1"));

    // EmailSent ×2 and SmsSent ×1, caused by their triggers.
    let b = rig.home.bootstrap();
    let sent = tokio::task::spawn_blocking(move || {
        read_topic_until(&b, "notification-events", WAIT, |s| s.len() >= 3)
    })
    .await
    .unwrap();
    let types: Vec<&str> = sent.iter().filter_map(|r| header(r, "ce_type")).collect();
    assert_eq!(types.iter().filter(|t| t.ends_with("EmailSent")).count(), 2);
    assert_eq!(types.iter().filter(|t| t.ends_with("SmsSent")).count(), 1);
    let sms = sent
        .iter()
        .find(|r| header(r, "ce_type").unwrap().ends_with("SmsSent"))
        .unwrap();
    assert_eq!(
        header(sms, "ce_causationid"),
        Some(shipped.metadata.as_ref().unwrap().event_id.as_str())
    );

    // 550 at once and 451 three times: both signups to the dead-letter topic.
    let b = rig.home.bootstrap();
    let dead = tokio::task::spawn_blocking(move || {
        read_topic_until(&b, "user-events.dlq", WAIT, |s| s.len() >= 2)
    })
    .await
    .unwrap();
    assert_eq!(dead.len(), 2);
    for r in &dead {
        assert_eq!(header(r, "dlq_reason"), Some("delivery-failed"));
        assert_eq!(header(r, "dlq_consumer_group"), Some("weft-notification"));
        assert_eq!(
            header(r, "ce_type"),
            Some(UserSignedUp::TYPE),
            "original headers kept"
        );
    }
    let rejected = dead
        .iter()
        .find(|r| r.key() == Some(b"u-reject".as_slice()))
        .unwrap();
    assert!(
        header(rejected, "dlq_error").unwrap().contains("550"),
        "{:?}",
        header(rejected, "dlq_error")
    );
    let busy = dead
        .iter()
        .find(|r| r.key() == Some(b"u-busy".as_slice()))
        .unwrap();
    assert!(
        header(busy, "dlq_error")
            .unwrap()
            .contains("gave up after 3 attempts")
    );
    assert_eq!(files(received).len(), 2, "nothing else reached the server");
    rig.stop().await;
}

/// The status numbers of `DeliveryStatus`.
const SENT: i64 = DeliveryStatus::Sent as i64;
const SUPPRESSED: i64 = DeliveryStatus::Suppressed as i64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unverified_numbers_get_no_texts_and_no_recipient_gets_more_than_its_limit() {
    let rig = Rig::start(Db::Sqlite, false, &["--recipient-limit", "3/h"]).await;
    let producer = &rig.producer;

    // Bob's number is not verified: the code that verifies it goes out, the shipping
    // text does not (its email does).
    publish(
        producer,
        &signup("u-bob", "bob@example.com", "+15557654321"),
    )
    .await;
    publish(
        producer,
        &verification("u-bob", ContactKind::Phone, "+15557654321", "424242"),
    )
    .await;
    let code = eventually("the verification text", WAIT, || async {
        rig.hits.lock().unwrap().first().cloned()
    })
    .await;
    assert_eq!(code.1["to"], "+15557654321");
    assert!(code.1["body"].as_str().unwrap().contains("424242"));
    publish(producer, &shipped("order-b", "u-bob", "TRACK-B")).await;
    let rows = eventually("the shipping notifications settled", WAIT, || async {
        let rows = rig.rows("u-bob").await;
        let shipped: Vec<_> = rows
            .iter()
            .filter(|r| r.0 == "order_shipped" && r.2 != DeliveryStatus::Pending as i64)
            .cloned()
            .collect();
        (shipped.len() == 2).then_some(rows)
    })
    .await;
    let status = |template: &str, channel: Channel| {
        rows.iter()
            .find(|r| r.0 == template && r.1 == channel as i64)
            .map(|r| r.2)
    };
    assert_eq!(
        status("order_shipped", Channel::Email),
        Some(SENT),
        "{rows:?}"
    );
    assert_eq!(
        status("order_shipped", Channel::Sms),
        Some(SUPPRESSED),
        "{rows:?}"
    );
    assert_eq!(status("verify_phone", Channel::Sms), Some(SENT), "{rows:?}");
    assert_eq!(
        rig.hits.lock().unwrap().len(),
        1,
        "only the code was texted"
    );

    // Five verification emails to one address, as a flood of requests would make:
    // three go out (the limit), two are suppressed, none dead-lettered.
    for i in 0..5 {
        // Users who changed their address to someone else's.
        publish(
            producer,
            &signup(
                &format!("u-flood-{i}"),
                &format!("flood{i}@example.com"),
                "",
            ),
        )
        .await;
        publish(
            producer,
            &verification(
                &format!("u-flood-{i}"),
                ContactKind::Email,
                "victim@example.com",
                &format!("token-{i}-{}", "x".repeat(40)),
            ),
        )
        .await;
    }
    let settled = eventually("the five verification emails settled", WAIT, || async {
        let mut all = Vec::new();
        for i in 0..5 {
            all.extend(
                rig.rows(&format!("u-flood-{i}"))
                    .await
                    .into_iter()
                    .filter(|r| r.0 == "verify_email"),
            );
        }
        (all.len() == 5 && all.iter().all(|r| r.2 != DeliveryStatus::Pending as i64)).then_some(all)
    })
    .await;
    assert_eq!(
        settled.iter().filter(|r| r.2 == SENT).count(),
        3,
        "{settled:?}"
    );
    assert_eq!(
        settled.iter().filter(|r| r.2 == SUPPRESSED).count(),
        2,
        "{settled:?}"
    );
    // Each suppressed row says why.
    let whys = rig.suppressed_why("u-flood-%").await;
    assert_eq!(whys.len(), 2, "{whys:?}");
    for why in &whys {
        assert!(
            why.contains("victim@example.com got its limit of messages"),
            "{whys:?}"
        );
    }
    let to_victim = files(&rig.received)
        .iter()
        .filter(|m| m.contains("To: victim@example.com"))
        .count();
    assert_eq!(to_victim, 3);
    // The link in the email carries the token to the gateway's page.
    assert!(
        files(&rig.received)
            .iter()
            .any(|m| m.contains("/verify?token=3D") || m.contains("/verify?token=")),
        "a verification link"
    );
    rig.stop().await;
}

/// `order_id` of `user_id`: one mug, or no lines at all when `lines` is false (an
/// order that can never be confirmed).
fn created(order_id: &str, user_id: &str, lines: bool) -> OrderCreated {
    let price = Money {
        currency_code: "USD".into(),
        units: 12,
        nanos: 500_000_000,
    };
    OrderCreated {
        metadata: metadata(),
        order_id: order_id.into(),
        user_id: user_id.into(),
        items: if lines {
            vec![OrderItem {
                product_id: "mug".into(),
                name: "Mug".into(),
                quantity: 1,
                unit_price: Some(price.clone()),
            }]
        } else {
            Vec::new()
        },
        total: Some(price),
        ..Default::default()
    }
}

on_each_db!(orders_confirmed_together_are_each_confirmed_once_and_a_bad_one_is_dead_lettered);

/// The orders of one consumer transaction are confirmed together: every good order of
/// a run gets exactly one confirmation, an order without lines in the middle of the
/// run goes to the dead-letter topic without holding the others back, and the whole
/// run delivered a second time plans nothing again.
async fn orders_confirmed_together_are_each_confirmed_once_and_a_bad_one_is_dead_lettered(db: Db) {
    use sqlx::Row as _;
    let rig = Rig::start(db, false, &[]).await;
    let producer = &rig.producer;
    publish(producer, &signup("u-batch", "batch@example.com", "")).await;
    let orders: Vec<OrderCreated> = (0..8)
        .map(|n| created(&format!("order-{n}"), "u-batch", n != 3))
        .collect();
    for order in orders.iter().chain(&orders) {
        publish(producer, order).await;
    }

    // Every one of the 16 records is settled once the group's offsets reach them.
    let db = weft_events::Database::connect(&rig.database_url)
        .await
        .unwrap();
    eventually("all 16 order records settled", WAIT, || async {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(next_offset), 0) AS BIGINT) FROM weft_consumer_offsets \
             WHERE consumer_group = 'weft-notification' AND topic = 'order-events'",
        )
        .fetch_one(db.pool())
        .await
        .unwrap();
        (row.get::<i64, _>(0) >= 16).then_some(())
    })
    .await;

    let confirmed: Vec<String> = sqlx::query(
        "SELECT t.event_key FROM notifications n JOIN triggers t ON t.event_id = n.trigger_event_id \
         WHERE n.template = $1 ORDER BY t.event_key",
    )
    .bind(ORDER_CONFIRMATION)
    .fetch_all(db.pool())
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect();
    let good: Vec<String> = orders
        .iter()
        .filter(|o| !o.items.is_empty())
        .map(|o| o.order_id.clone())
        .collect();
    assert_eq!(
        confirmed, good,
        "one confirmation per good order, none for the bad one"
    );

    let b = rig.home.bootstrap();
    let dead = tokio::task::spawn_blocking(move || {
        read_topic_until(&b, "order-events.dlq", WAIT, |s| !s.is_empty())
    })
    .await
    .unwrap();
    assert!(
        dead.iter().all(|r| r.key() == Some(b"order-3".as_slice())),
        "only the order without lines is a dead letter"
    );
    assert!(
        header(&dead[0], "dlq_error")
            .unwrap()
            .contains("OrderCreated without items"),
        "{:?}",
        header(&dead[0], "dlq_error")
    );
    rig.stop().await;
}
