//! The gateway's edge policies through its HTTP interface, in front of a real gRPC
//! server: tokens, the header allow-list, request ids, deadlines, body limits, rate
//! limits, the circuit breaker, load shedding, CORS, compression and its own pages.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Harness, json_of};
use tokio::net::TcpListener;
use weft_auth::{Issuer, SigningKeys, TokenConfig};

/// `GET /v1/things/1` with `token`.
async fn get_thing(h: &Harness, token: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    json_of(h.get("/v1/things/1", token).await).await
}

/// A well-formed token for user-1, signed by a key no user service published.
fn foreign_token() -> String {
    let keys = std::sync::Arc::new(SigningKeys::ephemeral().unwrap());
    let issuer = Issuer::new(keys, TokenConfig::default());
    issuer.issue("user-1", &[]).unwrap().0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_checked_at_the_edge() {
    let h = Harness::start(&[]).await;
    let url = h.url("/v1/things/1");
    let foreign = foreign_token();
    let real = h.token();
    // {"alg":"none","typ":"JWT"} with real claims and no signature.
    let unsigned = format!(
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
        real.split('.').nth(1).unwrap()
    );
    for (what, header) in [
        ("no token", None),
        ("garbage", Some("Bearer not-a-jwt".to_owned())),
        ("another key", Some(format!("Bearer {foreign}"))),
        ("alg none", Some(format!("Bearer {unsigned}"))),
        ("basic auth", Some("Basic dXNlcjpwYXNz".to_owned())),
    ] {
        let mut req = h.http.get(&url);
        if let Some(v) = header {
            req = req.header("authorization", v);
        }
        let (status, headers, body) = json_of(req.send().await.unwrap()).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["code"], 16, "{what}");
        assert!(
            headers["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
    }
    let ok = h.get("/v1/things/1", &h.token()).await;
    assert_eq!(ok.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_headers_cross_and_request_ids_are_kept_or_replaced() {
    let h = Harness::start(&[]).await;
    let token = h.token();
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let resp = h
        .http
        .get(h.url("/v1/things/1"))
        .bearer_auth(&token)
        .header("x-request-id", "req-42.a:b_c")
        .header("traceparent", format!("00-{trace}-b7ad6b7169203331-01"))
        .header("tracestate", "vendor=1")
        .header("baggage", "tenant=acme")
        .header("x-evil", "1")
        .header("cookie", "session=stolen")
        .header("x-user-id", "admin")
        .header("x-forwarded-for", "6.6.6.6")
        .header("grpc-status", "0")
        .header("x-envoy-external-address", "6.6.6.6")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "req-42.a:b_c");
    let (status, _, body) = json_of(resp).await;
    assert_eq!(status, 200, "{body}");
    let seen = body["metadataSeen"].as_object().unwrap();
    let allowed: BTreeSet<&str> = [
        "authorization",
        "traceparent",
        "tracestate",
        "baggage",
        "x-request-id",
        "grpc-timeout",
        // Set by the gRPC client itself.
        "te",
        "content-type",
        "user-agent",
        "grpc-accept-encoding",
    ]
    .into();
    let keys: BTreeSet<&str> = seen.keys().map(String::as_str).collect();
    assert!(
        keys.is_subset(&allowed),
        "crossed: {:?}",
        keys.difference(&allowed).collect::<Vec<_>>()
    );
    assert_eq!(seen["authorization"], format!("Bearer {token}"));
    assert_eq!(seen["x-request-id"], "req-42.a:b_c");
    assert_eq!(seen["baggage"], "tenant=acme");
    let parent = seen["traceparent"].as_str().unwrap();
    assert!(parent.contains(trace), "same trace: {parent}");
    assert!(
        !parent.contains("b7ad6b7169203331"),
        "the gateway's own span is the parent: {parent}"
    );

    for hostile in ["<script>alert(1)</script>", "a b", &"x".repeat(200)] {
        let resp = h
            .http
            .get(h.url("/v1/things/1"))
            .bearer_auth(&token)
            .header("x-request-id", hostile)
            .send()
            .await
            .unwrap();
        let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_ne!(id, hostile);
        let (_, _, body) = json_of(resp).await;
        assert_eq!(
            body["metadataSeen"]["x-request-id"], id,
            "the same fresh id goes upstream"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_bodies_and_media_types() {
    let h = Harness::start(&["--max-body-bytes=1024", "--request-timeout=1500ms"]).await;
    let token = h.token();
    let slow = |timeout: Option<&str>, ms: u32| {
        let mut r = h
            .http
            .get(h.url(&format!("/v1/slow/1?count={ms}")))
            .bearer_auth(&token);
        if let Some(t) = timeout {
            r = r.header("grpc-timeout", t);
        }
        r.send()
    };
    let (status, _, body) = json_of(slow(Some("200m"), 3000).await.unwrap()).await;
    assert_eq!((status, body["code"].as_i64()), (504, Some(4)), "{body}");
    let (status, _, body) = json_of(slow(None, 3000).await.unwrap()).await;
    assert_eq!(
        (status, body["code"].as_i64()),
        (504, Some(4)),
        "the gateway's cap: {body}"
    );
    let (status, _, body) = json_of(slow(Some("5S"), 10).await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    let deadline = body["metadataSeen"]["grpc-timeout"].as_str().unwrap();
    assert!(
        deadline.ends_with('m') || deadline.ends_with('u') || deadline.ends_with('n'),
        "capped to 1.5 s: {deadline}"
    );
    let (status, _, _) = json_of(slow(Some("soon"), 10).await.unwrap()).await;
    assert_eq!(status, 400);

    let big = json!({"name": "x".repeat(2000)}).to_string();
    let (status, headers, body) =
        json_of(h.post("/v1/things", &token, "application/json", big).await).await;
    assert_eq!((status, body["code"].as_i64()), (413, Some(8)), "{body}");
    assert_eq!(
        headers["connection"], "close",
        "the unread body is not left on the connection"
    );

    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/jsonx",
    ] {
        let (status, _, body) =
            json_of(h.post("/v1/things", &token, content_type, "{}").await).await;
        assert_eq!(status, 415, "{content_type}: {body}");
    }
    let charset = h.post(
        "/v1/things",
        &token,
        "application/json; charset=utf-8",
        "{}",
    );
    assert_eq!(charset.await.status(), 200);
    let not_utf8 = h.post(
        "/v1/things",
        &token,
        "application/json",
        vec![0xff, 0xfe, b'{'],
    );
    assert_eq!(
        not_utf8.await.status(),
        400,
        "bytes that are not UTF-8 JSON"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_over_their_rate_get_429_with_retry_after() {
    let h = Harness::start(&["--rate-limit=3/min", "--rate-burst=3"]).await;
    let token = h.token();
    for _ in 0..3 {
        assert_eq!(h.get("/v1/things/1", &token).await.status(), 200);
    }
    let (status, headers, body) = get_thing(&h, &token).await;
    assert_eq!((status, body["code"].as_i64()), (429, Some(8)), "{body}");
    let after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&after), "{after}");
    let types: Vec<&str> = body["details"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["@type"].as_str())
        .collect();
    assert!(
        types.contains(&"type.googleapis.com/google.rpc.RetryInfo"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_to_unknown_paths_count_against_the_rate_too() {
    let h = Harness::start(&["--rate-limit=3/min", "--rate-burst=3"]).await;
    for _ in 0..3 {
        let r = h
            .http
            .get(h.url("/wp-admin/setup.php"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
    let (status, headers, _) = get_thing(&h, &h.token()).await;
    assert_eq!(status, 429);
    assert!(headers.contains_key("retry-after"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_pages_count_against_the_rate_and_health_checks_do_not() {
    let h = Harness::start(&["--rate-limit=3/min", "--rate-burst=3"]).await;
    for path in ["/openapi.json", "/", "/dashboard"] {
        let r = h.http.get(h.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let (status, headers, body) =
        json_of(h.http.get(h.url("/openapi.json")).send().await.unwrap()).await;
    assert_eq!((status, body["code"].as_i64()), (429, Some(8)), "{body}");
    assert!(headers.contains_key("retry-after") && headers.contains_key("x-request-id"));
    for _ in 0..5 {
        let r = h.http.get(h.url("/healthz")).send().await.unwrap();
        assert_eq!(r.status(), 200, "health checks are never limited");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_service_opens_its_circuit_and_it_recovers_by_itself() {
    // Nothing listens on the echo address at first.
    let keys = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_port = weft_testkit::ReservedPort::new();
    let echo_addr = std::net::SocketAddr::from(([127, 0, 0, 1], echo_port.port()));
    let h = Harness::start_with(
        keys,
        echo_addr,
        &["--breaker-failures=2", "--breaker-open-for=5s"],
    )
    .await;
    let token = h.token();
    let get = || h.http.get(h.url("/v1/things/1")).bearer_auth(&token).send();
    for _ in 0..2 {
        let (status, _, body) = json_of(get().await.unwrap()).await;
        assert_eq!((status, body["code"].as_i64()), (503, Some(14)), "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("cannot be reached"), "{message}");
        assert!(
            !message.contains("127.0.0.1") && !message.contains("os error"),
            "no transport details: {message}"
        );
    }
    let (status, headers, body) = json_of(get().await.unwrap()).await;
    assert_eq!(status, 503);
    assert!(
        body["message"].as_str().unwrap().contains("retry in"),
        "fails fast while open: {body}"
    );
    assert!(headers.contains_key("retry-after"));

    // The service comes back: after the open period a trial call closes the circuit.
    echo_port.release();
    let listener = TcpListener::bind(echo_addr).await.unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    support::serve_echo(
        listener,
        std::sync::Arc::new(SigningKeys::ephemeral().unwrap()),
        stop.clone(),
    );
    weft_testkit::eventually("the circuit to close", Duration::from_secs(30), || async {
        (get().await.ok()?.status() == 200).then_some(())
    })
    .await;
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_concurrency_limit_requests_are_shed() {
    let h = Harness::start(&["--max-concurrent-requests=1"]).await;
    let token = h.token();
    let slow = h
        .http
        .get(h.url("/v1/slow/1?count=3000"))
        .bearer_auth(&token)
        .send();
    let slow = tokio::spawn(slow);
    // The slow call holds the only slot once it has reached the echo server.
    weft_testkit::eventually(
        "the slow call upstream",
        Duration::from_secs(10),
        || async {
            (h.slow_in_flight.load(std::sync::atomic::Ordering::SeqCst) == 1).then_some(())
        },
    )
    .await;
    let (status, headers, body) = get_thing(&h, &token).await;
    assert_eq!((status, body["code"].as_i64()), (503, Some(14)), "{body}");
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(
        slow.await.unwrap().unwrap().status(),
        200,
        "the request in flight completes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_holds_at_most_its_share_of_open_streams() {
    let h = Harness::start(&[
        "--max-streams-per-client=2",
        "--client-ip-header=x-client-ip",
    ])
    .await;
    let token = h.token();
    let open = |client: &'static str| {
        h.http
            .get(h.url("/v1/things/5:watch?count=-1"))
            .header("accept", "text/event-stream")
            .header("x-client-ip", client)
            .bearer_auth(&token)
            .send()
    };
    let first = open("10.0.0.1").await.unwrap();
    let second = open("10.0.0.1").await.unwrap();
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    let third = open("10.0.0.1").await.unwrap();
    assert_eq!(third.status(), 429);
    let (_, _, body) = json_of(third).await;
    assert_eq!(body["code"].as_i64(), Some(8), "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("streams open"),
        "{body}"
    );
    // Another client is not affected; a closed stream frees its slot.
    let other = open("10.0.0.2").await.unwrap();
    assert_eq!(other.status(), 200);
    drop(first);
    weft_testkit::eventually("a freed stream slot", Duration::from_secs(10), || async {
        let again = open("10.0.0.1").await.ok()?;
        (again.status() == 200).then_some(again)
    })
    .await;
    drop((second, other));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_compression_and_the_gateways_own_pages() {
    let h = Harness::start(&[]).await;
    let preflight = |origin: &'static str| {
        h.http
            .request(reqwest::Method::OPTIONS, h.url("/v1/things/1"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let ok = preflight("http://localhost:8080").await.unwrap();
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "http://localhost:8080"
    );
    let evil = preflight("http://evil.example").await.unwrap();
    assert!(!evil.headers().contains_key("access-control-allow-origin"));

    // A GET of the gateway's own, without a token, with one header.
    let get_with = |path: &str, name: &'static str, value: &'static str| {
        h.http.get(h.url(path)).header(name, value).send()
    };
    let doc = get_with("/openapi.json", "accept-encoding", "gzip")
        .await
        .unwrap();
    assert_eq!(doc.status(), 200);
    assert_eq!(doc.headers()["content-encoding"], "gzip");
    assert!(
        !doc.headers()["x-request-id"].is_empty(),
        "own pages carry a request id"
    );

    let page = h.http.get(h.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("EventSource"));
    let (status, headers, body) = json_of(h.http.post(h.url("/")).send().await.unwrap()).await;
    assert_eq!((status, body["code"].as_i64()), (405, Some(12)));
    assert_eq!(headers["allow"], "GET");
    assert!(headers.contains_key("x-request-id"));
    let health = get_with("/healthz", "x-request-id", "probe-7")
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.headers()["x-request-id"], "probe-7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_counted_by_route_template_and_status() {
    let h = Harness::start(&[]).await;
    let token = h.token();
    for path in [
        "/v1/things/1",
        "/v1/things/2",
        "/v1/nothing",
        "/openapi.json",
    ] {
        h.get(path, &token).await;
    }
    // A made-up method on a page of the gateway's own is refused and adds no label.
    let odd = reqwest::Method::from_bytes(b"X-SPRAY-4711").unwrap();
    let refused = h.http.request(odd, h.url("/openapi.json")).send();
    assert_eq!(refused.await.unwrap().status(), 405);
    let metrics = h.metrics().await;
    let count = |labels: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("gateway_requests_total{{{labels}}}")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<f64>().ok())
    };
    for (labels, want) in [
        (r#"route="GET /v1/things/{id}",status="200""#, 2.0),
        (r#"route="unmatched",status="404""#, 1.0),
        (r#"route="GET /openapi.json",status="200""#, 1.0),
        (r#"route="unmatched",status="405""#, 1.0),
    ] {
        assert_eq!(count(labels), Some(want), "{labels}: {metrics}");
    }
    assert!(!metrics.contains("X-SPRAY"), "{metrics}");
    assert!(
        metrics.contains("gateway_request_duration_seconds"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_token_keys_nothing_verifies_and_the_gateway_is_not_ready() {
    // The user service (the keys' source) is down: nothing listens there.
    let dead = format!("http://127.0.0.1:{}", weft_testkit::free_port());
    let descriptors = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(descriptors.path(), support::descriptor_set()).unwrap();
    let config = <weft_gateway::Config as clap::Parser>::try_parse_from([
        "weft-gateway".to_owned(),
        "--http-addr=127.0.0.1:0".into(),
        "--admin-addr=127.0.0.1:0".into(),
        format!("--descriptor-set={}", descriptors.path().display()),
        format!("--upstream={}=http://127.0.0.1:1", support::ECHO),
        format!("--user-service-url={dead}"),
    ])
    .unwrap();
    let app = weft_gateway::App::build(config).await.unwrap();
    let (base, admin) = (
        format!("http://{}", app.http_addr()),
        format!("http://{}", app.admin_addr()),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(app.run_until_stopped(stop.clone()));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let token = foreign_token();
    let (status, _, body) = json_of(
        http.get(format!("{base}/v1/things/1"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body["code"].as_i64()), (401, Some(16)), "{body}");
    let ready =
        weft_testkit::eventually("an answer from /readyz", Duration::from_secs(5), || async {
            Some(
                http.get(format!("{admin}/readyz"))
                    .send()
                    .await
                    .ok()?
                    .status()
                    .as_u16(),
            )
        })
        .await;
    assert_eq!(ready, 503, "not ready without keys");
    stop.cancel();
}
