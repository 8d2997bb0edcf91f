//! weft's metrics in a real Prometheus (Debian's `prometheus` and `promtool`, which
//! `scripts/install-tools` installs): `promtool` accepts the compose deployment's
//! configuration and the one `weft up` writes for its own admin ports; a Prometheus
//! started on that file scrapes every process of a running mesh, and after a few
//! sign-ups and an order its HTTP API answers with the RPC counters and durations,
//! the consumers' lag, the outbox backlog and the gateway's requests. Missing tools
//! fail these tests; they never skip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::{Ports, Up};
use weft_testkit::{eventually, require_tool};

const WAIT: Duration = Duration::from_secs(90);

fn promtool_check(file: &Path) {
    let out = Command::new(require_tool("promtool"))
        .args(["check", "config"])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check config {}: {}{}",
        file.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Prometheus of the test's own, stopped on drop.
struct Prometheus {
    child: Child,
    url: String,
}

impl Prometheus {
    fn start(config: &Path, storage: &Path) -> Self {
        let port = weft_testkit::free_port();
        let child = Command::new(require_tool("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", storage.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// The result vector of an instant query.
    async fn query(&self, http: &reqwest::Client, promql: &str) -> Vec<Value> {
        let Ok(answer) = http
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", promql)])
            .send()
            .await
        else {
            return Vec::new();
        };
        let body: Value = answer.json().await.unwrap_or_default();
        body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The result of `promql` once `done` holds for it; panics with the last result
    /// after the wait.
    async fn until(
        &self,
        http: &reqwest::Client,
        promql: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let result = self.query(http, promql).await;
            if done(&result) {
                return result;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{promql}: still {result:?} after {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The value of a query whose result is one sample, once it has one.
    async fn value(&self, http: &reqwest::Client, promql: &str) -> f64 {
        eventually(&format!("Prometheus to answer {promql}"), WAIT, || async {
            let result = self.query(http, promql).await;
            result.first()?["value"][1].as_str()?.parse::<f64>().ok()
        })
        .await
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_deployments_prometheus_configuration_is_valid() {
    promtool_check(&Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/prometheus.yml"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_mesh_and_answers_with_its_rpc_consumer_and_outbox_figures() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let up = Up::start_async(dir.path(), &ports).await;
    let config = dir.path().join("prometheus.yml");
    promtool_check(&config);
    let storage = tempfile::tempdir().unwrap();
    let prometheus = Prometheus::start(&config, storage.path());
    let http = reqwest::Client::new();

    // A little of everything: sign-ups (the user service's RPCs and outbox, every
    // consumer) and an order, through the gateway.
    let base = format!("http://127.0.0.1:{}", ports.gateway);
    for i in 0..3 {
        let email = format!("scraped-{i}@example.com");
        let (_, token) = support::rest::signup_and_login(&http, &base, &email).await;
        support::rest::seed_order(&http, &base, &token).await;
    }

    // Every process of the mesh is a target, and up.
    let targets = eventually("every admin port scraped and up", WAIT, || async {
        let up = prometheus.query(&http, r#"up{job="weft"}"#).await;
        (up.len() == 5 && up.iter().all(|s| s["value"][1] == "1")).then_some(up)
    })
    .await;
    let mut services: Vec<String> = targets
        .iter()
        .map(|s| s["metric"]["service"].as_str().unwrap().to_owned())
        .collect();
    services.sort();
    assert_eq!(
        services,
        ["analytics", "gateway", "notification", "order", "user"]
    );

    // RPC counters and durations, by method and code.
    let sign_ups = prometheus
        .value(
            &http,
            r#"sum(rpc_server_duration_seconds_count{service="user",method="/weft.user.v1.UserService/SignUp",code="Ok"})"#,
        )
        .await;
    assert!(sign_ups >= 3.0, "SignUp calls counted: {sign_ups}");
    let admitted = prometheus
        .value(&http, r#"sum(rpc_server_admitted_total{service="order"})"#)
        .await;
    assert!(admitted >= 3.0, "order RPCs admitted: {admitted}");
    // The gateway's requests by route template.
    let posted = prometheus
        .value(
            &http,
            r#"sum(gateway_requests_total{route="POST /v1/orders",status="200"})"#,
        )
        .await;
    assert!(posted >= 3.0, "orders posted through the gateway: {posted}");

    // Consumer lag per group and partition, back at 0 once every event is applied.
    prometheus
        .until(&http, "consumer_lag", |lag| {
            let groups: std::collections::BTreeSet<&str> = lag
                .iter()
                .filter_map(|s| s["metric"]["group"].as_str())
                .collect();
            groups.len() >= 3 && lag.iter().all(|s| s["value"][1] == "0")
        })
        .await;

    // The outbox backlog of the services that publish, empty again.
    let backlog = prometheus
        .query(
            &http,
            r#"outbox_backlog{service=~"user|order|notification"}"#,
        )
        .await;
    let reporting: Vec<&str> = backlog
        .iter()
        .filter_map(|s| s["metric"]["service"].as_str())
        .collect();
    assert!(
        ["user", "order"].iter().all(|s| reporting.contains(s)),
        "outbox_backlog from the user and order services: {backlog:?}"
    );
    let waiting = prometheus
        .value(&http, r#"sum(outbox_backlog{service=~"user|order"})"#)
        .await;
    assert_eq!(waiting, 0.0, "every outbox row published");

    drop(prometheus);
    up.stop();
}
