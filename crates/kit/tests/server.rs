//! The kit's gRPC bootstrap through a real socket: health driven by readiness,
//! deadlines, load shedding, message limits, malformed input, drain, and /metrics.
//! A stand-in user service (sleeping on request) exercises the stack; the stack is
//! what is under test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use weft_kit::admin::AdminServer;
use weft_kit::config::ServerArgs;
use weft_kit::conn::ConnArgs;
use weft_proto::user::user_service_client::UserServiceClient;
use weft_proto::user::*;
use weft_testkit::{closed_within, connect_from};

mod support;
use support::{args, channel, spawn};

async fn health(addr: SocketAddr, service: &str) -> Result<i32, Status> {
    let mut client = HealthClient::new(channel(addr).await);
    client
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .map(|r| r.into_inner().status)
}

async fn wait_health(addr: SocketAddr, service: &str, want: ServingStatus) {
    weft_testkit::eventually(
        &format!("{service:?} to be {want:?}"),
        Duration::from_secs(10),
        || async { (health(addr, service).await.ok() == Some(want as i32)).then_some(()) },
    )
    .await;
}

fn signup(name: &str, delay_ms: u64, timeout: Option<Duration>) -> Request<SignUpRequest> {
    let mut req = Request::new(SignUpRequest {
        name: name.into(),
        ..Default::default()
    });
    req.metadata_mut()
        .insert("x-test-delay-ms", delay_ms.to_string().parse().unwrap());
    if let Some(t) = timeout {
        req.set_timeout(t);
    }
    req
}

#[tokio::test]
async fn health_follows_readiness_probes() {
    let s = spawn(ServerArgs::default()).await;
    wait_health(s.addr, "", ServingStatus::Serving).await;
    wait_health(s.addr, "weft.user.v1.UserService", ServingStatus::Serving).await;
    s.ready.store(false, Ordering::SeqCst);
    wait_health(
        s.addr,
        "weft.user.v1.UserService",
        ServingStatus::NotServing,
    )
    .await;
    s.ready.store(true, Ordering::SeqCst);
    wait_health(s.addr, "weft.user.v1.UserService", ServingStatus::Serving).await;
    let unknown = health(s.addr, "weft.nope.v1.Nope").await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
}

/// The client's own timer fires first, so what proves the server honours the
/// deadline is that it stops the handler: with one slot, a slow call whose deadline
/// passed must free the slot long before its handler would have finished.
#[tokio::test]
async fn client_deadline_stops_the_handler() {
    let s = spawn(args(|a| a.max_concurrent_rpcs = 1)).await;
    let mut client = s.client().await;
    let err = client
        .sign_up(signup("slow", 60_000, Some(Duration::from_millis(100))))
        .await
        .unwrap_err();
    assert!(
        matches!(err.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{err:?}"
    );
    let freed = weft_testkit::eventually("the slot to be freed", Duration::from_secs(15), || {
        let mut c = client.clone();
        async move { c.sign_up(signup("fast", 0, None)).await.ok() }
    })
    .await;
    assert_eq!(freed.into_inner().user.unwrap().name, "fast");
}

#[tokio::test]
async fn server_limit_caps_long_deadlines() {
    let s = spawn(args(|a| a.rpc_timeout = Duration::from_millis(150))).await;
    let mut client = s.client().await;
    let err = client
        .sign_up(signup("slow", 2_000, Some(Duration::from_secs(60))))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded);
}

#[tokio::test]
async fn excess_concurrency_is_shed_not_queued() {
    let s = spawn(args(|a| a.max_concurrent_rpcs = 1)).await;
    let ch = channel(s.addr).await;
    let mut a = UserServiceClient::new(ch.clone());
    let mut b = UserServiceClient::new(ch);
    let slow = tokio::spawn(async move { a.sign_up(signup("holder", 3_000, None)).await });
    // Once the first call holds the only slot, a second is refused at once.
    s.started.notified().await;
    let shed = b.sign_up(signup("extra", 0, None)).await.unwrap_err();
    assert_eq!(shed.code(), Code::ResourceExhausted, "{shed:?}");
    assert!(shed.message().contains("overloaded"), "{shed:?}");
    assert_eq!(
        slow.await.unwrap().unwrap().into_inner().user.unwrap().name,
        "holder"
    );
    // Health checks are never shed.
    assert_eq!(
        health(s.addr, "").await.unwrap(),
        ServingStatus::Serving as i32
    );
}

#[tokio::test]
async fn oversize_and_malformed_requests_are_refused() {
    let s = spawn(args(|a| a.max_message_bytes = 64 * 1024)).await;
    let mut client = s.client().await;
    let big = "x".repeat(1024 * 1024);
    let err = client.sign_up(signup(&big, 0, None)).await.unwrap_err();
    assert!(
        matches!(err.code(), Code::OutOfRange | Code::ResourceExhausted),
        "oversize: {err:?}"
    );

    // Field 2 (name, a string) carrying invalid UTF-8.
    #[derive(Clone, PartialEq, prost::Message)]
    struct Malformed {
        #[prost(bytes = "vec", tag = "2")]
        name: Vec<u8>,
    }
    let mut grpc = tonic::client::Grpc::new(channel(s.addr).await);
    grpc.ready().await.unwrap();
    let codec: tonic_prost::ProstCodec<Malformed, SignUpResponse> =
        tonic_prost::ProstCodec::default();
    let err = grpc
        .unary(
            Request::new(Malformed {
                name: vec![0xff, 0xfe, 0xfd],
            }),
            "/weft.user.v1.UserService/SignUp".parse().unwrap(),
            codec,
        )
        .await
        .unwrap_err();
    assert_ne!(err.code(), Code::Ok);
    // The server is unharmed.
    let ok = client.sign_up(signup("after", 0, None)).await.unwrap();
    assert_eq!(ok.into_inner().user.unwrap().name, "after");
}

#[tokio::test]
async fn internal_errors_do_not_leak() {
    let s = spawn(ServerArgs::default()).await;
    let mut client = s.client().await;
    let err = client.login(LoginRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::Internal);
    assert!(!err.message().contains("/var/lib"), "{}", err.message());
    assert!(err.message().contains("request id"));
}

#[tokio::test]
async fn nothing_is_serving_before_the_first_probe_round_passes() {
    // The dependency's probe hangs: until it answers, the server is not ready,
    // whatever the health service's own default would say.
    let s = support::spawn_held(ServerArgs::default()).await;
    let mut answers = Vec::new();
    for _ in 0..20 {
        for service in ["", "weft.user.v1.UserService"] {
            if let Ok(status) = health(s.addr, service).await {
                answers.push((service, status));
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !answers.is_empty(),
        "the health service answered nothing while the probe was held"
    );
    assert!(
        answers
            .iter()
            .all(|(_, status)| *status != ServingStatus::Serving as i32),
        "SERVING before any probe passed: {answers:?}"
    );
    s.ready.store(true, Ordering::SeqCst);
    wait_health(s.addr, "", ServingStatus::Serving).await;
    wait_health(s.addr, "weft.user.v1.UserService", ServingStatus::Serving).await;
    s.shutdown.cancel();
}

#[tokio::test]
async fn shutdown_drains_in_flight_calls_and_reports_not_serving() {
    let s = spawn(ServerArgs::default()).await;
    wait_health(s.addr, "", ServingStatus::Serving).await;
    let ch = channel(s.addr).await;
    let mut client = UserServiceClient::new(ch.clone());
    let in_flight =
        tokio::spawn(async move { client.sign_up(signup("draining", 700, None)).await });
    let mut watcher = HealthClient::new(ch);
    let mut stream = watcher
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    // Stop only once the call is inside its handler.
    s.started.notified().await;
    s.shutdown.cancel();
    let done = in_flight.await.unwrap().unwrap();
    assert_eq!(
        done.into_inner().user.unwrap().name,
        "draining",
        "in-flight call completed"
    );
    let mut saw_not_serving = false;
    while let Ok(Some(update)) = stream.message().await {
        if update.status == ServingStatus::NotServing as i32 {
            saw_not_serving = true;
            break;
        }
    }
    assert!(saw_not_serving, "health reported NOT_SERVING during drain");
    drop(stream);
    drop(watcher);
    tokio::time::timeout(Duration::from_secs(10), s.task)
        .await
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(s.addr).await.is_err(),
        "listener closed"
    );
}

/// An admin server on a free port, ready while `ready` is set: its address.
async fn admin(ready: Arc<AtomicBool>) -> SocketAddr {
    let admin = AdminServer::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = admin.local_addr();
    tokio::spawn(admin.serve(ready, CancellationToken::new()));
    addr
}

#[tokio::test]
async fn admin_serves_rpc_metrics_and_readiness() {
    let s = spawn(ServerArgs::default()).await;
    let ready = Arc::new(AtomicBool::new(false));
    let admin_addr = admin(ready.clone()).await;
    let mut client = s.client().await;
    client.sign_up(signup("m", 0, None)).await.unwrap();
    let _ = client.get_user(GetUserRequest::default()).await;

    let metrics = http_get(admin_addr, "/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(
        metrics.contains(r#"rpc_server_duration_seconds_count{method="/weft.user.v1.UserService/SignUp",code="Ok"}"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"method="/weft.user.v1.UserService/GetUser",code="Unimplemented""#));
    assert!(
        http_get(admin_addr, "/readyz")
            .await
            .starts_with("HTTP/1.1 503")
    );
    ready.store(true, Ordering::SeqCst);
    assert!(
        http_get(admin_addr, "/readyz")
            .await
            .starts_with("HTTP/1.1 200")
    );
    assert!(
        http_get(admin_addr, "/nope")
            .await
            .starts_with("HTTP/1.1 404")
    );
}

#[tokio::test]
async fn made_up_paths_add_no_metric_series() {
    let s = spawn(ServerArgs::default()).await;
    let admin_addr = admin(Arc::new(AtomicBool::new(true))).await;
    let series = |metrics: &str| {
        metrics
            .lines()
            .filter(|l| l.starts_with("rpc_server_duration_seconds_count"))
            .count()
    };
    let mut grpc = tonic::client::Grpc::new(channel(s.addr).await);
    let mut call = async |path: String| {
        grpc.ready().await.unwrap();
        let codec = tonic_prost::ProstCodec::<GetUserRequest, GetUserResponse>::default();
        grpc.unary(
            Request::new(GetUserRequest::default()),
            path.parse().unwrap(),
            codec,
        )
        .await
    };
    // One call to a made-up path first, so its series exists before counting.
    assert_eq!(
        call("/warm.Up/Call".into()).await.unwrap_err().code(),
        Code::Unimplemented
    );
    let before = series(&http_get(admin_addr, "/metrics").await);
    for i in 0..1000 {
        let path = format!("/made.up{i}.Service/Method{i}");
        assert_eq!(call(path).await.unwrap_err().code(), Code::Unimplemented);
    }
    let metrics = http_get(admin_addr, "/metrics").await;
    assert_eq!(series(&metrics), before, "no new series");
    assert!(!metrics.contains("made.up"), "no made-up path in a label");
    assert!(
        metrics.contains(
            r#"rpc_server_duration_seconds_count{method="unknown",code="Unimplemented"}"#
        ),
        "{metrics}"
    );
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn reflection_v1_lists_every_service() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let s = spawn(ServerArgs::default()).await;
    let mut client = ServerReflectionClient::new(channel(s.addr).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer: {response:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    for want in [
        "weft.user.v1.UserService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
}

/// Health from a client on the loopback address `from`.
async fn health_from(from: Ipv4Addr, addr: SocketAddr) -> i32 {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .local_address(Some(from.into()))
        .connect()
        .await
        .unwrap();
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner()
        .status
}

#[tokio::test]
async fn slow_and_greedy_clients_are_cut_off_while_others_are_served() {
    let server = spawn(ServerArgs {
        conn: ConnArgs {
            max_connections_per_client: 3,
            header_timeout: Duration::from_secs(2),
        },
        ..Default::default()
    })
    .await;
    wait_health(server.addr, "", ServingStatus::Serving).await;
    let slow_client = Ipv4Addr::LOCALHOST;
    // Three connections that send half of the HTTP/2 preface, and then nothing.
    let mut slow = Vec::new();
    for _ in 0..3 {
        let mut conn = connect_from(slow_client, server.addr).await;
        conn.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        slow.push(conn);
    }
    // A fourth from the same address is over the cap: closed at once.
    let mut greedy = connect_from(slow_client, server.addr).await;
    closed_within(
        &mut greedy,
        Duration::from_secs(1),
        "the connection over the cap",
    )
    .await;
    // Meanwhile another client is served.
    assert_eq!(
        health_from(Ipv4Addr::new(127, 0, 0, 2), server.addr).await,
        ServingStatus::Serving as i32
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
        health_from(slow_client, server.addr).await,
        ServingStatus::Serving as i32
    );
    server.shutdown.cancel();
}
