//! weft's metrics in a real Prometheus (Debian's `prometheus` and `promtool`, which
//! `scripts/install-tools` installs): `promtool` accepts the compose deployment's
//! configuration and the one `weft up` writes for its own admin ports; a Prometheus
//! started on that file scrapes every process of a running mesh, and after a few
//! sign-ups and an order its HTTP API answers with the RPC counters and durations,
//! the consumers' lag, the outbox backlog and the gateway's requests, and every
//! expression of the Grafana dashboards (`deploy/grafana/dashboards`) is accepted and
//! names only metrics and labels of that scrape. Missing tools fail these tests; they
//! never skip.
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
    let mut check = Command::new(require_tool("promtool"));
    check.args(["check", "config"]).arg(file);
    support::output::run_ok(
        &format!("promtool check config {}", file.display()),
        &mut check,
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

    /// The JSON answer of `GET /api/v1/{path}` with `params`.
    async fn api(&self, http: &reqwest::Client, path: &str, params: &[(&str, &str)]) -> Value {
        http.get(format!("{}/api/v1/{path}", self.url))
            .query(params)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
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

    dashboards_match_the_scrape(&prometheus, &http).await;

    drop(prometheus);
    up.stop();
}

/// Every PromQL expression of the Grafana dashboards (`"expr"` of every target),
/// with the file it is in.
fn dashboard_expressions() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/dashboards");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let board: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for panel in board["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let file = path.file_name().unwrap().to_string_lossy().into_owned();
                found.push((file, target["expr"].as_str().unwrap().to_owned()));
            }
        }
    }
    found
}

/// The metric names and the grouping labels (`by (…)`, `without (…)`, `on (…)`, …)
/// of a PromQL expression: a name not followed by `(` that is no keyword or
/// aggregation, outside label matchers, ranges and strings.
fn promql_names(expr: &str) -> (Vec<String>, Vec<String>) {
    // Besides GROUPING: operators, and the aggregations (which may come before
    // their `by (…)`).
    const KEYWORDS: &[&str] = &[
        "bool",
        "offset",
        "and",
        "or",
        "unless",
        "atan2",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
    ];
    const GROUPING: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let (mut metrics, mut labels) = (Vec::new(), Vec::new());
    let mut i = 0;
    let skip_to = |from: usize, close: char| {
        let mut j = from;
        while j < chars.len() && chars[j] != close {
            if chars[j] == '"' {
                j += 1;
                while j < chars.len() && chars[j] != '"' {
                    j += if chars[j] == '\\' { 2 } else { 1 };
                }
            }
            j += 1;
        }
        j + 1
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            i = skip_to(i + 1, '}');
        } else if c == '[' {
            i = skip_to(i + 1, ']');
        } else if c == '"' {
            i = skip_to(i + 1, '"');
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | ':'))
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            if GROUPING.contains(&word.as_str()) && chars.get(next) == Some(&'(') {
                let end = skip_to(next + 1, ')');
                let list: String = chars[next + 1..end - 1].iter().collect();
                labels.extend(
                    list.split(',')
                        .map(|l| l.trim().to_owned())
                        .filter(|l| !l.is_empty()),
                );
                i = end;
            } else if !KEYWORDS.contains(&word.as_str())
                && !GROUPING.contains(&word.as_str())
                && chars.get(next) != Some(&'(')
            {
                metrics.push(word);
            }
        } else {
            i += 1;
        }
    }
    (metrics, labels)
}

#[test]
fn promql_names_finds_metrics_and_grouping_labels() {
    let (metrics, labels) = promql_names(
        r#"histogram_quantile(0.99, sum by (service, le) (rate(rpc_server_duration_seconds_bucket{code!="Ok", x=~"a|b"}[1m]))) / on (service) group_left max without (job) (up) > bool 0.5"#,
    );
    assert_eq!(metrics, ["rpc_server_duration_seconds_bucket", "up"]);
    assert_eq!(labels, ["service", "le", "service", "job"]);
}

/// The strings of a JSON array (none when it is not one).
fn strings(list: &Value) -> Vec<&str> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// Every dashboard expression is accepted by Prometheus, names only metrics the
/// scrape has, and groups only by labels those metrics carry.
async fn dashboards_match_the_scrape(prometheus: &Prometheus, http: &reqwest::Client) {
    let expressions = dashboard_expressions();
    assert!(!expressions.is_empty(), "no dashboard expressions found");
    let names = prometheus.api(http, "label/__name__/values", &[]).await;
    let names = strings(&names["data"]);
    let mut problems = Vec::new();
    for (file, expr) in &expressions {
        let answer = prometheus.api(http, "query", &[("query", expr)]).await;
        if answer["status"] != "success" {
            problems.push(format!(
                "{file}: {expr}: Prometheus refused it: {}",
                answer["error"]
            ));
        }
        let (metrics, grouping) = promql_names(expr);
        assert!(!metrics.is_empty(), "{file}: {expr}: no metric found in it");
        for metric in &metrics {
            if !names.contains(&metric.as_str()) {
                problems.push(format!(
                    "{file}: {expr}: no series named {metric} in the scrape"
                ));
            }
        }
        let matcher = format!("{{__name__=~\"{}\"}}", metrics.join("|"));
        let carried = prometheus
            .api(http, "labels", &[("match[]", &matcher)])
            .await;
        let carried = strings(&carried["data"]);
        for label in &grouping {
            if !carried.contains(&label.as_str()) {
                problems.push(format!(
                    "{file}: {expr}: its metrics carry no label {label} (they carry {carried:?})"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "dashboards out of step with the scrape:\n{}",
        problems.join("\n")
    );
    println!(
        "{} dashboard expressions checked against the scrape",
        expressions.len()
    );
}
