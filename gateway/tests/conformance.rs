//! The HttpRule conformance table: each case is an HTTP request through the gateway to
//! a real gRPC server (the echo service of `tests/proto`), with the HTTP status and
//! the JSON it must answer. The echo answers with the request it received, so a case
//! shows what the gateway bound from the path, the query and the body.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::{Harness, json_of};

/// A request of the table, the status it must get and what its JSON must contain.
struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    body: Option<&'static str>,
    status: u16,
    /// A subset of the response JSON (objects: these keys; arrays: these items).
    want: Value,
}

/// The cases, one a line: `name | METHOD /path?query | body | status | JSON`, where the
/// body (`-` for none) is sent as JSON and the JSON is what the answer must contain.
const TABLE: &str = r#"
# Templates.
single variable | GET /v1/things/42 | - | 200 | {"id": "42"}
additional binding | GET /v1/shelves/s1/things/42 | - | 200 | {"shelf": "s1", "id": "42"}
pattern variable | GET /v1/shelves/1/books/2 | - | 200 | {"name": "shelves/1/books/2"}
pattern keeps %2F encoded | GET /v1/shelves/1/books/a%2Fb | - | 200 | {"name": "shelves/1/books/a%2Fb"}
pattern mismatch is 404 | GET /v1/racks/1/books/2 | - | 404 | {"code": 5}
single segment decodes %2F | GET /v1/things/a%2Fb | - | 200 | {"id": "a/b"}
percent-decoded UTF-8 | GET /v1/things/caf%C3%A9 | - | 200 | {"id": "café"}
** takes the rest | GET /v1/files/a/b/c.txt | - | 200 | {"path": "a/b/c.txt"}
custom verb | POST /v1/things/7:archive | {} | 200 | {"id": "7"}
verb only on its method | GET /v1/things/7:archive | - | 200 | {"id": "7:archive"}
response_body | GET /v1/things/42/tags?tags=a&tags=b | - | 200 | ["a", "b"]
# Query parameters.
query: scalars, nested, enums, well-known types | GET /v1/things/42?big=9007199254740993&count=5&flag=true&color=COLOR_BLUE&inner.note=hi&inner.level=2&when=2026-01-02T03:04:05Z&maybe=7&ratio=0.5&display_name=Ada%20L&numbers=1&numbers=-2&blob=aGk%3D | - | 200 | {"id": "42", "big": "9007199254740993", "count": 5, "flag": true, "color": "COLOR_BLUE", "inner": {"note": "hi", "level": 2}, "when": "2026-01-02T03:04:05Z", "maybe": 7, "ratio": 0.5, "displayName": "Ada L", "numbers": ["1", "-2"], "blob": "aGk="}
query: enum by number, json name | GET /v1/things/1?color=2&displayName=x | - | 200 | {"color": "COLOR_BLUE", "displayName": "x"}
query: unknown parameter | GET /v1/things/1?nope=1 | - | 400 | {"code": 3, "details": [{"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [{"field": "nope"}]}]}
query: wrong type | GET /v1/things/1?count=abc | - | 400 | {"code": 3, "details": [{"fieldViolations": [{"field": "count"}]}]}
query: out of range | GET /v1/things/1?count=3000000000 | - | 400 | {"code": 3}
query: bad enum | GET /v1/things/1?color=PURPLE | - | 400 | {"code": 3}
query: bad timestamp | GET /v1/things/1?when=yesterday | - | 400 | {"code": 3}
query: path-bound field | GET /v1/things/1?id=2 | - | 400 | {"code": 3, "details": [{"fieldViolations": [{"field": "id"}]}]}
query: map field | GET /v1/things/1?labels=x | - | 400 | {"code": 3}
query: message field | GET /v1/things/1?inner=x | - | 400 | {"code": 3}
query: singular field twice | GET /v1/things/1?count=1&count=2 | - | 400 | {"code": 3}
query: body * takes none | POST /v1/things?id=1 | {} | 400 | {"code": 3}
# Bodies.
body *: proto3 JSON | POST /v1/things | {"id":"1","big":"12","count":3,"color":"COLOR_RED","tags":["x"],"labels":{"k":"v"},"inner":{"level":1}} | 200 | {"id": "1", "big": "12", "count": 3, "color": "COLOR_RED", "tags": ["x"], "labels": {"k": "v"}, "inner": {"note": "", "level": 1}}
body: original field names, int64 as number | POST /v1/things | {"display_name":"a","big":12,"color":1} | 200 | {"displayName": "a", "big": "12", "color": "COLOR_RED"}
body: zero values emitted | POST /v1/things | - | 200 | {"id": "", "big": "0", "count": 0, "flag": false, "color": "COLOR_UNSPECIFIED", "tags": [], "labels": {}, "ratio": 0.0}
body: unknown field | POST /v1/things | {"nope":1} | 400 | {"code": 3}
body: malformed JSON | POST /v1/things | {"id": "1",} | 400 | {"code": 3}
body: wrong type | POST /v1/things | {"count":"many"} | 400 | {"code": 3}
body: not an object | POST /v1/things | [1,2] | 400 | {"code": 3}
body: trailing garbage | POST /v1/things | {} {} | 400 | {"code": 3}
body field + nested path + query | PATCH /v1/things/9?update_mask=name,count | {"name":"n","count":2} | 200 | {"id": "9", "name": "n", "count": 2, "tags": ["name", "count"]}
body field: query may not set it | PATCH /v1/things/9?thing.name=x | {} | 400 | {"code": 3}
path and body agree | POST /v1/things/7:archive | {"id":"7"} | 200 | {"id": "7"}
path and body conflict | POST /v1/things/7:archive | {"id":"8"} | 400 | {"code": 3, "details": [{"fieldViolations": [{"field": "id"}]}]}
nested path and body conflict | PATCH /v1/things/9 | {"id":"8"} | 400 | {"code": 3}
no-body route refuses a body | GET /v1/things/1 | {"id":"1"} | 400 | {"code": 3}
# Routing errors.
unknown path | GET /v1/nothing/here | - | 404 | {"code": 5}
wrong method | DELETE /v1/things/1 | - | 405 | {"code": 12}
bad escape | GET /v1/things/%ZZ | - | 400 | {"code": 3}
escape that is not UTF-8 | GET /v1/things/%FF | - | 400 | {"code": 3}
empty segment | GET /v1/things/ | - | 404 | {"code": 5}
"#;

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
    let rows = TABLE
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    rows.map(|row| {
        let columns: Vec<&str> = row.split(" | ").collect();
        let [name, request, body, status, want] = columns[..] else {
            panic!("a case has five columns: {row}");
        };
        let (method, path) = request.split_once(' ').unwrap();
        Case {
            name,
            method,
            path,
            body: (body != "-").then_some(body),
            status: status.parse().unwrap(),
            want: serde_json::from_str(want).unwrap_or_else(|e| panic!("{name}: {e}")),
        }
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
        let (status, headers, json) = json_of(req.send().await.unwrap()).await;
        let ok = status == c.status
            && headers
                .get("content-type")
                .is_some_and(|t| t == "application/json")
            && contains(&json, &c.want)
            && (status == 200 || json["message"].as_str().is_some_and(|m| !m.is_empty()));
        if !ok {
            failures.push(format!(
                "{}: {} {} → {status} {json} (wanted {} ⊇ {})",
                c.name, c.method, c.path, c.status, c.want
            ));
        }
    }
    // Malformed JSON names where it broke.
    let broken = "{\n  \"id\": \"1\",\n  \"count\": @\n}";
    let resp = h
        .post("/v1/things", &token, "application/json", broken)
        .await;
    let body: Value = resp.json().await.unwrap();
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("at line 3 column 12"), "{message}");
    let colour = json!({"id": "1", "colour": "red"}).to_string();
    let resp = h
        .post("/v1/things", &token, "application/json", colour)
        .await;
    let unknown: Value = resp.json().await.unwrap();
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
        let failing = json!({"count": code, "name": format!("failed with {code}")});
        let resp = h
            .post("/v1/fail", &token, "application/json", failing.to_string())
            .await;
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
