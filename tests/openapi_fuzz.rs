//! schemathesis fuzzes every REST route of the gateway under `weft up` from the
//! gateway's own `/openapi.json`, with valid and invalid input, signed in as a
//! regular user: no answer may be a 5xx, and every answer must match the document
//! (status, content type and body schema). The metric stream never ends, so it is
//! left out.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;

use support::rest::Customer;
use support::{BrokerKind, LIFTED_RATE_LIMITS, Mesh};
use weft_testkit::require_tool;

/// schemathesis settings: no crash cache in the working directory; a run whose
/// operations only ever answer 404 (a wrong base path, ids that exist nowhere) fails
/// instead of passing quietly; path ids are the test user's own, so calls reach the
/// services' logic.
fn config(user_id: &str, order_id: &str) -> String {
    format!(
        r#"
[cache]
enabled = false

[warnings]
fail-on = ["missing_test_data"]

[parameters]
"path.user_id" = "{user_id}"
"path.order_id" = "{order_id}"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_errors_and_no_schema_violations() {
    let st = require_tool("st");
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Lifted limits: the fuzzer is one client and should reach the services, not the
    // rate limiter (429 is documented and allowed all the same).
    let Mesh {
        dir: _dir,
        ports,
        up,
    } = Mesh::start_env(BrokerKind::Embedded, &LIFTED_RATE_LIMITS).await;
    let base = format!("http://127.0.0.1:{}", ports.gateway);
    let http = reqwest::Client::new();
    let customer = Customer::with_seed_order(&http, &base, "fuzz@example.com").await;
    let Customer {
        user_id,
        token,
        order_id,
    } = customer;

    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("st.toml"), config(&user_id, &order_id)).unwrap();
    let schema = format!("{base}/openapi.json");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(st)
            .current_dir(work.path())
            .env("HYPOTHESIS_STORAGE_DIRECTORY", work.path().join("hypothesis"))
            .args(["--config-file", "st.toml", "run", &schema])
            .args(["--no-color", "--wait-for-schema", "30"])
            .args(["--exclude-path-regex", ":stream$"])
            .args([
                "--checks",
                "not_a_server_error,response_schema_conformance,content_type_conformance,status_code_conformance",
            ])
            .args(["--header", &format!("Authorization: Bearer {token}")])
            .args(["--phases", "examples,coverage,fuzzing"])
            .args(["--max-examples", "20", "--seed", "1", "--workers", "2"])
            .args(["--request-timeout", "10", "--generation-database", "none"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{stdout}\n{stderr}"
    );
    // The closing line says "No issues found", or lists warnings only (the services
    // validate more than a schema can say: email syntax, known currencies).
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("==="))
        .unwrap_or_default();
    assert!(
        !summary.contains("failure") && !summary.contains("error"),
        "{stdout}"
    );
    // The run reached the routes: far more cases than operations.
    let generated = stdout
        .lines()
        .find_map(|l| {
            let (n, rest) = l.trim().split_once(" generated, ")?;
            rest.ends_with(" passed").then(|| n.parse::<u32>().ok())?
        })
        .unwrap_or(0);
    assert!(generated >= 100, "only {generated} cases ran:\n{stdout}");
    up.stop_async().await;
}
