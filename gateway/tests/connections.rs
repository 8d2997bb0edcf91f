//! The gateway's connections through real sockets and real client libraries: early
//! answers (401, 413) to large bodies are read by Python's `http.client` and Node's
//! `http` (the gateway closes gracefully instead of resetting), a slowloris client is
//! cut off after the header timeout, a client over its connection cap is closed at
//! once, and other clients are served throughout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde_json::Value;
use support::Harness;
use tokio::io::AsyncWriteExt as _;
use weft_testkit::{closed_within, connect_from};

/// A 10 MB JSON POST through Python's `http.client`, which sends the whole body
/// before it reads the answer: `(status, body)`.
const PYTHON: &str = r#"
import http.client, json, sys
port, path, token = int(sys.argv[1]), sys.argv[2], sys.argv[3]
c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
body = b'{"name":"' + b"x" * (10 << 20) + b'"}'
headers = {"content-type": "application/json"}
if token:
    headers["authorization"] = "Bearer " + token
c.request("POST", path, body=body, headers=headers)
r = c.getresponse()
print(json.dumps({"status": r.status, "body": json.loads(r.read())}))
"#;

/// The same through Node's `http` module.
const NODE: &str = r#"
const http = require("http");
const [port, path, token] = process.argv.slice(1);
const body = Buffer.concat([Buffer.from('{"name":"'), Buffer.alloc(10 << 20, "x"), Buffer.from('"}')]);
const headers = { "content-type": "application/json", "content-length": body.length };
if (token) headers.authorization = "Bearer " + token;
const req = http.request({ host: "127.0.0.1", port, path, method: "POST", headers }, (res) => {
  let text = "";
  res.setEncoding("utf8");
  res.on("data", (c) => (text += c));
  res.on("end", () => console.log(JSON.stringify({ status: res.statusCode, body: JSON.parse(text) })));
});
req.on("error", (e) => { console.error("request failed: " + e.message); process.exit(1); });
req.end(body);
"#;

async fn big_post(tool: &str, script: &str, h: &Harness, path: &str, token: &str) -> (u16, Value) {
    let port = h.base.rsplit(':').next().unwrap().to_owned();
    let flag = if tool == "node" { "-e" } else { "-c" };
    let out = tokio::process::Command::new(weft_testkit::require_tool(tool))
        .args([flag, script, &port, path, token])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{tool}: {stderr}");
    let answer: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{tool} printed no answer ({e}): {stderr}"));
    (
        answer["status"].as_u64().unwrap() as u16,
        answer["body"].clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_answers_to_large_bodies_reach_python_and_node_clients() {
    let h = Harness::start(&[]).await;
    let token = h.token();
    for tool in ["python3", "node"] {
        let script = if tool == "node" { NODE } else { PYTHON };
        // Over the body limit: answered from the headers, before the body is read.
        let (status, body) = big_post(tool, script, &h, "/v1/things", &token).await;
        assert_eq!(
            (status, body["code"].as_i64()),
            (413, Some(8)),
            "{tool}: {body}"
        );
        assert!(
            body["message"]
                .as_str()
                .unwrap_or_default()
                .contains("body"),
            "{tool}: {body}"
        );
        // No token: refused before the body too.
        let (status, body) = big_post(tool, script, &h, "/v1/things", "").await;
        assert_eq!(
            (status, body["code"].as_i64()),
            (401, Some(16)),
            "{tool}: {body}"
        );
    }
    // The connection after the early answer held no one up: the gateway still serves.
    assert_eq!(h.get("/v1/things/1", &token).await.status(), 200);
}

/// `GET /v1/things/1` with `token` from the loopback address `from`: its status.
async fn get_from(from: Ipv4Addr, h: &Harness, token: &str) -> u16 {
    let client = reqwest::Client::builder().local_address(IpAddr::V4(from));
    let request = client.build().unwrap().get(h.url("/v1/things/1"));
    let answer = request.bearer_auth(token).send().await.unwrap();
    answer.status().as_u16()
}

fn metric(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l.contains("listener=\"http\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_greedy_clients_are_cut_off_while_others_are_served() {
    let h = Harness::start(&["--header-timeout=2s", "--max-connections-per-client=4"]).await;
    let token = h.token();
    let addr: SocketAddr = h.base.trim_start_matches("http://").parse().unwrap();
    let slow_client = Ipv4Addr::new(127, 0, 0, 1);
    // Four connections that send half a request header, and then nothing.
    let mut slow = Vec::new();
    for _ in 0..4 {
        let mut conn = connect_from(slow_client, addr).await;
        conn.write_all(b"GET /v1/things/1 HTTP/1.1\r\nHost: weft\r\nX-Half: ")
            .await
            .unwrap();
        slow.push(conn);
    }
    // A fifth from the same address is over the cap: closed at once.
    let mut greedy = connect_from(slow_client, addr).await;
    closed_within(
        &mut greedy,
        Duration::from_secs(1),
        "the connection over the cap",
    )
    .await;
    // Meanwhile another client is served.
    assert_eq!(
        get_from(Ipv4Addr::new(127, 0, 0, 2), &h, &token).await,
        200,
        "a client from another address"
    );
    // The slow ones are cut off once the header timeout has passed.
    for (i, conn) in slow.iter_mut().enumerate() {
        closed_within(
            conn,
            Duration::from_secs(15),
            &format!("slow connection {i}"),
        )
        .await;
    }
    // Their slots are back: the first address is served again.
    assert_eq!(
        get_from(slow_client, &h, &token).await,
        200,
        "the slow client's address, afterwards"
    );
    let metrics = h.metrics().await;
    assert!(
        metric(&metrics, "connections_refused_total") >= 1.0,
        "{metrics}"
    );
    assert!(
        metric(&metrics, "connections_timed_out_total") >= 4.0,
        "{metrics}"
    );
}
