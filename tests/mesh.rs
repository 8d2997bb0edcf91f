//! The notification and analytics services inside `weft up`, through their real
//! interfaces: gRPC calls, mail files on disk, records on the broker, and SQL on
//! the analytics database. One signup and one order give a welcome email, the
//! address's verification, two order confirmations, four `EmailSent` and exact
//! metrics; only staff see the event feed, and it names no address; replaying every
//! event twice
//! while each consumer is killed with SIGKILL changes nothing; poison records go to
//! the dead-letter topics and processing goes on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use rdkafka::Message as _;
use rdkafka::message::{Header, Headers as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use support::grpc::{self, authed, channel, metrics};
use support::kafka::high_watermarks;
use support::{BrokerKind, Mesh, Ports, on_each_broker};
use weft_events::DomainEvent as _;
use weft_proto::analytics::analytics_service_client::AnalyticsServiceClient;
use weft_proto::analytics::{Metrics, RebuildProjectionsRequest, Window};
use weft_proto::common::Money;
use weft_proto::notification::notification_service_client::NotificationServiceClient;
use weft_proto::notification::{DeliveryStatus, EmailSent, ListNotificationsRequest};
use weft_proto::order::order_service_client::OrderServiceClient;
use weft_proto::order::{CreateOrderRequest, OrderItem};
use weft_proto::user::{SignUpRequest, SignupSource, UserSignedUp};
use weft_testkit::{eventually, header, read_topic_until};

const WAIT: Duration = Duration::from_secs(60);

fn usd(units: i64, nanos: i32) -> Option<Money> {
    Some(Money {
        currency_code: "USD".into(),
        units,
        nanos,
    })
}

/// Signs up `email` and places the seed order (2 × 29.99 + 1 × 49.99); returns the
/// user id and an access token.
async fn signup_and_order(ports: &Ports, email: &str) -> (String, String) {
    let request = grpc::sign_up_request(email, "Ada Lovelace", SignupSource::Web);
    grpc::sign_up(ports.user, request).await;
    let login = grpc::login(ports.user, email).await;
    let mut orders = OrderServiceClient::new(channel(ports.order).await);
    let order = orders
        .create_order(authed(
            CreateOrderRequest {
                user_id: login.user_id.clone(),
                items: vec![
                    OrderItem {
                        product_id: "mug".into(),
                        name: "Mug".into(),
                        quantity: 2,
                        unit_price: usd(29, 990_000_000),
                    },
                    OrderItem {
                        product_id: "lamp".into(),
                        name: "Lamp".into(),
                        quantity: 1,
                        unit_price: usd(49, 990_000_000),
                    },
                ],
                idempotency_key: format!("seed-{email}"),
            },
            &login.access_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(order.total, usd(109, 970_000_000));
    (login.user_id, login.access_token)
}

/// Signs `email` up (with `phone` when not empty), nothing more.
async fn users_sign_up(ports: &Ports, email: &str, phone: &str) {
    let request = SignUpRequest {
        phone: phone.into(),
        ..grpc::sign_up_request(email, "Grace Hopper", SignupSource::Web)
    };
    grpc::sign_up(ports.user, request).await;
}

/// A fresh access token of a user made by [`signup_and_order`].
async fn login(ports: &Ports, email: &str) -> String {
    grpc::login(ports.user, email).await.access_token
}

/// What must not change under redelivery: everything but latency and times.
fn exact_part(m: &Metrics) -> String {
    format!(
        "signups={} by_source={:?} orders={} revenue={:?} per_hour={:?} emails={} sms={} events={}",
        m.signups,
        m.signups_by_source,
        m.orders_created,
        m.revenue,
        m.orders_per_hour
            .iter()
            .map(|h| (h.hour_start.map(|t| t.seconds), h.count))
            .collect::<Vec<_>>(),
        m.emails_sent,
        m.sms_sent,
        m.events_processed
    )
}

on_each_broker!(async signup_story =>
    a_signup_and_an_order_give_four_emails_and_exact_metrics,
    a_signup_and_an_order_give_four_emails_and_exact_metrics_on_kafka
);

async fn signup_story(kind: BrokerKind) {
    let Mesh { dir, ports, up } = Mesh::start(kind).await;

    let (user_id, token) = signup_and_order(&ports, "ada@example.com").await;
    let bodies = eventually("four mails", WAIT, || async {
        let m = support::mails(dir.path());
        (m.len() == 4).then_some(m)
    })
    .await;
    let welcome: Vec<_> = bodies
        .iter()
        .filter(|b| b.contains("Subject: Welcome to weft, Ada Lovelace"))
        .collect();
    assert_eq!(welcome.len(), 1, "{bodies:#?}");
    assert!(welcome[0].contains("To: ada@example.com"));
    let confirmations: Vec<_> = bodies
        .iter()
        .filter(|b| b.contains("is confirmed"))
        .collect();
    assert_eq!(confirmations.len(), 2, "{bodies:#?}");
    let seed = confirmations
        .iter()
        .find(|b| b.contains("Total: 109.97 USD"))
        .expect("a confirmation of the seed order");
    assert!(seed.contains("Mug at 29.99 USD =3D 59.98 USD"), "{seed}");
    assert!(seed.contains("Lamp at 49.99 USD =3D 49.99 USD"), "{seed}");
    assert!(seed.contains("Content-Type: text/html"), "{seed}");
    assert!(
        confirmations.iter().any(|b| b.contains("Total: 0.00 USD")),
        "the welcome order's confirmation"
    );
    // The address is verified through a link to this mesh's gateway.
    let verify: Vec<_> = bodies
        .iter()
        .filter(|b| b.contains("Subject: Confirm your email address"))
        .collect();
    assert_eq!(verify.len(), 1, "{bodies:#?}");
    assert!(
        verify[0].contains(&format!("http://127.0.0.1:{}/verify?token", ports.gateway)),
        "{}",
        verify[0]
    );

    // Four EmailSent, each caused by its trigger and in the trigger's correlation.
    let (brokers, topic) = (
        up.broker.bootstrap(),
        up.broker.topic("notification-events"),
    );
    let sent = tokio::task::spawn_blocking(move || {
        read_topic_until(&brokers, &topic, WAIT, |s| s.len() >= 4)
    })
    .await
    .unwrap();
    assert_eq!(sent.len(), 4);
    for record in &sent {
        assert_eq!(
            header(record, "ce_type"),
            Some("weft.notification.v1.EmailSent")
        );
        let e: EmailSent = prost::Message::decode(record.payload().unwrap()).unwrap();
        assert_eq!(e.user_id, user_id);
        assert_eq!(
            header(record, "ce_causationid"),
            Some(e.trigger_event_id.as_str())
        );
        assert!(!header(record, "ce_correlationid").unwrap_or("").is_empty());
    }

    // One trace per user action: the welcome email's EmailSent continues the trace of
    // the SignUp call that caused it (through user-events and the delivery worker).
    let (b, topic) = (up.broker.bootstrap(), up.broker.topic("user-events"));
    let signups =
        tokio::task::spawn_blocking(move || read_topic_until(&b, &topic, WAIT, |s| !s.is_empty()))
            .await
            .unwrap();
    let trace_of = |r: &rdkafka::message::OwnedMessage| {
        header(r, "traceparent")
            .and_then(|t| t.split('-').nth(1))
            .map(str::to_owned)
    };
    let signed_up = signups
        .iter()
        .find(|r| header(r, "ce_type") == Some(UserSignedUp::TYPE))
        .unwrap();
    let signup_trace = trace_of(signed_up).expect("UserSignedUp carries a traceparent");
    let welcome = sent
        .iter()
        .find(|r| {
            let e: EmailSent = prost::Message::decode(r.payload().unwrap()).unwrap();
            e.template == "welcome"
        })
        .unwrap();
    assert_eq!(trace_of(welcome), Some(signup_trace));

    let m = eventually("metrics of one signup and two orders", WAIT, || async {
        let m = metrics(ports.analytics).await;
        (m.emails_sent == 4 && m.orders_created == 2 && m.signups >= 1).then_some(m)
    })
    .await;
    assert_eq!(m.signups, 1);
    assert_eq!(m.signups_by_source.get("SIGNUP_SOURCE_WEB"), Some(&1));
    assert_eq!(m.orders_created, 2);
    assert_eq!(m.revenue, vec![usd(109, 970_000_000).unwrap()]);
    assert_eq!(m.revenue[0].to_string(), "109.97 USD");
    assert_eq!(m.orders_per_hour.iter().map(|h| h.count).sum::<i64>(), 2);
    assert_eq!(m.sms_sent, 0, "the user gave no phone number");
    let latency = m.event_latency.unwrap();
    assert!(
        latency.count >= 6 && latency.p50_ms <= latency.p99_ms && latency.p99_ms <= latency.max_ms
    );

    // The user sees their notifications over gRPC; nobody else does.
    let mut notes = NotificationServiceClient::new(channel(ports.notification).await);
    let list = notes
        .list_notifications(authed(
            ListNotificationsRequest {
                user_id: user_id.clone(),
                page_size: 2,
                page_token: String::new(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.notifications.len(), 2);
    assert!(!list.next_page_token.is_empty());
    assert!(
        list.notifications
            .iter()
            .all(|n| n.status == DeliveryStatus::Sent as i32 && n.sent_time.is_some())
    );
    let anonymous = notes
        .list_notifications(ListNotificationsRequest {
            user_id: user_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);
    let garbage_token = notes
        .list_notifications(authed(
            ListNotificationsRequest {
                user_id,
                page_token: "not-a-token".into(),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(garbage_token.code(), tonic::Code::InvalidArgument);

    // A rebuild replays every topic into empty projections and ends where it began;
    // only staff may ask for one, and staff are made by the operator.
    let mut analytics = AnalyticsServiceClient::new(channel(ports.analytics).await);
    let denied = analytics
        .rebuild_projections(authed(RebuildProjectionsRequest {}, &token))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let (_, claimed) = signup_and_order(&ports, "admin@weft.local").await;
    let denied = analytics
        .rebuild_projections(authed(RebuildProjectionsRequest {}, &claimed))
        .await
        .unwrap_err();
    assert_eq!(
        denied.code(),
        tonic::Code::PermissionDenied,
        "no address makes an admin"
    );
    let granted = support::admin(dir.path(), &["grant", "admin@weft.local", "staff"]);
    assert!(granted.contains("customer, staff"), "{granted}");
    let audit = support::admin(dir.path(), &["audit"]);
    assert!(
        audit.contains("grant") && audit.contains("staff") && audit.contains("admin@weft.local"),
        "{audit}"
    );
    let staff = login(&ports, "admin@weft.local").await;
    let settled = eventually(
        "the second user's emails and orders counted",
        WAIT,
        || async {
            let m = metrics(ports.analytics).await;
            // Per user: the sign-up, its email's verification, two orders, four emails;
            // and the grant.
            (m.emails_sent == 8
                && m.orders_created == 4
                && m.signups == 2
                && m.events_processed == 17)
                .then_some(m)
        },
    )
    .await;
    let replayed = analytics
        .rebuild_projections(authed(RebuildProjectionsRequest {}, &staff))
        .await
        .unwrap()
        .into_inner()
        .events_replayed;
    let rebuilt = metrics(ports.analytics).await;
    assert_eq!(exact_part(&rebuilt), exact_part(&settled));
    assert_eq!(replayed, rebuilt.events_processed);
    // The windows are rebuilt too: the hours of the last day hold every order and
    // email, none of them late.
    let hours = analytics
        .list_windows(weft_proto::analytics::ListWindowsRequest {
            width: weft_proto::analytics::WindowWidth::Hour as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .windows;
    let sum = |figure: fn(&Window) -> i64| hours.iter().map(figure).sum::<i64>();
    assert_eq!(
        (
            sum(|w| w.orders_created),
            sum(|w| w.emails_sent),
            sum(|w| w.late_events)
        ),
        (rebuilt.orders_created, rebuilt.emails_sent, 0),
        "{hours:#?}"
    );
    up.stop();
}

/// Every record of `topics` up to their current ends.
fn all_records(brokers: &str, topics: &[impl AsRef<str>]) -> Vec<rdkafka::message::OwnedMessage> {
    let mut out = Vec::new();
    for topic in topics {
        let topic = topic.as_ref();
        let end = high_watermarks(brokers, &[topic]).values().sum::<i64>() as usize;
        out.extend(read_topic_until(brokers, topic, WAIT, |s| s.len() >= end));
    }
    out
}

/// Offsets `service` has stored in its own database.
async fn stored_offsets(data_dir: &Path, service: &str) -> BTreeMap<(String, i32), i64> {
    use sqlx::Row as _;
    let url = weft_events::db::sqlite_url(data_dir, service).unwrap();
    let db = weft_events::Database::connect(&url).await.unwrap();
    let rows = sqlx::query(
        "SELECT topic, kafka_partition, next_offset FROM weft_consumer_offsets \
         WHERE consumer_group = $1",
    )
    .bind(format!("weft-{service}"))
    .fetch_all(db.pool())
    .await
    .unwrap();
    rows.iter()
        .map(|r| {
            let partition: i64 = r.get(1);
            (
                (r.get::<String, _>(0), partition as i32),
                r.get::<i64, _>(2),
            )
        })
        .collect()
}

/// Copies `record` back onto its topic: same key, value and headers.
async fn republish(producer: &FutureProducer, record: &rdkafka::message::OwnedMessage) {
    let mut headers = OwnedHeaders::new();
    if let Some(h) = record.headers() {
        for h in h.iter() {
            headers = headers.insert(Header {
                key: h.key,
                value: h.value,
            });
        }
    }
    let mut out: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(record.topic()).headers(headers);
    if let Some(k) = record.key() {
        out = out.key(k);
    }
    if let Some(v) = record.payload() {
        out = out.payload(v);
    }
    producer.send(out, Duration::from_secs(10)).await.unwrap();
}

fn kill9(data_dir: &Path, service: &str) -> i32 {
    let pid: i32 = std::fs::read_to_string(data_dir.join(format!("run/{service}.pid")))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    pid
}

const TOPICS: [&str; 3] = ["user-events", "order-events", "notification-events"];

on_each_broker!(async replay_and_kill =>
    replaying_every_event_twice_and_killing_each_consumer_changes_nothing,
    replaying_every_event_twice_and_killing_each_consumer_changes_nothing_on_kafka
);

async fn replay_and_kill(kind: BrokerKind) {
    let Mesh { dir, ports, up } = Mesh::start(kind).await;
    let data = dir.path().to_owned();
    for i in 0..3 {
        signup_and_order(&ports, &format!("user{i}@example.com")).await;
    }
    let brokers = up.broker.bootstrap();
    let prefix = up.broker.prefix().to_owned();
    let topics: Vec<String> = TOPICS.iter().map(|t| up.broker.topic(t)).collect();
    let notification_events = up.broker.topic("notification-events");
    let mails_before = eventually("twelve mails", WAIT, || async {
        let m = support::mails(&data);
        (m.len() == 12).then_some(m)
    })
    .await;
    // Settled: twelve EmailSent published and every record of the run applied.
    let records = eventually("a settled run", WAIT, || {
        let brokers = brokers.clone();
        let port = ports.analytics;
        let (topics, notification_events) = (topics.clone(), notification_events.clone());
        async move {
            let b = brokers.clone();
            let records = tokio::task::spawn_blocking(move || all_records(&b, &topics))
                .await
                .unwrap();
            let emails = records
                .iter()
                .filter(|r| r.topic() == notification_events)
                .count();
            let m = metrics(port).await;
            (emails == 12 && m.events_processed == records.len() as i64).then_some(records)
        }
    })
    .await;
    let before = exact_part(&metrics(ports.analytics).await);
    assert!(before.contains("signups=3 "), "{before}");
    assert!(before.contains("emails=12 "), "{before}");

    // Every event of the run, twice more; each consumer killed once, mid-stream.
    let producer = support::kafka::producer(&brokers);
    let mut killed = Vec::new();
    for (pass, victim) in ["notification", "analytics"].into_iter().enumerate() {
        for (i, record) in records.iter().enumerate() {
            republish(&producer, record).await;
            if i == records.len() / 2 {
                killed.push((victim, kill9(&data, victim)));
            }
        }
        assert_eq!(killed.len(), pass + 1);
    }

    // Both restarted by `weft up` and caught up with the ends of their topics.
    for (service, old_pid) in &killed {
        eventually(&format!("{service} restarted"), WAIT, || async {
            let pid = std::fs::read_to_string(data.join(format!("run/{service}.pid"))).ok()?;
            (pid.trim().parse::<i32>().ok()? != *old_pid).then_some(())
        })
        .await;
    }
    let ends = {
        let (b, topics) = (brokers.clone(), topics.clone());
        tokio::task::spawn_blocking(move || high_watermarks(&b, &topics))
            .await
            .unwrap()
    };
    for service in ["analytics", "notification"] {
        // Services store offsets under weft's topic names (without the prefix).
        let wanted: BTreeMap<_, _> = ends
            .iter()
            .map(|((t, p), v)| ((t.strip_prefix(&prefix).unwrap_or(t).to_owned(), *p), *v))
            .filter(|((t, _), _)| service == "analytics" || t != "notification-events")
            .collect();
        eventually(&format!("{service} caught up"), WAIT, || async {
            let mut stored = stored_offsets(&data, service).await;
            // A partition that never had a record has no stored offset.
            for (tp, end) in &wanted {
                if *end == 0 {
                    stored.entry(tp.clone()).or_insert(0);
                }
            }
            (stored == wanted).then_some(())
        })
        .await;
    }

    assert_eq!(exact_part(&metrics(ports.analytics).await), before);
    assert_eq!(
        support::mails(&data),
        mails_before,
        "the same emails, byte for byte"
    );
    let b = brokers.clone();
    let sent = tokio::task::spawn_blocking(move || all_records(&b, &[notification_events]))
        .await
        .unwrap();
    let ids: BTreeSet<&str> = sent.iter().filter_map(|r| header(r, "ce_id")).collect();
    assert_eq!(ids.len(), 12, "no EmailSent beyond the first twelve");

    // The order service's welcome reaction also resumes after a SIGKILL: a new
    // signup gets its welcome order (and its emails) once weft up has restarted it.
    let old_pid = kill9(&data, "order");
    eventually("order restarted", WAIT, || async {
        let pid = std::fs::read_to_string(data.join("run/order.pid")).ok()?;
        (pid.trim().parse::<i32>().ok()? != old_pid).then_some(())
    })
    .await;
    eventually("the order service SERVING again", WAIT, || async {
        grpc::serving(ports.order).await.then_some(())
    })
    .await;
    signup_and_order(&ports, "after-crash@example.com").await;
    eventually("the new user's welcome order and emails", WAIT, || async {
        let m = metrics(ports.analytics).await;
        (m.signups == 4 && m.orders_created == 8 && m.emails_sent == 16).then_some(())
    })
    .await;
    up.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_go_to_the_dead_letter_topic_and_processing_goes_on() {
    let Mesh {
        dir: _dir,
        ports,
        up,
    } = Mesh::start(BrokerKind::Embedded).await;
    let brokers = format!("127.0.0.1:{}", ports.broker);
    let producer = support::kafka::producer(&brokers);
    let send = |headers: Vec<(String, String)>, value: Vec<u8>| {
        let producer = producer.clone();
        async move {
            let record = FutureRecord::to("user-events").key("poison");
            weft_testkit::produce(&producer, record.payload(value.as_slice()), headers).await;
        }
    };
    // Garbage: no envelope at all.
    send(Vec::new(), b"\x00\xffnot protobuf".to_vec()).await;
    // A well-formed envelope naming a type nobody knows.
    let mut hollow = UserSignedUp {
        metadata: Some(weft_events::EventContext::root().metadata("poison-test", "1")),
        ..Default::default()
    };
    let envelope = weft_events::Envelope::of(&hollow).unwrap();
    let mut unknown = envelope.headers();
    for (k, v) in &mut unknown {
        if k == "ce_type" {
            *v = "weft.user.v1.UserExploded".into();
        }
    }
    send(unknown, prost::Message::encode_to_vec(&hollow)).await;
    // A valid UserSignedUp without user id or email.
    hollow.name = "Nobody".into();
    send(envelope.headers(), prost::Message::encode_to_vec(&hollow)).await;

    // Processing goes on: a real signup after the poison is counted and mailed.
    let (user_id, _) = signup_and_order(&ports, "after-poison@example.com").await;
    let m = eventually("the signup after the poison", WAIT, || async {
        let m = metrics(ports.analytics).await;
        (m.emails_sent == 4 && m.signups >= 1 && m.orders_created >= 2).then_some(m)
    })
    .await;
    assert_eq!(m.signups, 1);
    assert_eq!(m.orders_created, 2);
    assert!(!user_id.is_empty());

    let dead = tokio::task::spawn_blocking(move || {
        read_topic_until(&brokers, "user-events.dlq", WAIT, |s| {
            ["weft-notification", "weft-analytics"].iter().all(|g| {
                s.iter()
                    .filter(|r| header(r, "dlq_consumer_group") == Some(*g))
                    .count()
                    >= 3
            })
        })
    })
    .await
    .unwrap();
    for group in ["weft-notification", "weft-analytics"] {
        let mine: Vec<_> = dead
            .iter()
            .filter(|r| header(r, "dlq_consumer_group") == Some(group))
            .collect();
        let reasons: BTreeSet<&str> = mine
            .iter()
            .filter_map(|r| header(r, "dlq_reason"))
            .collect();
        assert_eq!(
            reasons,
            BTreeSet::from(["malformed-envelope", "unknown-type", "invalid"]),
            "{group}"
        );
        for r in &mine {
            assert!(!header(r, "dlq_error").unwrap_or("").is_empty());
            assert_eq!(header(r, "dlq_source_topic"), Some("user-events"));
            assert_eq!(
                r.key(),
                Some(b"poison".as_slice()),
                "the original key is kept"
            );
        }
    }
    up.stop();
}

/// Adds the one-minute windows of a stream message to those sent before, each
/// replacing what was sent of it before.
fn merge(minutes: &mut BTreeMap<i64, Window>, windows: Vec<Window>) {
    for w in windows {
        minutes.insert(w.start_time.unwrap().seconds, w);
    }
}

/// Whether the windows add up to the totals (every event of the test is in the last
/// hour, and none is late).
fn agree(minutes: &BTreeMap<i64, Window>, m: &Metrics) -> bool {
    let sum = |figure: fn(&Window) -> i64| minutes.values().map(figure).sum::<i64>();
    sum(|w| w.signups) == m.signups
        && sum(|w| w.emails_sent) == m.emails_sent
        && sum(|w| w.orders_created) == m.orders_created
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metric_stream_follows_changes_and_bad_requests_get_clear_errors() {
    use weft_proto::analytics::{ListRecentEventsRequest, StreamMetricsRequest};
    use weft_proto::notification::GetNotificationRequest;
    let Mesh { dir, ports, up } = Mesh::start(BrokerKind::Embedded).await;
    let mut analytics = AnalyticsServiceClient::new(channel(ports.analytics).await);
    // Staff see the feed of events as it happens; anonymous callers see counts only.
    users_sign_up(&ports, "ops@example.com", "").await;
    support::admin(dir.path(), &["grant", "ops@example.com", "staff"]);
    let staff = login(&ports, "ops@example.com").await;
    eventually("the staff member's sign-up counted", WAIT, || async {
        // Welcome, verification, the welcome order's confirmation.
        (metrics(ports.analytics).await.emails_sent == 3).then_some(())
    })
    .await;
    let mut stream = analytics
        .stream_metrics(authed(StreamMetricsRequest {}, &staff))
        .await
        .unwrap()
        .into_inner();
    let mut anonymous_stream = analytics
        .stream_metrics(StreamMetricsRequest {})
        .await
        .unwrap()
        .into_inner();
    let snapshot = stream.message().await.unwrap().unwrap();
    // Each message says when the server sent it, on the server's clock (this one).
    let sent = snapshot.sent_at.expect("sent_at is set");
    let received = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let sent = Duration::new(
        u64::try_from(sent.seconds).unwrap(),
        u32::try_from(sent.nanos).unwrap(),
    );
    assert!(
        sent <= received && received - sent < WAIT,
        "sent_at {sent:?} against {received:?} received"
    );
    let before = snapshot.metrics.unwrap().signups;
    assert_eq!(before, 1);
    // The one-minute windows come along: the first message has the last hour's, each
    // later one those that changed, each replacing what was sent of it before.
    let mut minutes: BTreeMap<i64, Window> = BTreeMap::new();
    merge(&mut minutes, snapshot.minute_windows);

    users_sign_up(&ports, "grace@example.com", "+14155550123").await;
    let (ada, ada_token) = signup_and_order(&ports, "ada@example.com").await;
    let mut seen_signup = false;
    let mut feed = Vec::new();
    let mut last = Metrics::default();
    let deadline = tokio::time::Instant::now() + WAIT;
    // Grace: welcome, verification, the welcome order's confirmation; Ada: those
    // and the seed order's.
    while last.emails_sent < 10 || last.signups < before + 2 || !agree(&minutes, &last) {
        let update = tokio::time::timeout_at(deadline, stream.message())
            .await
            .expect("updates keep coming")
            .unwrap()
            .expect("the stream stays open");
        seen_signup |= update
            .new_events
            .iter()
            .any(|e| e.event_type == UserSignedUp::TYPE && e.summary.contains(&ada));
        feed.extend(update.new_events.iter().map(|e| e.summary.clone()));
        merge(&mut minutes, update.minute_windows);
        let m = update.metrics.unwrap();
        assert!(
            m.events_processed >= last.events_processed,
            "never backwards"
        );
        last = m;
    }
    assert!(seen_signup, "the signup came as a new event: {feed:#?}");
    assert_eq!(last.signups, before + 2);
    assert!(agree(&minutes, &last), "{minutes:#?} against {last:?}");
    // Not even staff's feed carries an address or a number.
    for summary in &feed {
        assert!(
            !summary.contains('@') && !summary.contains("4155550123"),
            "{summary}"
        );
    }
    let mut anonymous_updates = 0;
    while let Ok(Some(Ok(update))) =
        tokio::time::timeout(Duration::from_millis(500), anonymous_stream.message())
            .await
            .map(|m| m.transpose())
    {
        anonymous_updates += 1;
        assert!(update.new_events.is_empty(), "{update:?}");
        assert!(update.metrics.is_some());
    }
    assert!(
        anonymous_updates >= 1,
        "the counts still flow to anonymous callers"
    );
    // One client holds at most eight metric streams (the default).
    let mut held = Vec::new();
    for _ in 0..7 {
        held.push(
            analytics
                .stream_metrics(StreamMetricsRequest {})
                .await
                .unwrap()
                .into_inner(),
        );
    }
    let ninth = analytics
        .stream_metrics(StreamMetricsRequest {})
        .await
        .unwrap_err();
    assert_eq!(ninth.code(), tonic::Code::ResourceExhausted, "{ninth:?}");
    drop(held);
    eventually("a freed metric stream", WAIT, || async {
        let mut a = AnalyticsServiceClient::new(channel(ports.analytics).await);
        a.stream_metrics(StreamMetricsRequest {})
            .await
            .ok()
            .map(drop)
    })
    .await;

    // The recent events list: staff only, bounded, free of addresses.
    let ten = ListRecentEventsRequest { limit: 10 };
    for (request, code) in [
        (tonic::Request::new(ten), tonic::Code::Unauthenticated),
        (authed(ten, &ada_token), tonic::Code::PermissionDenied),
        (
            authed(ListRecentEventsRequest { limit: -1 }, &staff),
            tonic::Code::InvalidArgument,
        ),
    ] {
        let err = analytics.list_recent_events(request).await.unwrap_err();
        assert_eq!(err.code(), code, "{err:?}");
    }
    let capped = analytics
        .list_recent_events(authed(ListRecentEventsRequest { limit: 10_000 }, &staff))
        .await
        .unwrap()
        .into_inner();
    assert!(!capped.events.is_empty() && capped.events.len() <= 50);
    for e in &capped.events {
        assert!(
            !e.summary.contains('@') && !e.summary.contains("4155550123"),
            "{}",
            e.summary
        );
    }
    let anonymous = analytics
        .rebuild_projections(RebuildProjectionsRequest {})
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);

    let mut notes = NotificationServiceClient::new(channel(ports.notification).await);
    let adas = || ListNotificationsRequest {
        user_id: ada.clone(),
        ..Default::default()
    };
    let mine = notes
        .list_notifications(authed(adas(), &ada_token))
        .await
        .unwrap()
        .into_inner()
        .notifications;
    assert_eq!(mine.len(), 4, "welcome, verification, two confirmations");
    let (_, bob_token) = signup_and_order(&ports, "bob@example.com").await;
    for (request, code) in [
        (
            GetNotificationRequest {
                notification_id: String::new(),
            },
            tonic::Code::InvalidArgument,
        ),
        (
            GetNotificationRequest {
                notification_id: "x".repeat(10_000),
            },
            tonic::Code::InvalidArgument,
        ),
        (
            GetNotificationRequest {
                notification_id: "no-such-notification".into(),
            },
            tonic::Code::NotFound,
        ),
        (
            GetNotificationRequest {
                notification_id: mine[0].notification_id.clone(),
            },
            tonic::Code::NotFound,
        ),
    ] {
        let err = notes
            .get_notification(authed(request, &bob_token))
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{err:?}");
    }
    let others = notes
        .list_notifications(authed(adas(), &bob_token))
        .await
        .unwrap_err();
    assert_eq!(others.code(), tonic::Code::NotFound, "no existence leak");
    let negative = notes
        .list_notifications(authed(
            ListNotificationsRequest {
                user_id: ada,
                page_size: -5,
                ..Default::default()
            },
            &ada_token,
        ))
        .await
        .unwrap_err();
    assert_eq!(negative.code(), tonic::Code::InvalidArgument);
    assert!(negative.message().contains("page_size") || !negative.details().is_empty());

    // The gateway: unknown routes are 404.
    let (answer, _) = support::rest::raw_get(ports.gateway, "/nope").await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    drop(stream);
    up.stop();
}

/// The embedded broker SIGKILLed mid-run is started again by `weft up` like a
/// service; the mesh carries on and a signup after it still gets its welcome order
/// and its emails, nothing of before lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_broker_is_restarted_and_the_mesh_carries_on() {
    let Mesh { dir, ports, up } = Mesh::start(BrokerKind::Embedded).await;
    let data = dir.path().to_owned();
    users_sign_up(&ports, "before@example.com", "").await;
    // Welcome, verification, the welcome order's confirmation.
    eventually("the first signup settled", WAIT, || async {
        let m = metrics(ports.analytics).await;
        (m.signups == 1 && m.orders_created == 1 && m.emails_sent == 3).then_some(())
    })
    .await;

    let old_pid = kill9(&data, "broker");
    eventually("the broker restarted", WAIT, || async {
        let pid = std::fs::read_to_string(data.join("run/broker.pid")).ok()?;
        let restarted = pid.trim().parse::<i32>().ok()? != old_pid;
        (restarted && std::net::TcpStream::connect(("127.0.0.1", ports.broker)).is_ok())
            .then_some(())
    })
    .await;
    users_sign_up(&ports, "after@example.com", "").await;
    // Every event once: two signups, their verifications, orders and six emails.
    let m = eventually("the second signup settled", WAIT, || async {
        let m = metrics(ports.analytics).await;
        (m.signups == 2
            && m.orders_created == 2
            && m.emails_sent == 6
            && m.events_processed >= 2 * 6)
            .then_some(m)
    })
    .await;
    assert_eq!(m.events_processed, 2 * 6, "every event once: {m:?}");
    assert_eq!(support::mails(&data).len(), 6);
    up.stop();
}
