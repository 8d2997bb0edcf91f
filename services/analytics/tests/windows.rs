//! The windows of event time through the real service: events published to the
//! broker by the test with the `ce_time` it chooses, applied by the analytics
//! service on SQLite and PostgreSQL, read back with `ListWindows` over gRPC.
//!
//! One scenario walks a window's life: events on both sides of a minute's boundary,
//! an event late within the allowance (counted) and one beyond it (counted as late
//! only), a redelivered batch (nothing counted twice), and a restart in the middle of
//! a window (its figures and the watermark carry on). Others show old windows
//! pruned by their own retention, an event stamped a year ahead closing nothing, and
//! bad ranges refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use tonic::transport::Channel;
use weft_events::db::{now_micros, timestamp};
use weft_events::{DomainEvent, Envelope, EventContext};
use weft_proto::analytics::analytics_service_client::AnalyticsServiceClient;
use weft_proto::analytics::{GetMetricsRequest, ListWindowsRequest, Metrics, Window, WindowWidth};
use weft_proto::common::{EventMetadata, Money};
use weft_proto::notification::EmailSent;
use weft_proto::order::OrderCreated;
use weft_proto::user::{SignupSource, UserSignedUp};
use weft_testkit::{Db, Home, eventually, on_each_db, produce};

const WAIT: Duration = Duration::from_secs(60);
const SECOND: i64 = 1_000_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;

/// Metadata of an event that happened at `at` (µs since the epoch).
fn at(at: i64) -> Option<EventMetadata> {
    let mut meta = EventContext::root().metadata("test", "1");
    meta.occurred_at = Some(timestamp(at));
    Some(meta)
}

fn usd(units: i64, nanos: i32) -> Money {
    Money {
        currency_code: "USD".into(),
        units,
        nanos,
    }
}

fn order(id: &str, when: i64, total: Money) -> OrderCreated {
    OrderCreated {
        metadata: at(when),
        order_id: id.into(),
        user_id: "u-1".into(),
        total: Some(total),
        ..Default::default()
    }
}

/// Publishes `event` under `key`: events of one key are applied in the order sent.
async fn publish<E: DomainEvent>(producer: &FutureProducer, event: &E, key: &str) {
    let payload = prost::Message::encode_to_vec(event);
    let record = FutureRecord::to(E::TOPIC)
        .key(key)
        .payload(payload.as_slice());
    produce(producer, record, Envelope::of(event).unwrap().headers()).await;
}

/// A broker with weft's topics, and an empty analytics database of kind `db`.
async fn rig(db: Db) -> (Home, String) {
    let home = Home::new();
    let kafka = weft_events::kafka::KafkaArgs::new(home.bootstrap());
    weft_events::topics::provision(&kafka, &weft_events::topics::all_topics())
        .await
        .unwrap();
    let database_url = home.database(db, "analytics").await;
    (home, database_url)
}

/// A producer to the home's broker.
fn producer(home: &Home) -> FutureProducer {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", home.bootstrap())
        .create()
        .unwrap()
}

/// The analytics service on its own, over the home's broker and `database_url`.
async fn start(home: &Home, database_url: &str, extra: &[&str]) -> weft_kit::host::Running {
    let mut args = vec!["--from", "earliest", "--window-lateness", "5m"];
    args.extend(extra);
    home.spawn::<weft_analytics::App>(database_url, &args).await
}

async fn client(running: &weft_kit::host::Running) -> AnalyticsServiceClient<Channel> {
    AnalyticsServiceClient::connect(running.url())
        .await
        .unwrap()
}

async fn metrics(client: &mut AnalyticsServiceClient<Channel>) -> Metrics {
    let response = client.get_metrics(GetMetricsRequest {}).await.unwrap();
    response.into_inner().metrics.unwrap()
}

/// Waits until analytics has applied `n` events.
async fn applied(client: &mut AnalyticsServiceClient<Channel>, n: i64) {
    eventually(&format!("{n} events applied"), WAIT, || {
        let mut client = client.clone();
        async move { (metrics(&mut client).await.events_processed >= n).then_some(()) }
    })
    .await;
    assert_eq!(
        metrics(client).await.events_processed,
        n,
        "more events applied than sent"
    );
}

async fn windows(
    client: &mut AnalyticsServiceClient<Channel>,
    width: WindowWidth,
    from: i64,
    to: i64,
) -> Vec<Window> {
    client
        .list_windows(ListWindowsRequest {
            width: width as i32,
            start_time: Some(timestamp(from)),
            end_time: Some(timestamp(to)),
        })
        .await
        .unwrap()
        .into_inner()
        .windows
}

/// (orders, revenue, signups, emails, late, closed) of a window.
fn figures(w: &Window) -> (i64, Vec<Money>, i64, i64, i64, bool) {
    (
        w.orders_created,
        w.revenue.clone(),
        w.signups,
        w.emails_sent,
        w.late_events,
        w.closed,
    )
}

async fn a_window_counts_its_events_once_late_ones_apart(db: Db) {
    let (home, database_url) = rig(db).await;
    let running = start(&home, &database_url, &[]).await;
    let mut api = client(&running).await;
    let producer = producer(&home);
    // Three hours ago, on the hour: every event of the test is in the past.
    let t0 = now_micros().div_euclid(HOUR) * HOUR - 3 * HOUR;

    // 1. Either side of a minute's boundary.
    let signup = UserSignedUp {
        metadata: at(t0 + 30 * SECOND),
        user_id: "u-1".into(),
        email: "ada@example.com".into(),
        source: SignupSource::Web as i32,
        ..Default::default()
    };
    publish(&producer, &signup, "k").await;
    let before = order("o-a", t0 + MINUTE - 1, usd(10, 0));
    let after = order("o-b", t0 + MINUTE, usd(20, 500_000_000));
    publish(&producer, &before, "k").await;
    publish(&producer, &after, "k").await;
    let email = EmailSent {
        metadata: at(t0 + MINUTE + SECOND),
        notification_id: "n-1".into(),
        user_id: "u-1".into(),
        ..Default::default()
    };
    publish(&producer, &email, "k").await;
    applied(&mut api, 4).await;
    let minutes = windows(&mut api, WindowWidth::Minute, t0, t0 + 3 * MINUTE).await;
    assert_eq!(minutes.len(), 3, "{minutes:?}");
    assert_eq!(minutes[0].start_time, Some(timestamp(t0)));
    assert_eq!(minutes[0].end_time, Some(timestamp(t0 + MINUTE)));
    assert_eq!(figures(&minutes[0]), (1, vec![usd(10, 0)], 1, 0, 0, false));
    assert_eq!(
        minutes[0].signups_by_source.get("SIGNUP_SOURCE_WEB"),
        Some(&1)
    );
    assert_eq!(
        figures(&minutes[1]),
        (1, vec![usd(20, 500_000_000)], 0, 1, 0, false)
    );
    assert_eq!(figures(&minutes[2]), (0, vec![], 0, 0, 0, false));
    let hour = windows(&mut api, WindowWidth::Hour, t0, t0 + HOUR).await;
    assert_eq!(
        figures(&hour[0]),
        (2, vec![usd(30, 500_000_000)], 1, 1, 0, false)
    );

    // 2. The watermark moves to 10 minutes in: the window of minute 6 is still open
    //    (it closes at 7 + 5), that of minute 2 has closed (at 3 + 5); the hour is
    //    open all along.
    let c = order("o-c", t0 + 10 * MINUTE, usd(1, 0));
    let d = order("o-d", t0 + 6 * MINUTE, usd(2, 0));
    let e = order("o-e", t0 + 2 * MINUTE, usd(4, 0));
    for o in [&c, &d, &e] {
        publish(&producer, o, "k").await;
    }
    applied(&mut api, 7).await;
    let minutes = windows(&mut api, WindowWidth::Minute, t0, t0 + 11 * MINUTE).await;
    assert_eq!(
        figures(&minutes[2]),
        (0, vec![], 0, 0, 1, true),
        "{:?}",
        minutes[2]
    );
    assert_eq!(figures(&minutes[6]), (1, vec![usd(2, 0)], 0, 0, 0, false));
    assert_eq!(figures(&minutes[10]), (1, vec![usd(1, 0)], 0, 0, 0, false));
    // Minutes 0 to 4 have closed, 5 on are open.
    let closed: Vec<bool> = minutes.iter().map(|w| w.closed).collect();
    assert_eq!(closed, [[true; 5].as_slice(), &[false; 6]].concat());
    let hour = windows(&mut api, WindowWidth::Hour, t0, t0 + HOUR).await;
    assert_eq!(
        figures(&hour[0]),
        (5, vec![usd(37, 500_000_000)], 1, 1, 0, false)
    );

    // 3. The same three records again, then a new one after them: the copies count
    //    nothing.
    for o in [&c, &d, &e] {
        publish(&producer, o, "k").await;
    }
    let f = order("o-f", t0 + 10 * MINUTE + SECOND, usd(8, 0));
    publish(&producer, &f, "k").await;
    applied(&mut api, 8).await;
    let minutes = windows(&mut api, WindowWidth::Minute, t0, t0 + 11 * MINUTE).await;
    assert_eq!(figures(&minutes[2]), (0, vec![], 0, 0, 1, true));
    assert_eq!(figures(&minutes[6]), (1, vec![usd(2, 0)], 0, 0, 0, false));
    assert_eq!(figures(&minutes[10]), (2, vec![usd(9, 0)], 0, 0, 0, false));
    let hour = windows(&mut api, WindowWidth::Hour, t0, t0 + HOUR).await;
    assert_eq!(
        figures(&hour[0]),
        (6, vec![usd(45, 500_000_000)], 1, 1, 0, false)
    );

    // 4. A restart in the middle of the window of minute 10: it carries on from its
    //    figures, and the watermark is remembered: minute 3 closed before the restart
    //    and stays closed (its event comes first, before any newer one).
    running.stop().await.unwrap();
    let running = start(&home, &database_url, &[]).await;
    let mut api = client(&running).await;
    let g = order("o-g", t0 + 10 * MINUTE + 30 * SECOND, usd(16, 0));
    let h = order("o-h", t0 + 3 * MINUTE, usd(32, 0));
    publish(&producer, &h, "k").await;
    publish(&producer, &g, "k").await;
    applied(&mut api, 10).await;
    let minutes = windows(&mut api, WindowWidth::Minute, t0, t0 + 11 * MINUTE).await;
    assert_eq!(figures(&minutes[3]), (0, vec![], 0, 0, 1, true));
    assert_eq!(figures(&minutes[10]), (3, vec![usd(25, 0)], 0, 0, 0, false));
    let hour = windows(&mut api, WindowWidth::Hour, t0, t0 + HOUR).await;
    assert_eq!(
        figures(&hour[0]),
        (8, vec![usd(93, 500_000_000)], 1, 1, 0, false)
    );
    // The totals agree with the windows of the hour.
    let m = metrics(&mut api).await;
    assert_eq!(m.orders_created, 8);
    assert_eq!(m.revenue, vec![usd(93, 500_000_000)]);
    running.stop().await.unwrap();
}

async fn old_windows_are_pruned_by_their_own_retention(db: Db) {
    let (home, database_url) = rig(db).await;
    let running = start(
        &home,
        &database_url,
        &["--minute-window-retention", "2h", "--prune-interval", "1s"],
    )
    .await;
    let mut api = client(&running).await;
    let producer = producer(&home);
    let now = now_micros();
    let old = now - 3 * HOUR;
    let recent = now - 30 * MINUTE;
    publish(&producer, &order("o-old", old, usd(1, 0)), "k").await;
    publish(&producer, &order("o-new", recent, usd(2, 0)), "k").await;
    applied(&mut api, 2).await;
    let in_minute = |client: AnalyticsServiceClient<Channel>, t: i64| async move {
        let mut client = client;
        windows(&mut client, WindowWidth::Minute, t, t + 1).await[0].orders_created
    };
    eventually("the minute window of 3 hours ago pruned", WAIT, || {
        let api = api.clone();
        async move { (in_minute(api, old).await == 0).then_some(()) }
    })
    .await;
    assert_eq!(in_minute(api.clone(), recent).await, 1);
    let hours = windows(&mut api, WindowWidth::Hour, old, old + 1).await;
    assert_eq!(hours[0].orders_created, 1, "hour windows are kept 90 days");
    running.stop().await.unwrap();
}

async fn an_event_stamped_in_the_future_closes_no_window(db: Db) {
    let (home, database_url) = rig(db).await;
    let running = start(&home, &database_url, &[]).await;
    let mut api = client(&running).await;
    let producer = producer(&home);
    let now = now_micros();
    let ahead = now + 365 * 24 * HOUR;
    let recent = now - 2 * MINUTE;
    publish(&producer, &order("o-ahead", ahead, usd(1, 0)), "k").await;
    publish(&producer, &order("o-recent", recent, usd(2, 0)), "k").await;
    applied(&mut api, 2).await;
    // Counted in its own window a year ahead, and the watermark stopped at the
    // service's clock: two minutes ago is still open.
    let future = windows(&mut api, WindowWidth::Minute, ahead, ahead + 1).await;
    assert_eq!(figures(&future[0]), (1, vec![usd(1, 0)], 0, 0, 0, false));
    let minute = windows(&mut api, WindowWidth::Minute, recent, recent + 1).await;
    assert_eq!(figures(&minute[0]), (1, vec![usd(2, 0)], 0, 0, 0, false));
    let response = api
        .list_windows(ListWindowsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let watermark = response.watermark.unwrap();
    assert!(
        watermark.seconds * SECOND <= now_micros(),
        "{watermark:?} is ahead of the clock"
    );
    running.stop().await.unwrap();
}

async fn bad_ranges_get_clear_errors(db: Db) {
    let (home, database_url) = rig(db).await;
    let running = start(&home, &database_url, &[]).await;
    let mut api = client(&running).await;
    let now = now_micros();
    let ask = |width: i32, start: Option<prost_types::Timestamp>, end| ListWindowsRequest {
        width,
        start_time: start,
        end_time: end,
    };
    let cases = [
        (ask(9, None, None), "width"),
        (
            ask(1, Some(timestamp(now)), Some(timestamp(now - HOUR))),
            "start_time",
        ),
        (
            ask(
                1,
                Some(timestamp(now - 2 * 24 * HOUR)),
                Some(timestamp(now)),
            ),
            "end_time",
        ),
        (
            ask(
                2,
                Some(prost_types::Timestamp {
                    seconds: i64::MAX,
                    nanos: 0,
                }),
                None,
            ),
            "start_time",
        ),
        (
            ask(
                2,
                None,
                Some(prost_types::Timestamp {
                    seconds: 0,
                    nanos: -5,
                }),
            ),
            "end_time",
        ),
    ];
    for (request, field) in cases {
        let status = api.list_windows(request).await.unwrap_err();
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{request:?}: {status:?}"
        );
        assert_eq!(
            weft_testkit::violations(&status),
            [field],
            "{request:?}: {status:?}"
        );
        assert!(!status.message().is_empty());
    }
    // Unset: the last hour of minutes, the current one last.
    let last_hour = api
        .list_windows(ListWindowsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(last_hour.windows.len(), 60);
    let last = last_hour.windows.last().unwrap();
    let (start, end) = (last.start_time.unwrap(), last.end_time.unwrap());
    assert!(
        start.seconds * SECOND <= now && now < end.seconds * SECOND,
        "{last:?}"
    );
    assert_eq!(last_hour.allowed_lateness.unwrap().seconds, 300);
    assert_eq!(last_hour.watermark, None, "no event seen yet");
    running.stop().await.unwrap();
}

on_each_db!(
    a_window_counts_its_events_once_late_ones_apart,
    old_windows_are_pruned_by_their_own_retention,
    an_event_stamped_in_the_future_closes_no_window,
    bad_ranges_get_clear_errors,
);
