//! The real grpcurl against a server built with the kit's bootstrap: reflection lists
//! the services, health answers SERVING, and a call encodes JSON through reflection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use weft_kit::config::ServerArgs;
use weft_testkit::tools;

mod support;

async fn grpcurl(args: &[&str]) -> (bool, String) {
    let mut command = tools::tool("grpcurl");
    command.args(args);
    tools::run_async(command).await
}

fn target(addr: SocketAddr) -> String {
    addr.to_string()
}

#[tokio::test]
async fn grpcurl_lists_services_through_reflection() {
    let s = support::spawn(ServerArgs::default()).await;
    let (ok, out) = grpcurl(&["-plaintext", &target(s.addr), "list"]).await;
    assert!(ok, "{out}");
    for service in [
        "weft.user.v1.UserService",
        "grpc.health.v1.Health",
        // grpcurl 1.8 speaks reflection v1alpha; v1 is checked in server.rs.
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(
            out.lines().any(|l| l.trim() == service),
            "{service} missing from:\n{out}"
        );
    }
    let (ok, out) = grpcurl(&[
        "-plaintext",
        &target(s.addr),
        "describe",
        "weft.user.v1.UserService",
    ])
    .await;
    assert!(ok, "{out}");
    assert!(out.contains("rpc SignUp"), "{out}");
}

#[tokio::test]
async fn grpcurl_health_check_is_serving() {
    let s = support::spawn(ServerArgs::default()).await;
    let addr = target(s.addr);
    let body = weft_testkit::eventually(
        "SERVING via grpcurl",
        std::time::Duration::from_secs(10),
        || {
            let addr = addr.clone();
            async move {
                let (ok, out) = grpcurl(&[
                    "-plaintext",
                    "-d",
                    r#"{"service":""}"#,
                    &addr,
                    "grpc.health.v1.Health/Check",
                ])
                .await;
                (ok && out.contains("SERVING")).then_some(out)
            }
        },
    )
    .await;
    assert!(body.contains(r#""status": "SERVING""#), "{body}");
}

#[tokio::test]
async fn grpcurl_calls_with_json_and_sees_clear_errors() {
    let s = support::spawn(ServerArgs::default()).await;
    let addr = target(s.addr);
    let (ok, out) = grpcurl(&[
        "-plaintext",
        "-d",
        r#"{"name":"Ada"}"#,
        &addr,
        "weft.user.v1.UserService/SignUp",
    ])
    .await;
    assert!(ok, "{out}");
    assert!(out.contains(r#""name": "Ada""#), "{out}");

    // A field of the wrong type is refused by the client before it is sent.
    let (ok, out) = grpcurl(&[
        "-plaintext",
        "-d",
        r#"{"name":42}"#,
        &addr,
        "weft.user.v1.UserService/SignUp",
    ])
    .await;
    assert!(!ok, "{out}");
    // An unknown method is UNIMPLEMENTED... or unknown to reflection.
    let (ok, out) = grpcurl(&[
        "-plaintext",
        "-d",
        "{}",
        &addr,
        "weft.user.v1.UserService/Teleport",
    ])
    .await;
    assert!(!ok && out.contains("Teleport"), "{out}");
}
