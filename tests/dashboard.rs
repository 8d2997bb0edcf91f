//! The live dashboard in a real browser: headless Chromium (Debian) driven by
//! playwright-core (npm) opens the page that `weft up` serves, waits until it is
//! live, then a signup is made over gRPC and must appear on the page — the counter
//! and the recent-events feed — without a reload. The screenshot is kept as
//! `artifacts/dashboard.png`. The dashboard's JSON routes are checked too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{Ports, Up};
use weft_proto::user::user_service_client::UserServiceClient;
use weft_proto::user::{SignUpRequest, SignupSource};
use weft_testkit::{require_tool, tools_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signup_appears_on_the_live_dashboard() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let up = Up::start_async(dir.path(), &ports).await;

    let base = format!("http://127.0.0.1:{}", ports.gateway);
    let page = http_get(&format!("{base}/")).await;
    assert!(
        page.contains("EventSource"),
        "the page subscribes to the stream"
    );
    let metrics = http_get(&format!("{base}/v1/analytics/metrics")).await;
    let json: serde_json::Value = serde_json::from_str(&metrics).unwrap();
    assert!(json["metrics"].is_object(), "{metrics}");

    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("artifacts/dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let mut driver = Command::new(require_tool("node"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/dashboard.cjs"))
        .arg(format!("{base}/"))
        .arg("1")
        .arg(&shot)
        .env("NODE_PATH", tools_dir().join("npm/node_modules"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node");
    let mut lines = BufReader::new(driver.stdout.take().unwrap()).lines();
    let ready = tokio::task::spawn_blocking(move || {
        let first = lines.next();
        (first, lines)
    })
    .await
    .unwrap();
    let (first, mut lines) = ready;
    assert_eq!(first.map(Result::unwrap).as_deref(), Some("READY"));

    let channel =
        tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{}", ports.user))
            .unwrap()
            .connect()
            .await
            .unwrap();
    UserServiceClient::new(channel)
        .sign_up(SignUpRequest {
            email: "grace@example.com".into(),
            name: "Grace Hopper".into(),
            password: "correct horse battery staple".into(),
            source: SignupSource::Web as i32,
            ..Default::default()
        })
        .await
        .unwrap();

    let (rest, status) = tokio::task::spawn_blocking(move || {
        let rest: Vec<String> = lines.by_ref().map(Result::unwrap).collect();
        (rest, driver.wait().unwrap())
    })
    .await
    .unwrap();
    assert!(status.success(), "browser check failed: {rest:?}");
    assert_eq!(rest.first().map(String::as_str), Some("SEEN"), "{rest:?}");
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    tokio::time::sleep(Duration::from_millis(10)).await;
    up.stop();
}

/// GET over plain HTTP/1.1 (no client library needed for two requests).
async fn http_get(url: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    stream
        .write_all(
            format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}
