//! The story over REST/JSON through the gateway under `weft up`: the curl demo
//! (`scripts/demo-rest`) signs up, verifies the address, logs in, orders 109.97 USD
//! from the catalogue, pays, has staff ship, reads the metrics and the live stream;
//! then bad input, other users' data, who may do what, the live stream following a
//! new signup without naming anyone, one trace from the REST call to the Kafka
//! record, and the stricter login rate limit — all through the real gateway and
//! services.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use support::{BrokerKind, Mesh, Ports, Up, on_each_broker, output, value};
use weft_testkit::{eventually, header, read_topic_until};

const WAIT: Duration = Duration::from_secs(60);

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

on_each_broker!(async rest_story =>
    the_story_over_rest_through_the_gateway,
    the_story_over_rest_through_the_gateway_on_kafka
);

async fn rest_story(kind: BrokerKind) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Mesh { dir, ports, up } = Mesh::start(kind).await;
    let base = format!("http://127.0.0.1:{}", ports.gateway);

    let mut demo = Command::new("bash");
    demo.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/demo-rest"))
        .env("WEFT_GATEWAY_URL", &base)
        .env("WEFT_DATA_DIR", dir.path())
        .env("WEFT_BIN", support::WEFT)
        .env_remove("WEFT_USER_DATABASE_URL")
        .env("DEMO_EMAIL", "rest@example.com");
    let stdout = output::succeeded("scripts/demo-rest", &output::output_async(demo).await);
    assert_eq!(value(&stdout, "verified", "email_verified"), "True");
    assert!(value(&stdout, "catalogue", "products").contains("mug"));
    assert_eq!(value(&stdout, "order", "total"), "109.97_USD");
    assert_eq!(value(&stdout, "paid", "status"), "ORDER_STATUS_CONFIRMED");
    assert_eq!(value(&stdout, "shipped", "status"), "ORDER_STATUS_SHIPPED");
    let ada_order = value(&stdout, "order", "order_id").to_owned();
    let ada_id = value(&stdout, "signed-up", "user_id").to_owned();

    let c = Client {
        http: reqwest::Client::new(),
        base,
    };
    // Metrics reach the acceptance figures: the customer's and the staff member's
    // sign-ups, their welcome orders and the seed order, 109.97 USD.
    eventually("metrics of two signups and three orders", WAIT, || async {
        let (_, m) = c.call("GET", "/v1/analytics/metrics", None, None).await;
        let m = &m["metrics"];
        (m["signups"] == "2"
            && m["ordersCreated"] == "3"
            && m["revenue"] == json!([{"currencyCode": "USD", "units": "109", "nanos": 970000000}])
            && m["emailsSent"]
                .as_str()
                .is_some_and(|e| e.parse::<u32>().unwrap() >= 2))
        .then_some(())
    })
    .await;
    windows_over_rest(&c).await;

    // One trace from the REST call to the Kafka record.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let request = c
        .http
        .post(format!("{}/v1/users", c.base))
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .json(&json!({"email": "traced@example.com", "name": "Tracy Trace", "password": "correct horse battery 9", "source": "SIGNUP_SOURCE_MOBILE"}));
    let traced = support::rest::answer_ok(request).await;
    let traced_id = traced["user"]["userId"].as_str().unwrap().to_owned();
    let brokers = up.broker.bootstrap();
    let user_events = up.broker.topic("user-events");
    let records = tokio::task::spawn_blocking(move || {
        read_topic_until(&brokers, &user_events, WAIT, |s| {
            s.iter()
                .any(|r| header(r, "ce_subject") == Some(traced_id.as_str()))
        })
    })
    .await
    .unwrap();
    let traced_id = traced["user"]["userId"].as_str().unwrap();
    let record = records
        .iter()
        .find(|r| header(r, "ce_subject") == Some(traced_id))
        .unwrap();
    assert!(
        header(record, "traceparent").unwrap().contains(trace),
        "the REST caller's trace reaches Kafka"
    );

    // The live stream: a snapshot, then an update when someone signs up.
    let mut stream = c
        .http
        .get(format!("{}/v1/analytics/metrics:stream", c.base))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let mut seen = String::new();
    let snapshot = next_event(&mut stream, &mut seen).await;
    let before: u64 = snapshot["metrics"]["signups"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let (bob_id, bob) = support::rest::signup_and_login(&c.http, &c.base, "bob@example.com").await;
    let after = tokio::time::timeout(WAIT, async {
        loop {
            let e = next_event(&mut stream, &mut seen).await;
            // An anonymous stream carries counts, never the feed of events.
            assert!(e.get("newEvents").is_none_or(|n| n == &json!([])), "{e}");
            let n: u64 = e["metrics"]["signups"].as_str().unwrap().parse().unwrap();
            if n > before {
                return n;
            }
        }
    })
    .await
    .expect("a stream update after the signup");
    assert_eq!(after, before + 1);
    assert!(!seen.contains('@'), "{seen}");
    drop(stream);
    let (status, _) = c.call("GET", "/v1/analytics/events", None, None).await;
    assert_eq!(status, 401, "the event feed is not anonymous");
    let (status, _) = c
        .call("GET", "/v1/analytics/events", Some(&bob), None)
        .await;
    assert_eq!(status, 403, "nor for customers");

    // Who may do what, over REST: customers read the catalogue but do not change it,
    // do not ship (even their own orders), and pay catalogue prices.
    let (status, products) = c.call("GET", "/v1/products", None, None).await;
    assert_eq!(status, 200, "{products}");
    let bob_posts = |path: String, body: Value| {
        let (c, bob) = (&c, &bob);
        async move { c.call("POST", &path, Some(bob), Some(body)).await }
    };
    let cheap = json!({"productId": "cheap", "name": "Cheap", "unitPrice": {"currencyCode": "USD", "units": "0"}, "active": true});
    let (status, err) = bob_posts("/v1/products".into(), cheap).await;
    assert_eq!((status, err["code"].as_i64()), (403, Some(7)), "{err}");
    let lamp = json!({"items": [{"productId": "lamp", "quantity": 1}]});
    let (status, mine) = bob_posts("/v1/orders".into(), lamp).await;
    assert_eq!(status, 200, "{mine}");
    assert_eq!(mine["order"]["total"]["units"], "49");
    let mine = mine["order"]["orderId"].as_str().unwrap().to_owned();
    let shipment = json!({"carrier": "Me", "trackingNumber": "1"});
    let (status, err) = bob_posts(format!("/v1/orders/{mine}:ship"), shipment).await;
    assert_eq!((status, err["code"].as_i64()), (403, Some(7)), "{err}");
    let (status, err) = c
        .call(
            "POST",
            "/v1/users:verifyEmail",
            None,
            Some(json!({"token": "forged"})),
        )
        .await;
    assert_eq!((status, err["code"].as_i64()), (400, Some(3)), "{err}");

    // Another user's data is not found; no token is 401.
    let (status, body) = c
        .call("GET", &format!("/v1/orders/{ada_order}"), Some(&bob), None)
        .await;
    assert_eq!((status, body["code"].as_i64()), (404, Some(5)), "{body}");
    let (status, _) = c
        .call(
            "GET",
            &format!("/v1/users/{ada_id}/orders"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = c
        .call("GET", &format!("/v1/orders/{ada_order}"), None, None)
        .await;
    assert_eq!(status, 401);

    // Bad input reaches the service's validation and comes back as BadRequest.
    let order = |items: Value| json!({"userId": bob_id, "items": items});
    for (what, body, field) in [
        ("no items", order(json!([])), "items"),
        (
            "zero quantity",
            order(
                json!([{"productId": "p", "name": "P", "quantity": 0, "unitPrice": {"currencyCode": "USD", "units": "1"}}]),
            ),
            "items[0].quantity",
        ),
        (
            "unknown currency",
            order(
                json!([{"productId": "p", "name": "P", "quantity": 1, "unitPrice": {"currencyCode": "XXY", "units": "1"}}]),
            ),
            "items[0].unit_price",
        ),
        (
            "a price of the client's choosing",
            order(
                json!([{"productId": "mug", "quantity": 1, "unitPrice": {"currencyCode": "USD", "units": "0"}}]),
            ),
            "items[0].unit_price",
        ),
        (
            "a product not in the catalogue",
            order(json!([{"productId": "yacht", "quantity": 1}])),
            "items[0].product_id",
        ),
    ] {
        let (status, err) = c.call("POST", "/v1/orders", Some(&bob), Some(body)).await;
        assert_eq!(
            (status, err["code"].as_i64()),
            (400, Some(3)),
            "{what}: {err}"
        );
        let fields: Vec<&str> = err["details"][0]["fieldViolations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["field"].as_str().unwrap())
            .collect();
        assert!(fields.contains(&field), "{what}: {err}");
    }
    let (status, err) = c
        .call(
            "POST",
            "/v1/orders",
            Some(&bob),
            Some(json!({"items": "lots"})),
        )
        .await;
    assert_eq!(status, 400, "wrong type: {err}");
    let (status, err) = c.call("POST", "/v1/users", None, Some(json!({"email": "rest@example.com", "name": "Again", "password": "correct horse battery 9", "source": "SIGNUP_SOURCE_WEB"}))).await;
    assert_eq!(
        (status, err["code"].as_i64()),
        (409, Some(6)),
        "duplicate sign-up: {err}"
    );
    let huge = json!({"userId": bob_id, "items": [{"productId": "p", "name": "x".repeat(2 << 20), "quantity": 1}]});
    let (status, _) = c.call("POST", "/v1/orders", Some(&bob), Some(huge)).await;
    assert_eq!(status, 413);
    let (status, _) = c.call("GET", "/v1/orders/x/y/z", Some(&bob), None).await;
    assert_eq!(status, 404);
    let (status, doc) = c.call("GET", "/openapi.json", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");

    // Login is limited more strictly per client (default: a burst of 10).
    let mut limited = None;
    for i in 0..20 {
        let (status, body) = c
            .call("POST", "/v1/users:login", None, Some(json!({"email": format!("nobody{i}@example.com"), "password": "wrong password 1"})))
            .await;
        if status == 429 {
            limited = Some(body);
            break;
        }
        assert_eq!(status, 401, "{body}");
    }
    let limited = limited.expect("429 within 20 logins");
    assert!(
        limited["message"]
            .as_str()
            .unwrap()
            .contains("too many requests"),
        "{limited}"
    );
    up.stop();
}

/// The next `data:` event of an SSE response, parsed.
/// The hour windows hold the story's three orders, open to anyone; bad ranges are
/// 400s that name the field.
async fn windows_over_rest(c: &Client) {
    let count = |w: &Value, name: &str| w[name].as_str().map_or(0, |n| n.parse::<i64>().unwrap());
    let (status, body) = c
        .call(
            "GET",
            "/v1/analytics/windows?width=WINDOW_WIDTH_HOUR",
            None,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let hours = body["windows"].as_array().unwrap();
    assert_eq!(hours.len(), 60, "{body}");
    let orders: i64 = hours.iter().map(|w| count(w, "ordersCreated")).sum();
    assert_eq!(orders, 3, "{body}");
    assert_eq!(body["allowedLateness"], "300s", "{body}");
    let (status, body) = c
        .call(
            "GET",
            "/v1/analytics/windows?startTime=2026-01-01T00:00:00Z&endTime=2026-01-01T00:10:00Z",
            None,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["windows"].as_array().unwrap().len(), 10, "{body}");
    for (query, field) in [
        (
            "startTime=2026-01-02T00:00:00Z&endTime=2026-01-01T00:00:00Z",
            "start_time",
        ),
        (
            "startTime=2026-01-01T00:00:00Z&endTime=2026-01-03T00:00:00Z",
            "end_time",
        ),
        ("width=WINDOW_WIDTH_WEEK", "width"),
        ("startTime=yesterday", "startTime"),
        ("from=2026-01-01T00:00:00Z", "from"),
    ] {
        let (status, err) = c
            .call("GET", &format!("/v1/analytics/windows?{query}"), None, None)
            .await;
        assert_eq!(
            (status, err["code"].as_i64()),
            (400, Some(3)),
            "{query}: {err}"
        );
        assert!(err.to_string().contains(field), "{query}: {err}");
    }
}

async fn next_event(stream: &mut reqwest::Response, buf: &mut String) -> Value {
    loop {
        if let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                return serde_json::from_str(data).unwrap();
            }
            continue;
        }
        let chunk = tokio::time::timeout(WAIT, stream.chunk())
            .await
            .unwrap()
            .unwrap()
            .expect("stream open");
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

/// A NUL byte or another control character anywhere a client can put one — a path
/// id, a free-text field, a metadata key or value — is a 400 with a field violation
/// on PostgreSQL (which refuses such text outright), never a 500; and the mesh goes
/// on consuming: the next order is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_are_400s_on_postgresql() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = weft_testkit::postgres_database().await;
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let up = {
        let (dir, ports) = (dir.path().to_owned(), ports.clone());
        tokio::task::spawn_blocking(move || Up::start_with(&dir, &ports, Some(&server)))
            .await
            .unwrap()
    };
    let c = Client {
        http: reqwest::Client::new(),
        base: format!("http://127.0.0.1:{}", ports.gateway),
    };
    let (_, token) = support::rest::signup_and_login(&c.http, &c.base, "nul@example.com").await;
    let order = support::rest::seed_order(&c.http, &c.base, &token).await;
    let order_id = order["orderId"].as_str().unwrap().to_owned();

    let field = |body: &Value| -> String {
        body["details"][0]["fieldViolations"][0]["field"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    for (method, path, body, wanted) in [
        ("GET", "/v1/orders/%00".to_owned(), None, "order_id"),
        ("GET", "/v1/orders/a%07b".to_owned(), None, "order_id"),
        ("GET", "/v1/users/%00".to_owned(), None, "user_id"),
        ("GET", "/v1/users/%00/orders".to_owned(), None, "user_id"),
        ("GET", "/v1/products/%00".to_owned(), None, "product_id"),
        (
            "GET",
            "/v1/notifications/%00".to_owned(),
            None,
            "notification_id",
        ),
        (
            "POST",
            format!("/v1/orders/{order_id}:cancel"),
            Some(json!({"reason": "changed my mind\u{0000}"})),
            "reason",
        ),
        (
            "POST",
            "/v1/users".to_owned(),
            Some(
                json!({"email": "n2@example.com", "name": "Ada\u{0000}", "password": support::rest::PASSWORD, "source": "SIGNUP_SOURCE_API"}),
            ),
            "name",
        ),
        (
            "POST",
            "/v1/users".to_owned(),
            Some(
                json!({"email": "n3@example.com", "name": "Ada", "password": support::rest::PASSWORD, "source": "SIGNUP_SOURCE_API", "metadata": {"k\u{0000}": "v"}}),
            ),
            "metadata",
        ),
        (
            "POST",
            "/v1/users".to_owned(),
            Some(
                json!({"email": "n4@example.com", "name": "Ada", "password": support::rest::PASSWORD, "source": "SIGNUP_SOURCE_API", "metadata": {"k": "v\u{0001}"}}),
            ),
            "metadata",
        ),
    ] {
        let (status, body) = c.call(method, &path, Some(&token), body).await;
        assert_eq!(status, 400, "{method} {path}: {body}");
        assert!(field(&body).starts_with(wanted), "{method} {path}: {body}");
    }
    // Nothing of it reached a consumer: the next order is counted as usual.
    support::rest::seed_order(&c.http, &c.base, &token).await;
    eventually("three orders counted", WAIT, || async {
        let (_, m) = c.call("GET", "/v1/analytics/metrics", None, None).await;
        (m["metrics"]["ordersCreated"] == "3").then_some(())
    })
    .await;
    up.stop();
}
