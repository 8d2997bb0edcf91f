//! The gateway's cost: `GET /v1/orders/{id}` through the gateway (REST/JSON, JWT check,
//! transcoding) against the same `GetOrder` over direct gRPC, on the same machine,
//! inside `weft up` (release build, embedded broker, SQLite).
//!
//! For each path: closed-loop throughput with `WEFT_BENCH_CONCURRENCY` callers for
//! `WEFT_BENCH_SECONDS`, then p50/p99 latency at a fixed `WEFT_BENCH_RATE` requests
//! per second; the ratio of the two throughputs is the gateway's cost. The gateway's
//! resident memory is read from `/proc` before and after the load.
//!
//! `cargo bench --bench gateway`
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use common::{closed_loop, env_or, fixed_rate, grpc_get_order, rest_get, rss_kib};
use support::rest::Customer;
use support::{BrokerKind, LIFTED_RATE_LIMITS, Mesh};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let callers = env_or("WEFT_BENCH_CONCURRENCY", 16);
    let seconds = env_or("WEFT_BENCH_SECONDS", 5);
    let rate = env_or("WEFT_BENCH_RATE", 200);
    // The benchmark is one client: lift the per-client rate limit.
    let Mesh { dir, ports, up } = Mesh::start_env(BrokerKind::Embedded, &LIFTED_RATE_LIMITS).await;
    let gateway_pid: u32 = std::fs::read_to_string(dir.path().join("run/gateway.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    let base = format!("http://127.0.0.1:{}", ports.gateway);
    let http = support::rest::client();
    let customer = Customer::with_seed_order(&http, &base, "bench@example.com").await;
    let order_id = customer.order_id.clone();
    let rest = rest_get(
        &http,
        format!("{base}/v1/orders/{order_id}"),
        customer.bearer(),
    );
    let channel = support::grpc::channel(ports.order).await;
    let grpc = grpc_get_order(channel, order_id, customer.bearer());

    // Warm both paths (connections, caches).
    let _ = closed_loop(&grpc, 4, 1).await;
    let _ = closed_loop(&rest, 4, 1).await;
    let (idle_rss, _) = rss_kib(gateway_pid);

    let (grpc_rps, grpc_failed) = closed_loop(&grpc, callers, seconds).await;
    let (rest_rps, rest_failed) = closed_loop(&rest, callers, seconds).await;
    let (loaded_rss, peak_rss) = rss_kib(gateway_pid);
    let (g50, g99, gf) = fixed_rate(&grpc, rate, seconds).await;
    let (r50, r99, rf) = fixed_rate(&rest, rate, seconds).await;

    println!(
        "GET /v1/orders/{{id}} vs GetOrder, {callers} callers × {seconds} s closed loop, then {rate}/s for {seconds} s (client, gateway, order service and broker share this machine)"
    );
    println!(
        "  direct gRPC      {grpc_rps:>8.0} req/s ({grpc_failed} failed)   at {rate}/s: p50 {g50:.2?}  p99 {g99:.2?} ({gf} failed)"
    );
    println!(
        "  through gateway  {rest_rps:>8.0} req/s ({rest_failed} failed)   at {rate}/s: p50 {r50:.2?}  p99 {r99:.2?} ({rf} failed)"
    );
    println!("  gateway / direct throughput: {:.2}", rest_rps / grpc_rps);
    println!(
        "  gateway RSS: idle {:.1} MiB, after load {:.1} MiB, peak {:.1} MiB",
        idle_rss as f64 / 1024.0,
        loaded_rss as f64 / 1024.0,
        peak_rss as f64 / 1024.0
    );
    up.stop_async().await;
}
