//! The HttpRule conformance table: each case is an HTTP request through the gateway to
//! a real gRPC server (the echo service of `tests/proto`), with the HTTP status and
//! the JSON it must answer. The echo answers with the request it received, so a case
//! shows what the gateway bound from the path, the query and the body.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::Harness;

struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    body: Option<&'static str>,
    status: u16,
    /// A subset of the response JSON (objects: these keys; arrays: these items).
    want: Value,
}

const fn case(
    name: &'static str,
    method: &'static str,
    path: &'static str,
    body: Option<&'static str>,
    status: u16,
) -> (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    u16,
) {
    (name, method, path, body, status)
}

/// Whether `actual` contains `want`: every key of an object, every item of an array
/// (same length), equal scalars.
fn contains(actual: &Value, want: &Value) -> bool {
    match (actual, want) {
        (Value::Object(a), Value::Object(w)) => w
            .iter()
            .all(|(k, wv)| a.get(k).is_some_and(|av| contains(av, wv))),
        (Value::Array(a), Value::Array(w)) => {
            a.len() == w.len() && a.iter().zip(w).all(|(av, wv)| contains(av, wv))
        }
        (a, w) => a == w,
    }
}

fn cases() -> Vec<Case> {
    let table = vec![
        // Templates.
        (
            case("single variable", "GET", "/v1/things/42", None, 200),
            json!({"id": "42"}),
        ),
        (
            case(
                "additional binding",
                "GET",
                "/v1/shelves/s1/things/42",
                None,
                200,
            ),
            json!({"shelf": "s1", "id": "42"}),
        ),
        (
            case(
                "pattern variable",
                "GET",
                "/v1/shelves/1/books/2",
                None,
                200,
            ),
            json!({"name": "shelves/1/books/2"}),
        ),
        (
            case(
                "pattern keeps %2F encoded",
                "GET",
                "/v1/shelves/1/books/a%2Fb",
                None,
                200,
            ),
            json!({"name": "shelves/1/books/a%2Fb"}),
        ),
        (
            case(
                "pattern mismatch is 404",
                "GET",
                "/v1/racks/1/books/2",
                None,
                404,
            ),
            json!({"code": 5}),
        ),
        (
            case(
                "single segment decodes %2F",
                "GET",
                "/v1/things/a%2Fb",
                None,
                200,
            ),
            json!({"id": "a/b"}),
        ),
        (
            case(
                "percent-decoded UTF-8",
                "GET",
                "/v1/things/caf%C3%A9",
                None,
                200,
            ),
            json!({"id": "café"}),
        ),
        (
            case("** takes the rest", "GET", "/v1/files/a/b/c.txt", None, 200),
            json!({"path": "a/b/c.txt"}),
        ),
        (
            case(
                "custom verb",
                "POST",
                "/v1/things/7:archive",
                Some("{}"),
                200,
            ),
            json!({"id": "7"}),
        ),
        (
            case(
                "verb only on its method",
                "GET",
                "/v1/things/7:archive",
                None,
                200,
            ),
            json!({"id": "7:archive"}),
        ),
        (
            case(
                "response_body",
                "GET",
                "/v1/things/42/tags?tags=a&tags=b",
                None,
                200,
            ),
            json!(["a", "b"]),
        ),
        // Query parameters.
        (
            case(
                "query: scalars, nested, enums, well-known types",
                "GET",
                "/v1/things/42?big=9007199254740993&count=5&flag=true&color=COLOR_BLUE&inner.note=hi&inner.level=2&when=2026-01-02T03:04:05Z&maybe=7&ratio=0.5&display_name=Ada%20L&numbers=1&numbers=-2&blob=aGk%3D",
                None,
                200,
            ),
            json!({"id": "42", "big": "9007199254740993", "count": 5, "flag": true, "color": "COLOR_BLUE",
                   "inner": {"note": "hi", "level": 2}, "when": "2026-01-02T03:04:05Z", "maybe": 7,
                   "ratio": 0.5, "displayName": "Ada L", "numbers": ["1", "-2"], "blob": "aGk="}),
        ),
        (
            case(
                "query: enum by number, json name",
                "GET",
                "/v1/things/1?color=2&displayName=x",
                None,
                200,
            ),
            json!({"color": "COLOR_BLUE", "displayName": "x"}),
        ),
        (
            case(
                "query: unknown parameter",
                "GET",
                "/v1/things/1?nope=1",
                None,
                400,
            ),
            json!({"code": 3, "details": [{"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [{"field": "nope"}]}]}),
        ),
        (
            case(
                "query: wrong type",
                "GET",
                "/v1/things/1?count=abc",
                None,
                400,
            ),
            json!({"code": 3, "details": [{"fieldViolations": [{"field": "count"}]}]}),
        ),
        (
            case(
                "query: out of range",
                "GET",
                "/v1/things/1?count=3000000000",
                None,
                400,
            ),
            json!({"code": 3}),
        ),
        (
            case(
                "query: bad enum",
                "GET",
                "/v1/things/1?color=PURPLE",
                None,
                400,
            ),
            json!({"code": 3}),
        ),
        (
            case(
                "query: bad timestamp",
                "GET",
                "/v1/things/1?when=yesterday",
                None,
                400,
            ),
            json!({"code": 3}),
        ),
        (
            case(
                "query: path-bound field",
                "GET",
                "/v1/things/1?id=2",
                None,
                400,
            ),
            json!({"code": 3, "details": [{"fieldViolations": [{"field": "id"}]}]}),
        ),
        (
            case(
                "query: map field",
                "GET",
                "/v1/things/1?labels=x",
                None,
                400,
            ),
            json!({"code": 3}),
        ),
        (
            case(
                "query: message field",
                "GET",
                "/v1/things/1?inner=x",
                None,
                400,
            ),
            json!({"code": 3}),
        ),
        (
            case(
                "query: singular field twice",
                "GET",
                "/v1/things/1?count=1&count=2",
                None,
                400,
            ),
            json!({"code": 3}),
        ),
        (
            case(
                "query: body * takes none",
                "POST",
                "/v1/things?id=1",
                Some("{}"),
                400,
            ),
            json!({"code": 3}),
        ),
        // Bodies.
        (
            case(
                "body *: proto3 JSON",
                "POST",
                "/v1/things",
                Some(
                    r#"{"id":"1","big":"12","count":3,"color":"COLOR_RED","tags":["x"],"labels":{"k":"v"},"inner":{"level":1}}"#,
                ),
                200,
            ),
            json!({"id": "1", "big": "12", "count": 3, "color": "COLOR_RED", "tags": ["x"], "labels": {"k": "v"}, "inner": {"note": "", "level": 1}}),
        ),
        (
            case(
                "body: original field names, int64 as number",
                "POST",
                "/v1/things",
                Some(r#"{"display_name":"a","big":12,"color":1}"#),
                200,
            ),
            json!({"displayName": "a", "big": "12", "color": "COLOR_RED"}),
        ),
        (
            case("body: zero values emitted", "POST", "/v1/things", None, 200),
            json!({"id": "", "big": "0", "count": 0, "flag": false, "color": "COLOR_UNSPECIFIED", "tags": [], "labels": {}, "ratio": 0.0}),
        ),
        (
            case(
                "body: unknown field",
                "POST",
                "/v1/things",
                Some(r#"{"nope":1}"#),
                400,
            ),
            json!({"code": 3}),
        ),
        (
            case(
                "body: malformed JSON",
                "POST",
                "/v1/things",
                Some(r#"{"id": "1",}"#),
                400,
            ),
            json!({"code": 3}),
        ),
        (
            case(
                "body: wrong type",
                "POST",
                "/v1/things",
                Some(r#"{"count":"many"}"#),
                400,
            ),
            json!({"code": 3}),
        ),
        (
            case(
                "body: not an object",
                "POST",
                "/v1/things",
                Some("[1,2]"),
                400,
            ),
            json!({"code": 3}),
        ),
        (
            case(
                "body: trailing garbage",
                "POST",
                "/v1/things",
                Some("{} {}"),
                400,
            ),
            json!({"code": 3}),
        ),
        (
            case(
                "body field + nested path + query",
                "PATCH",
                "/v1/things/9?update_mask=name,count",
                Some(r#"{"name":"n","count":2}"#),
                200,
            ),
            json!({"id": "9", "name": "n", "count": 2, "tags": ["name", "count"]}),
        ),
        (
            case(
                "body field: query may not set it",
                "PATCH",
                "/v1/things/9?thing.name=x",
                Some("{}"),
                400,
            ),
            json!({"code": 3}),
        ),
        (
            case(
                "path and body agree",
                "POST",
                "/v1/things/7:archive",
                Some(r#"{"id":"7"}"#),
                200,
            ),
            json!({"id": "7"}),
        ),
        (
            case(
                "path and body conflict",
                "POST",
                "/v1/things/7:archive",
                Some(r#"{"id":"8"}"#),
                400,
            ),
            json!({"code": 3, "details": [{"fieldViolations": [{"field": "id"}]}]}),
        ),
        (
            case(
                "nested path and body conflict",
                "PATCH",
                "/v1/things/9",
                Some(r#"{"id":"8"}"#),
                400,
            ),
            json!({"code": 3}),
        ),
        (
            case(
                "no-body route refuses a body",
                "GET",
                "/v1/things/1",
                Some(r#"{"id":"1"}"#),
                400,
            ),
            json!({"code": 3}),
        ),
        // Routing errors.
        (
            case("unknown path", "GET", "/v1/nothing/here", None, 404),
            json!({"code": 5}),
        ),
        (
            case("wrong method", "DELETE", "/v1/things/1", None, 405),
            json!({"code": 12}),
        ),
        (
            case("bad escape", "GET", "/v1/things/%ZZ", None, 400),
            json!({"code": 3}),
        ),
        (
            case(
                "escape that is not UTF-8",
                "GET",
                "/v1/things/%FF",
                None,
                400,
            ),
            json!({"code": 3}),
        ),
        (
            case("empty segment", "GET", "/v1/things/", None, 404),
            json!({"code": 5}),
        ),
    ];
    table
        .into_iter()
        .map(|((name, method, path, body, status), want)| Case {
            name,
            method,
            path,
            body,
            status,
            want,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_rule_conformance_table() {
    let h = Harness::start(&[]).await;
    let token = h.token();
    let mut failures = Vec::new();
    for c in cases() {
        let mut req = h
            .http
            .request(c.method.parse().unwrap(), h.url(c.path))
            .bearer_auth(&token);
        if let Some(body) = c.body {
            req = req.header("content-type", "application/json").body(body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = resp.text().await.unwrap();
        let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let ok = status == c.status
            && content_type.as_deref() == Some("application/json")
            && contains(&json, &c.want)
            && (status == 200 || json["message"].as_str().is_some_and(|m| !m.is_empty()));
        if !ok {
            failures.push(format!(
                "{}: {} {} → {status} {text} (wanted {} ⊇ {})",
                c.name, c.method, c.path, c.status, c.want
            ));
        }
    }
    // Malformed JSON names where it broke.
    let resp = h
        .http
        .post(h.url("/v1/things"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{\n  \"id\": \"1\",\n  \"count\": @\n}")
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("at line 3 column 12"), "{message}");
    let unknown: Value = h
        .http
        .post(h.url("/v1/things"))
        .bearer_auth(&token)
        .json(&json!({"id": "1", "colour": "red"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        unknown["message"].as_str().unwrap().contains("colour"),
        "{unknown}"
    );
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_errors_keep_code_message_and_details() {
    let h = Harness::start(&[]).await;
    let token = h.token();
    // gRPC code → HTTP status, grpc-gateway's table.
    for (code, http) in [
        (3, 400),
        (4, 504),
        (5, 404),
        (6, 409),
        (7, 403),
        (8, 429),
        (9, 400),
        (10, 409),
        (11, 400),
        (12, 501),
        (13, 500),
        (14, 503),
        (15, 500),
        (16, 401),
        (2, 500),
        (1, 499),
    ] {
        let resp = h
            .http
            .post(h.url("/v1/fail"))
            .bearer_auth(&token)
            .json(&json!({"count": code, "name": format!("failed with {code}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), http, "code {code}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["code"], code, "{body}");
        let message = if code == 3 {
            format!("invalid name: failed with {code}")
        } else {
            format!("failed with {code}")
        };
        assert_eq!(body["message"], message, "{body}");
        assert!(body["details"].is_array(), "{body}");
        if code == 3 {
            assert_eq!(
                body["details"][0]["@type"],
                "type.googleapis.com/google.rpc.BadRequest"
            );
            assert_eq!(body["details"][0]["fieldViolations"][0]["field"], "name");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_streams_as_sse_and_ndjson_with_a_final_error() {
    let h = Harness::start(&[]).await;
    let token = h.token();
    let get = |path: &str, accept: Option<&str>| {
        let mut r = h.http.get(h.url(path)).bearer_auth(&token);
        if let Some(a) = accept {
            r = r.header("accept", a);
        }
        r.send()
    };

    let sse = get("/v1/things/5:watch?count=3", Some("text/event-stream"))
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    assert_eq!(sse.headers()["content-type"], "text/event-stream");
    let text = sse.text().await.unwrap();
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.len(), 3, "{text}");
    for (i, e) in events.iter().enumerate() {
        let data: Value = serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(
            (data["id"].as_str(), data["count"].as_i64()),
            (Some("5"), Some(i as i64))
        );
    }

    let broken = get(
        "/v1/things/5:watch?count=2&flag=true",
        Some("text/event-stream"),
    )
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    let last = broken
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .last()
        .unwrap();
    let error = last.strip_prefix("event: error\ndata: ").expect(&broken);
    let status: Value = serde_json::from_str(error).unwrap();
    assert_eq!(
        (status["code"].as_i64(), status["message"].as_str()),
        (Some(10), Some("the watch broke"))
    );
    assert_eq!(
        broken.matches("data: ").count(),
        3,
        "two messages and the error"
    );

    let ndjson = get("/v1/things/5:watch?count=2&flag=true", None)
        .await
        .unwrap();
    assert_eq!(ndjson.headers()["content-type"], "application/x-ndjson");
    let lines: Vec<Value> = ndjson
        .text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["result"]["count"], 0);
    assert_eq!(lines[1]["result"]["count"], 1);
    assert_eq!(lines[2]["error"]["code"], 10);

    let empty = get("/v1/things/5:watch", Some("text/event-stream"))
        .await
        .unwrap();
    assert_eq!(empty.status(), 200);
    assert_eq!(empty.text().await.unwrap(), "", "no messages, no events");
}
