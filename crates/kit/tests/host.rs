//! The service host through real sockets: probes drive health, background tasks run
//! beside the servers, and the drain happens once. A task that fails stops the
//! service with its error; a task that will not stop is aborted when the one grace
//! period is over, and the host returns.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use weft_kit::config::ServerArgs;
use weft_kit::host::{Host, Identity, Ports};

const IDENTITY: Identity = Identity {
    name: "test",
    service: "weft.user.v1.UserService",
    version: "0",
    ports: Ports { grpc: 0, admin: 0 },
};

async fn bind(grace: Duration) -> Host {
    let args = ServerArgs {
        shutdown_grace: grace,
        ..ServerArgs::default()
    };
    let any = "127.0.0.1:0".parse().unwrap();
    Host::bind(IDENTITY, weft_proto::DESCRIPTOR_SET, any, any, &args)
        .await
        .unwrap()
}

async fn status(host: std::net::SocketAddr) -> Option<i32> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{host}"))
        .unwrap()
        .connect()
        .await
        .ok()?;
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: IDENTITY.service.into(),
        })
        .await
        .ok()
        .map(|r| r.into_inner().status)
}

#[test]
fn identity_derives_every_name() {
    assert_eq!(IDENTITY.process(), "weft-test");
    assert_eq!(IDENTITY.relay_client(), "weft-test-relay");
}

#[tokio::test]
async fn probes_drive_health_and_tasks_run_until_shutdown() {
    let mut host = bind(Duration::from_secs(5)).await;
    let addr = host.grpc_addr();
    let up = Arc::new(AtomicBool::new(false));
    let probed = up.clone();
    let ticks = Arc::new(AtomicU32::new(0));
    let counted = ticks.clone();
    let stopped = Arc::new(AtomicBool::new(false));
    let saw_stop = stopped.clone();
    host.probe("dependency", move || {
        let up = probed.load(Ordering::SeqCst);
        async move { if up { Ok(()) } else { Err("down".into()) } }
    })
    .background("ticker", move |stop: CancellationToken| async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(Duration::from_millis(10)) => {
                    counted.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        saw_stop.store(true, Ordering::SeqCst);
    });
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(host.run(shutdown.clone()));

    weft_testkit::eventually(
        "the host to answer NOT_SERVING",
        Duration::from_secs(10),
        || async { (status(addr).await == Some(ServingStatus::NotServing as i32)).then_some(()) },
    )
    .await;
    up.store(true, Ordering::SeqCst);
    weft_testkit::eventually(
        "the host to answer SERVING",
        Duration::from_secs(10),
        || async { (status(addr).await == Some(ServingStatus::Serving as i32)).then_some(()) },
    )
    .await;
    weft_testkit::eventually("the task to run", Duration::from_secs(10), || async {
        (ticks.load(Ordering::SeqCst) > 3).then_some(())
    })
    .await;

    shutdown.cancel();
    run.await.unwrap().unwrap();
    assert!(stopped.load(Ordering::SeqCst), "the task saw the shutdown");
}

#[tokio::test]
async fn a_failing_task_stops_the_service_with_its_error() {
    let mut host = bind(Duration::from_secs(5)).await;
    let ran_on = Arc::new(AtomicBool::new(false));
    let other = ran_on.clone();
    host.background("doomed", |_stop| async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        anyhow::Result::<()>::Err(anyhow::anyhow!("the broker refused us for good"))
    })
    .background("bystander", move |stop: CancellationToken| async move {
        stop.cancelled().await;
        other.store(true, Ordering::SeqCst);
    });
    let started = Instant::now();
    // Nobody cancels this token: the failure must.
    let result = tokio::time::timeout(Duration::from_secs(20), host.run(CancellationToken::new()))
        .await
        .expect("the host stopped by itself");
    let err = result.unwrap_err();
    assert!(
        format!("{err:#}").contains("the broker refused us for good"),
        "{err:#}"
    );
    assert!(
        ran_on.load(Ordering::SeqCst),
        "the other task was stopped too"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test]
async fn a_task_that_will_not_stop_is_aborted_after_the_one_grace_period() {
    let grace = Duration::from_millis(500);
    let mut host = bind(grace).await;
    host.background("stuck", |_stop| std::future::pending::<()>());
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(host.run(shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopping = Instant::now();
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the host returned after the grace period")
        .unwrap()
        .unwrap();
    let took = stopping.elapsed();
    // One grace period for RPCs and tasks together, not one after the other.
    assert!(
        took >= grace,
        "returned before the grace was over: {took:?}"
    );
    assert!(took < grace * 2 + Duration::from_secs(1), "took {took:?}");
}

#[tokio::test]
async fn a_panicking_task_is_named_and_stops_the_service() {
    let mut host = bind(Duration::from_secs(5)).await;
    host.background("fragile", |_stop| async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The task's type is `()`, as a real task's is; it panics all the same.
        if std::hint::black_box(true) {
            panic!("an invariant broke");
        }
    });
    let err = tokio::time::timeout(Duration::from_secs(20), host.run(CancellationToken::new()))
        .await
        .expect("the host stopped by itself")
        .unwrap_err();
    assert!(format!("{err:#}").contains("fragile"), "{err:#}");
}
