//! One trace per user action, read back from a real Jaeger (v2, built by
//! `scripts/jaeger` from its Go module): the mesh exports OTLP to it, one sign-up goes
//! through the gateway's REST face with a `traceparent` of the test's choosing, and
//! Jaeger's query API answers with that trace: the gateway's request, the user
//! service's RPC, each relay's publish, and every consumer's processing (the order
//! service's welcome order, the notification service's consumer and its delivery,
//! analytics), each span a child of the one that caused it, across Kafka too. Run on
//! weft-broker and on Apache Kafka. `scripts/jaeger validate` accepts the compose
//! deployment's collector configuration. A missing Go or Jaeger fails these tests;
//! they never skip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::{BrokerKind, Ports, Up};
use weft_testkit::eventually;

const WAIT: Duration = Duration::from_secs(120);

fn jaeger_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/jaeger")
}

/// Builds Jaeger once (the script caches it); the build's output goes to the test's.
fn build_jaeger() {
    let status = Command::new(jaeger_script()).arg("build").status().unwrap();
    assert!(status.success(), "scripts/jaeger build failed: {status}");
}

/// A Jaeger of the test's own on loopback ports, memory storage, stopped on drop.
struct Jaeger {
    child: Child,
    otlp: u16,
    query: String,
}

impl Jaeger {
    async fn start(dir: &Path) -> Self {
        build_jaeger();
        let otlp = weft_testkit::free_port();
        let http = weft_testkit::free_port();
        let config = dir.join("jaeger.yaml");
        std::fs::write(
            &config,
            format!(
                "service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
extensions:
  jaeger_storage:
    backends:
      memory:
        memory:
          max_traces: 10000
  jaeger_query:
    storage:
      traces: memory
    enable_tracing: false
    http:
      endpoint: 127.0.0.1:{http}
    grpc:
      endpoint: 127.0.0.1:0
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{otlp}
processors:
  batch: {{}}
exporters:
  jaeger_storage_exporter:
    trace_storage: memory
"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("jaeger.log")).unwrap();
        let child = Command::new(jaeger_script())
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let jaeger = Self {
            child,
            otlp,
            query: format!("http://127.0.0.1:{http}"),
        };
        // The query API answers before the receiver listens: wait for both.
        let client = reqwest::Client::new();
        eventually("Jaeger's query API and OTLP receiver", WAIT, || async {
            let services = client
                .get(format!("{}/api/services", jaeger.query))
                .send()
                .await
                .ok()?;
            services.status().is_success().then_some(())?;
            tokio::net::TcpStream::connect(("127.0.0.1", otlp))
                .await
                .ok()
                .map(|_| ())
        })
        .await;
        jaeger
    }

    /// The trace `id` as Jaeger's query API gives it, once it has one.
    async fn trace(&self, client: &reqwest::Client, id: &str) -> Option<Value> {
        let answer = client
            .get(format!("{}/api/traces/{id}", self.query))
            .send()
            .await
            .ok()?;
        if !answer.status().is_success() {
            return None;
        }
        let body: Value = answer.json().await.ok()?;
        body["data"].as_array()?.first().cloned()
    }
}

impl Drop for Jaeger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One span of a trace as Jaeger shows it.
#[derive(Debug, Clone)]
struct Span {
    id: String,
    service: String,
    name: String,
    parent: Option<String>,
}

fn spans_of(trace: &Value) -> Vec<Span> {
    let services: BTreeMap<&str, &str> = trace["processes"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(id, p)| (id.as_str(), p["serviceName"].as_str().unwrap()))
        .collect();
    trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| Span {
            id: s["spanID"].as_str().unwrap().to_owned(),
            service: services[s["processID"].as_str().unwrap()].to_owned(),
            name: s["operationName"].as_str().unwrap().to_owned(),
            parent: s["references"].as_array().and_then(|refs| {
                refs.iter()
                    .find(|r| r["refType"] == "CHILD_OF")
                    .map(|r| r["spanID"].as_str().unwrap().to_owned())
            }),
        })
        .collect()
}

/// A span by its service and name.
type Named = (String, String);

/// A span that must be there: its service, its name and its parent, if any.
type Expected = (String, String, Option<Named>);

/// The spans one sign-up must leave, as (service, span name, parent's service and
/// name); `None` for the root. Spans name topics as weft does, without a
/// `--kafka-prefix`.
fn expected() -> Vec<Expected> {
    let user_events = "user-events";
    let order_events = "order-events";
    let s = |service: &str, name: &str| (service.to_owned(), name.to_owned());
    let publish = |service: &str, topic: &str| s(service, &format!("publish {topic}"));
    let process = |service: &str, topic: &str| s(service, &format!("process {topic}"));
    let signup = s("weft-user", "weft.user.v1.UserService/SignUp");
    [
        (s("weft-gateway", "POST /v1/users"), None),
        (signup.clone(), Some(s("weft-gateway", "POST /v1/users"))),
        (publish("weft-user", user_events), Some(signup)),
        // The welcome order, from the sign-up.
        (
            process("weft-order", user_events),
            Some(publish("weft-user", user_events)),
        ),
        (
            publish("weft-order", order_events),
            Some(process("weft-order", user_events)),
        ),
        // The welcome email, and the order's confirmation.
        (
            process("weft-notification", user_events),
            Some(publish("weft-user", user_events)),
        ),
        (
            process("weft-notification", order_events),
            Some(publish("weft-order", order_events)),
        ),
        // The welcome email's delivery, and the EmailSent it publishes.
        (
            s("weft-notification", "notification sent"),
            Some(publish("weft-user", user_events)),
        ),
        (
            publish("weft-notification", "notification-events"),
            Some(s("weft-notification", "notification sent")),
        ),
        (
            process("weft-analytics", "notification-events"),
            Some(publish("weft-notification", "notification-events")),
        ),
        // Analytics counts the sign-up and the order.
        (
            process("weft-analytics", user_events),
            Some(publish("weft-user", user_events)),
        ),
        (
            process("weft-analytics", order_events),
            Some(publish("weft-order", order_events)),
        ),
    ]
    .into_iter()
    .map(|((service, name), parent)| (service, name, parent))
    .collect()
}

/// Each span as `service: name ← parent's service: name`, one per line.
fn render(spans: &[Span]) -> String {
    let by_id: BTreeMap<&str, &Span> = spans.iter().map(|s| (s.id.as_str(), s)).collect();
    let mut lines: Vec<String> = spans
        .iter()
        .map(|s| {
            let parent = match s.parent.as_deref().map(|p| by_id.get(p)) {
                None => "(root)".to_owned(),
                Some(None) => "(a span not in the trace)".to_owned(),
                Some(Some(p)) => format!("{}: {}", p.service, p.name),
            };
            format!("{}: {} ← {parent}", s.service, s.name)
        })
        .collect();
    lines.sort();
    lines.join("\n")
}

/// What of `expected` the trace lacks, as lines; empty when all is there.
fn missing(spans: &[Span], expected: &[Expected]) -> Vec<String> {
    let by_id: BTreeMap<&str, &Span> = spans.iter().map(|s| (s.id.as_str(), s)).collect();
    expected
        .iter()
        .filter(|(service, name, parent)| {
            !spans.iter().any(|s| {
                s.service == *service
                    && s.name == *name
                    && match parent {
                        None => true,
                        Some((ps, pn)) => s
                            .parent
                            .as_deref()
                            .and_then(|p| by_id.get(p))
                            .is_some_and(|p| p.service == *ps && p.name == *pn),
                    }
            })
        })
        .map(|(service, name, parent)| match parent {
            None => format!("{service}: {name}"),
            Some((ps, pn)) => format!("{service}: {name} ← {ps}: {pn}"),
        })
        .collect()
}

async fn one_sign_up_is_one_trace_in_jaeger(kind: BrokerKind) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let jaeger = Jaeger::start(dir.path()).await;
    let ports = Ports::free();
    let endpoint = format!("http://127.0.0.1:{}", jaeger.otlp);
    let up = Up::start_on_async(
        kind,
        &dir.path().join("mesh"),
        &ports,
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())],
    )
    .await;

    let http = reqwest::Client::new();
    let trace = "7d3f1c0b9a2e4f6d8c1b3a5e7f9d0c2b";
    let request = http
        .post(format!("http://127.0.0.1:{}/v1/users", ports.gateway))
        .header("traceparent", format!("00-{trace}-5a1b2c3d4e5f6071-01"))
        .json(&json!({"email": "jaeger@example.com", "name": "Trace Reader", "password": support::rest::PASSWORD, "source": "SIGNUP_SOURCE_API"}));
    support::rest::answer_ok(request).await;

    let expected = expected();
    let deadline = std::time::Instant::now() + WAIT;
    let found = loop {
        let spans = jaeger
            .trace(&http, trace)
            .await
            .map(|t| spans_of(&t))
            .unwrap_or_default();
        let gaps = missing(&spans, &expected);
        if gaps.is_empty() {
            break spans;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "after {WAIT:?} the trace lacks:\n{}\nit has:\n{}",
            gaps.join("\n"),
            render(&spans)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!("the trace Jaeger gave back:\n{}", render(&found));

    // One trace: every span reached through its parents from the gateway's request,
    // which continues the caller's span.
    let by_id: BTreeMap<&str, &Span> = found.iter().map(|s| (s.id.as_str(), s)).collect();
    for span in &found {
        let mut at = span;
        let mut hops = 0;
        while let Some(parent) = at.parent.as_deref().and_then(|p| by_id.get(p)) {
            at = parent;
            hops += 1;
            assert!(hops < 64, "a cycle of parents in {}", render(&found));
        }
        assert_eq!(
            (at.service.as_str(), at.name.as_str()),
            ("weft-gateway", "POST /v1/users"),
            "{}: {} does not lead back to the gateway's request:\n{}",
            span.service,
            span.name,
            render(&found)
        );
        assert_eq!(
            at.parent.as_deref(),
            Some("5a1b2c3d4e5f6071"),
            "the gateway's span continues the caller's"
        );
    }
    up.stop();
}

support::on_each_broker!(async one_sign_up_is_one_trace_in_jaeger =>
    one_sign_up_is_one_trace_in_jaeger_on_weft_broker,
    one_sign_up_is_one_trace_in_jaeger_on_kafka
);

#[test]
fn jaeger_accepts_the_deployments_collector_configuration() {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/otel-collector/config.yaml");
    build_jaeger();
    let mut validate = Command::new(jaeger_script());
    validate.arg("validate").arg("--config").arg(&config);
    support::output::run_ok(
        &format!("jaeger validate {}", config.display()),
        &mut validate,
    );
}

#[test]
fn jaeger_refuses_a_misspelt_collector_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/otel-collector/config.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("check_interval:"), "{text}");
    let wrong = dir.path().join("config.yaml");
    std::fs::write(&wrong, text.replace("check_interval:", "check_intervall:")).unwrap();
    build_jaeger();
    let out = Command::new(jaeger_script())
        .arg("validate")
        .arg("--config")
        .arg(&wrong)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a misspelt key was accepted: {said}");
    assert!(said.contains("check_intervall"), "{said}");
}
