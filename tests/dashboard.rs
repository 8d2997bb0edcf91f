//! The gateway's pages in a real browser: headless Chromium (Debian) driven by
//! playwright-core (npm).
//! - The live dashboard that `weft up` serves: signed out it shows the totals and no
//!   feed; a staff member signs in, then a signup is made over gRPC and must appear
//!   on the page — the counter and the recent-events feed, naming no address —
//!   without a reload; the charts have axes, the minute chart the welcome orders, and
//!   nothing overflows its box at 1280 or 380 px wide; staff's operations view charts
//!   the minute windows. The screenshots are kept as `artifacts/dashboard.png`,
//!   `artifacts/dashboard-narrow.png` and `artifacts/dashboard-operations.png`.
//! - The verification link of a sign-up's email: opening it verifies nothing, its
//!   button does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{BrokerKind, Mesh, PASSWORD, Ports, grpc};
use weft_proto::user::{GetUserRequest, SignupSource};
use weft_testkit::{eventually, require_tool, tools_dir};

async fn sign_up(ports: &Ports, email: &str) {
    let request = grpc::sign_up_request(email, "Grace Hopper", SignupSource::Web);
    grpc::sign_up(ports.user, request).await;
}

fn browser(script: &str, args: &[&str]) -> Command {
    let mut c = Command::new(require_tool("node"));
    c.arg(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/browser")
            .join(script),
    )
    .args(args)
    .env("NODE_PATH", tools_dir().join("npm/node_modules"))
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signup_appears_on_the_live_dashboard_for_staff() {
    let Mesh { dir, ports, up } = Mesh::start(BrokerKind::Embedded).await;

    let base = format!("http://127.0.0.1:{}", ports.gateway);
    let page = http_get(ports.gateway, "/").await;
    assert!(
        page.contains("/v1/analytics/metrics:stream") && page.contains("Sign in"),
        "the page follows the stream and offers a staff sign-in"
    );
    let metrics = http_get(ports.gateway, "/v1/analytics/metrics").await;
    let json: serde_json::Value = serde_json::from_str(&metrics).unwrap();
    assert!(json["metrics"].is_object(), "{metrics}");

    sign_up(&ports, "ops@example.com").await;
    support::admin(dir.path(), &["grant", "ops@example.com", "staff"]);

    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("artifacts/dashboard.png");
    let _ = std::fs::remove_file(&shot);
    for other in ["dashboard-narrow.png", "dashboard-operations.png"] {
        let _ = std::fs::remove_file(shot.with_file_name(other));
    }
    let url = format!("{base}/");
    let mut driver = browser(
        "dashboard.cjs",
        &[
            &url,
            "2",
            shot.to_str().unwrap(),
            "ops@example.com",
            PASSWORD,
        ],
    )
    .spawn()
    .expect("node");
    let mut lines = BufReader::new(driver.stdout.take().unwrap()).lines();
    let ready = tokio::task::spawn_blocking(move || {
        let first = lines.next();
        (first, lines)
    })
    .await
    .unwrap();
    let (first, lines) = ready;
    assert_eq!(first.map(Result::unwrap).as_deref(), Some("READY"));

    sign_up(&ports, "grace@example.com").await;

    let rest = finish(lines, driver).await;
    assert_eq!(rest.first().map(String::as_str), Some("SEEN"), "{rest:?}");
    for shot in [
        shot.clone(),
        shot.with_file_name("dashboard-narrow.png"),
        shot.with_file_name("dashboard-operations.png"),
    ] {
        let png = std::fs::read(&shot).unwrap();
        assert!(
            png.starts_with(b"\x89PNG"),
            "a PNG screenshot at {}",
            shot.display()
        );
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    up.stop();
}

/// The verification link in the newest email to `email` under `mail`, once written.
fn link_in_mail(data_dir: &Path, email: &str) -> Option<String> {
    for raw in support::mails(data_dir) {
        if !raw.contains(&format!("To: {email}")) {
            continue;
        }
        // Quoted-printable: soft line breaks out, `=3D` back to `=`.
        let text = raw.replace("=\n", "").replace("=3D", "=");
        let Some(start) = text.find("http://") else {
            continue;
        };
        let link: String = text[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || ":/.?=_-".contains(*c))
            .collect();
        if link.contains("/verify?token=") {
            return Some(link);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emailed_link_verifies_the_address_only_when_its_button_is_pressed() {
    let Mesh { dir, ports, up } = Mesh::start(BrokerKind::Embedded).await;
    sign_up(&ports, "link@example.com").await;
    let link = eventually(
        "the verification email",
        Duration::from_secs(60),
        || async { link_in_mail(dir.path(), "link@example.com") },
    )
    .await;
    assert!(
        link.starts_with(&format!("http://127.0.0.1:{}/verify?token=", ports.gateway)),
        "{link}"
    );
    let login = grpc::login(ports.user, "link@example.com").await;
    let verified = || async {
        let request = GetUserRequest {
            user_id: login.user_id.clone(),
        };
        let answer = grpc::users(ports.user)
            .await
            .get_user(grpc::authed(request, &login.access_token))
            .await
            .unwrap();
        answer.into_inner().user.unwrap().email_verified
    };

    let mut driver = browser("verify.cjs", &[&link])
        .stdin(Stdio::piped())
        .spawn()
        .expect("node");
    let mut stdin = driver.stdin.take().unwrap();
    let mut lines = BufReader::new(driver.stdout.take().unwrap()).lines();
    let (first, lines) = tokio::task::spawn_blocking(move || (lines.next(), lines))
        .await
        .unwrap();
    assert_eq!(first.map(Result::unwrap).as_deref(), Some("OPENED"));
    assert!(!verified().await, "opening the link verifies nothing");
    stdin.write_all(b"press\n").unwrap();
    // Closing stdin lets the driver exit once it is done.
    drop(stdin);
    let rest = finish(lines, driver).await;
    assert!(
        rest.first()
            .is_some_and(|l| l.starts_with("VERIFIED") && l.contains("link@example.com")),
        "{rest:?}"
    );
    assert!(verified().await);

    // The page is never cached and sends no referrer; without its token it refuses,
    // with nothing to press.
    let head = support::rest::raw_get(ports.gateway, "/verify")
        .await
        .0
        .to_ascii_lowercase();
    for want in [
        "http/1.1 200",
        "cache-control: no-store",
        "referrer-policy: no-referrer",
        "content-type: text/html",
    ] {
        assert!(head.contains(want), "{want}: {head}");
    }
    let bare = format!("http://127.0.0.1:{}/verify", ports.gateway);
    let mut driver = browser("verify.cjs", &[&bare]).spawn().expect("node");
    let lines = BufReader::new(driver.stdout.take().unwrap()).lines();
    let shown = finish(lines, driver).await;
    assert!(
        shown
            .first()
            .is_some_and(|l| l.starts_with("NO TOKEN") && l.contains("no verification token")),
        "{shown:?}"
    );
    up.stop();
}

/// The rest of a browser driver's output, once it has exited successfully.
async fn finish(
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
    mut driver: std::process::Child,
) -> Vec<String> {
    let (rest, status) = tokio::task::spawn_blocking(move || {
        let rest: Vec<String> = lines.map(Result::unwrap).collect();
        (rest, driver.wait().unwrap())
    })
    .await
    .unwrap();
    assert!(status.success(), "browser check failed: {rest:?}");
    rest
}

/// The body of `GET path` on the gateway at `port`, after asserting it was 200 (no
/// client library needed for two requests).
async fn http_get(port: u16, path: &str) -> String {
    let (head, body) = support::rest::raw_get(port, path).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body
}
