//! Helpers the benchmarks share: sizes from the environment, quantiles, CPU and
//! memory of processes, closed- and fixed-rate load, and a local Apache Kafka cluster.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

pub mod kafka;

/// The value of the environment variable `name`, or `default` when unset or unparsable.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub use weft::demo::quantile;

/// The fields of `/proc/<pid>/stat` after the command name (which is in parentheses
/// and may hold spaces): field n of the whole line is at n - 3. Empty when the
/// process is gone.
fn stat_fields(pid: u32) -> Vec<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')')
        .map_or("", |(_, r)| r)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// The sum of the clock-tick fields at `indices` (after the command name), seconds.
fn stat_seconds(fields: &[String], indices: &[usize]) -> f64 {
    let ticks: f64 = indices
        .iter()
        .map(|i| {
            fields
                .get(*i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        })
        .sum();
    ticks / clock_ticks()
}

/// CPU time (user + system, seconds) a process has used so far, from `/proc`.
pub fn cpu_seconds(pid: u32) -> f64 {
    // utime and stime are fields 14 and 15 of the whole line.
    stat_seconds(&stat_fields(pid), &[11, 12])
}

/// The parent of process `pid`, from `/proc` (0 when it is gone).
pub fn parent(pid: u32) -> u32 {
    stat_fields(pid)
        .get(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

/// CPU-seconds of `pid`, of its children that have exited (and were waited for) and
/// of those that run now: a PostgreSQL server's, whose backends come and go with
/// connections.
pub fn cpu_tree_seconds(pid: u32) -> f64 {
    // cutime and cstime, fields 16 and 17, hold the reaped children's time.
    let mut total = stat_seconds(&stat_fields(pid), &[11, 12, 13, 14]);
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Some(child) = entry.file_name().to_str().and_then(|n| n.parse().ok())
            && child != pid
            && parent(child) == pid
        {
            total += cpu_seconds(child);
        }
    }
    total
}

/// Clock ticks per second of `/proc` times.
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// `VmRSS` and `VmHWM` (peak) of a process, in KiB.
pub fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// One call of either path; `Ok` when it answered 200 / OK.
pub type Call = Arc<dyn Fn() -> futures::future::BoxFuture<'static, bool> + Send + Sync>;

pub async fn closed_loop(call: &Call, callers: u64, seconds: u64) -> (f64, u64) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let call = call.clone();
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0u64, 0u64);
                while Instant::now() < deadline {
                    if call().await { ok += 1 } else { failed += 1 }
                }
                (ok, failed)
            })
        })
        .collect();
    let (mut ok, mut failed) = (0, 0);
    for t in tasks {
        let (o, f) = t.await.unwrap();
        ok += o;
        failed += f;
    }
    (ok as f64 / started.elapsed().as_secs_f64(), failed)
}

pub async fn fixed_rate(call: &Call, rate: u64, seconds: u64) -> (Duration, Duration, u64) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let mut tasks = Vec::new();
    for _ in 0..rate * seconds {
        tick.tick().await;
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let ok = call().await;
            (t.elapsed(), ok)
        }));
    }
    let mut latencies = Vec::new();
    let mut failed = 0;
    for t in tasks {
        let (d, ok) = t.await.unwrap();
        latencies.push(d);
        failed += u64::from(!ok);
    }
    latencies.sort();
    (
        quantile(&latencies, 0.5),
        quantile(&latencies, 0.99),
        failed,
    )
}

/// `GET url` with `authorization: <bearer>`; true on a 200 with its body read.
pub fn rest_get(http: &reqwest::Client, url: String, bearer: String) -> Call {
    let (http, url, bearer) = (http.clone(), Arc::new(url), Arc::new(bearer));
    Arc::new(move || {
        let (http, url, bearer) = (http.clone(), url.clone(), bearer.clone());
        Box::pin(async move {
            match http
                .get(url.as_str())
                .header("authorization", bearer.as_str())
                .send()
                .await
            {
                Ok(r) => r.status() == 200 && r.bytes().await.is_ok(),
                Err(_) => false,
            }
        })
    })
}

/// `GetOrder(order_id)` over `channel` with `authorization: <bearer>`; true on OK.
pub fn grpc_get_order(
    channel: tonic::transport::Channel,
    order_id: String,
    bearer: String,
) -> Call {
    use weft_proto::order::GetOrderRequest;
    use weft_proto::order::order_service_client::OrderServiceClient;
    let bearer = Arc::new(bearer);
    Arc::new(move || {
        let mut client = OrderServiceClient::new(channel.clone());
        let (bearer, order_id) = (bearer.clone(), order_id.clone());
        Box::pin(async move {
            let mut req = tonic::Request::new(GetOrderRequest { order_id });
            let Ok(value) = bearer.parse() else {
                return false;
            };
            req.metadata_mut().insert("authorization", value);
            client.get_order(req).await.is_ok()
        })
    })
}

/// Sends one record to `topic` and waits for its acknowledgement: an idempotent
/// producer's first record waits for its producer id (and, on Kafka, for a new
/// topic's leaders), which no measurement should include.
pub async fn warm(producer: &rdkafka::producer::FutureProducer, topic: &str) {
    let record = rdkafka::producer::FutureRecord::<str, str>::to(topic).payload("warm");
    producer
        .send(record, Duration::from_secs(30))
        .await
        .unwrap();
}

/// Records per second of `n` records of 200 bytes (1000 keys over them) sent to
/// `topic` by `producer` after [`warm`], all acknowledged.
pub async fn acked_rate(
    producer: &rdkafka::producer::FutureProducer,
    topic: &str,
    n: usize,
) -> f64 {
    warm(producer, topic).await;
    let value = vec![b'x'; 200];
    let keys: Vec<String> = (0..n).map(|i| format!("key-{}", i % 1000)).collect();
    let t = Instant::now();
    let pending: Vec<_> = keys
        .iter()
        .map(|k| {
            let record = rdkafka::producer::FutureRecord::to(topic)
                .key(k)
                .payload(&value);
            producer.send_result(record).unwrap()
        })
        .collect();
    for delivery in pending {
        delivery.await.unwrap().unwrap();
    }
    n as f64 / t.elapsed().as_secs_f64()
}
