//! Test harness of the gateway: a real gRPC server of the conformance contract
//! (`tests/proto/weft/conformance/v1/echo.proto`) that answers with what it received,
//! a user service that publishes a test key's JWKS, and the gateway itself, started
//! in-process on free ports with the conformance descriptor set.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, ServiceDescriptor, Value};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic::{Request, Response, Status};
use weft_auth::{Issuer, SigningKeys, TokenConfig};
use weft_gateway::upstream::RawCodec;
use weft_proto::user::user_service_server::{UserService, UserServiceServer};
use weft_proto::user::*;

pub const ECHO: &str = "weft.conformance.v1.EchoService";

/// The conformance contract, compiled with protox (imports included).
pub fn descriptor_set() -> Vec<u8> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut compiler =
        protox::Compiler::new([here.join("tests/proto"), here.join("../proto")]).unwrap();
    compiler.include_imports(true);
    compiler
        .open_files(["weft/conformance/v1/echo.proto"])
        .unwrap();
    compiler.encode_file_descriptor_set()
}

/// Answers every EchoService call with its request (see echo.proto for Fail, Slow,
/// Watch and UpdateThing; a Watch with a negative count sends one thing and stays
/// open).
#[derive(Clone)]
pub struct Echo {
    service: ServiceDescriptor,
    slow_in_flight: Arc<AtomicUsize>,
}

impl NamedService for Echo {
    const NAME: &'static str = ECHO;
}

fn thing_of(
    method: &prost_reflect::MethodDescriptor,
    req: &Request<Bytes>,
) -> Result<DynamicMessage, Status> {
    let input = DynamicMessage::decode(method.input(), req.get_ref().clone())
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    let mut thing = if method.name() == "UpdateThing" {
        let mut thing = match input.get_field_by_name("thing").map(|v| v.into_owned()) {
            Some(Value::Message(m)) => m,
            _ => DynamicMessage::new(method.output()),
        };
        // The mask's paths come back as tags.
        if let Some(Value::Message(mask)) = input
            .get_field_by_name("update_mask")
            .map(|v| v.into_owned())
            && let Some(paths) = mask.get_field_by_name("paths")
        {
            thing.set_field_by_name("tags", paths.into_owned());
        }
        thing
    } else {
        input
    };
    let mut seen = std::collections::HashMap::new();
    for kv in req.metadata().iter() {
        if let tonic::metadata::KeyAndValueRef::Ascii(k, v) = kv {
            seen.insert(
                prost_reflect::MapKey::String(k.as_str().to_owned()),
                Value::String(v.to_str().unwrap_or_default().to_owned()),
            );
        }
    }
    thing.set_field_by_name("metadata_seen", Value::Map(seen));
    Ok(thing)
}

fn field_i32(thing: &DynamicMessage, name: &str) -> i32 {
    thing
        .get_field_by_name(name)
        .and_then(|v| v.as_i32())
        .unwrap_or_default()
}

/// Counts a call in progress until dropped (a cancelled call counts down too).
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Clone)]
struct Unary(prost_reflect::MethodDescriptor, Arc<AtomicUsize>);

impl tonic::server::UnaryService<Bytes> for Unary {
    type Response = Bytes;
    type Future = BoxFuture<'static, Result<Response<Bytes>, Status>>;

    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        let method = self.0.clone();
        let slow_in_flight = self.1.clone();
        Box::pin(async move {
            let thing = thing_of(&method, &req)?;
            match method.name() {
                "Fail" => {
                    let code = tonic::Code::from_i32(field_i32(&thing, "count"));
                    let message = thing
                        .get_field_by_name("name")
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default();
                    // INVALID_ARGUMENT carries a BadRequest detail, to see details cross.
                    return Err(if code == tonic::Code::InvalidArgument {
                        weft_kit::status::invalid_argument(&[
                            weft_kit::status::FieldViolation::new("name", message),
                        ])
                    } else {
                        Status::new(code, message)
                    });
                }
                "Slow" => {
                    let ms = field_i32(&thing, "count").max(0) as u64;
                    let _counted = InFlight::enter(&slow_in_flight);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                _ => {}
            }
            Ok(Response::new(Bytes::from(thing.encode_to_vec())))
        })
    }
}

#[derive(Clone)]
struct Streaming(prost_reflect::MethodDescriptor);

impl tonic::server::ServerStreamingService<Bytes> for Streaming {
    type Response = Bytes;
    type ResponseStream = BoxStream<'static, Result<Bytes, Status>>;
    type Future = BoxFuture<'static, Result<Response<Self::ResponseStream>, Status>>;

    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        let method = self.0.clone();
        Box::pin(async move {
            let thing = thing_of(&method, &req)?;
            if field_i32(&thing, "count") < 0 {
                // A negative count: one thing, then the stream stays open.
                let first = futures::stream::iter([Ok(Bytes::from(thing.encode_to_vec()))]);
                let stream: Self::ResponseStream =
                    Box::pin(futures::StreamExt::chain(first, futures::stream::pending()));
                return Ok(Response::new(stream));
            }
            let count = field_i32(&thing, "count").max(0);
            let fail = thing
                .get_field_by_name("flag")
                .and_then(|v| v.as_bool())
                .unwrap_or_default();
            let mut items: Vec<Result<Bytes, Status>> = (0..count)
                .map(|i| {
                    let mut t = thing.clone();
                    t.set_field_by_name("count", Value::I32(i));
                    Ok(Bytes::from(t.encode_to_vec()))
                })
                .collect();
            if fail {
                items.push(Err(Status::aborted("the watch broke")));
            }
            let stream: Self::ResponseStream = Box::pin(futures::stream::iter(items));
            Ok(Response::new(stream))
        })
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for Echo {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let name = req
            .uri()
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let method = self.service.methods().find(|m| m.name() == name);
        let slow_in_flight = self.slow_in_flight.clone();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(RawCodec);
            Ok(match method {
                None => Status::unimplemented(name).into_http(),
                Some(m) if m.is_server_streaming() => {
                    grpc.server_streaming(Streaming(m), req).await
                }
                Some(m) => grpc.unary(Unary(m, slow_in_flight), req).await,
            })
        })
    }
}

/// Publishes the test key as the user service's JWKS; nothing else.
struct Keys(Arc<SigningKeys>);

#[tonic::async_trait]
impl UserService for Keys {
    async fn sign_up(&self, _: Request<SignUpRequest>) -> Result<Response<SignUpResponse>, Status> {
        Err(Status::unimplemented("test key server"))
    }
    async fn login(&self, _: Request<LoginRequest>) -> Result<Response<LoginResponse>, Status> {
        Err(Status::unimplemented("test key server"))
    }
    async fn get_user(
        &self,
        _: Request<GetUserRequest>,
    ) -> Result<Response<GetUserResponse>, Status> {
        Err(Status::unimplemented("test key server"))
    }
    async fn update_user(
        &self,
        _: Request<UpdateUserRequest>,
    ) -> Result<Response<UpdateUserResponse>, Status> {
        Err(Status::unimplemented("test key server"))
    }
    async fn verify_email(
        &self,
        _: Request<VerifyEmailRequest>,
    ) -> Result<Response<VerifyEmailResponse>, Status> {
        Err(Status::unimplemented("test key server"))
    }
    async fn verify_phone(
        &self,
        _: Request<VerifyPhoneRequest>,
    ) -> Result<Response<VerifyPhoneResponse>, Status> {
        Err(Status::unimplemented("test key server"))
    }
    async fn resend_verification(
        &self,
        _: Request<ResendVerificationRequest>,
    ) -> Result<Response<ResendVerificationResponse>, Status> {
        Err(Status::unimplemented("test key server"))
    }
    async fn get_jwks(
        &self,
        _: Request<GetJwksRequest>,
    ) -> Result<Response<GetJwksResponse>, Status> {
        Ok(Response::new(GetJwksResponse {
            keys: vec![self.0.jwk()],
        }))
    }
}

/// Serves the echo service and the key server on `listener` until `stop`; returns the
/// number of `Slow` calls the echo server is in the middle of.
pub fn serve_echo(
    listener: TcpListener,
    keys: Arc<SigningKeys>,
    stop: CancellationToken,
) -> Arc<AtomicUsize> {
    let pool = DescriptorPool::decode(descriptor_set().as_slice()).unwrap();
    let slow_in_flight = Arc::new(AtomicUsize::new(0));
    let echo = Echo {
        service: pool.get_service_by_name(ECHO).unwrap(),
        slow_in_flight: slow_in_flight.clone(),
    };
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(echo)
            .add_service(UserServiceServer::new(Keys(keys)))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop.cancelled_owned()),
    );
    slow_in_flight
}

/// A running gateway in front of the echo server.
pub struct Harness {
    /// `http://127.0.0.1:port` of the gateway.
    pub base: String,
    /// Where the echo server listens.
    pub echo_addr: SocketAddr,
    /// `http://127.0.0.1:port` of the gateway's admin server.
    pub admin: String,
    /// Issues tokens the gateway accepts.
    pub issuer: Issuer,
    /// HTTP client.
    pub http: reqwest::Client,
    /// How many `Slow` calls the echo server is in the middle of.
    pub slow_in_flight: Arc<AtomicUsize>,
    stop: CancellationToken,
    _descriptors: tempfile::NamedTempFile,
}

impl Harness {
    /// Echo server and gateway (with `extra` gateway flags) on free ports; returns once
    /// the gateway has the test key.
    pub async fn start(extra: &[&str]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = listener.local_addr().unwrap();
        Self::start_with(listener, echo_addr, extra).await
    }

    /// Like [`Self::start`], but the echo service's upstream is `echo_addr`, which
    /// may have nothing listening (the key server still runs on `listener`).
    pub async fn start_with(listener: TcpListener, echo_addr: SocketAddr, extra: &[&str]) -> Self {
        // As `weft_gateway::run` does: the tracer and the W3C propagator.
        std::mem::forget(
            weft_kit::telemetry::init("weft-gateway-test", &Default::default()).unwrap(),
        );
        let keys = Arc::new(SigningKeys::ephemeral().unwrap());
        let stop = CancellationToken::new();
        let key_addr = listener.local_addr().unwrap();
        let slow_in_flight = serve_echo(listener, keys.clone(), stop.clone());

        let descriptors = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(descriptors.path(), descriptor_set()).unwrap();
        let mut args = vec![
            "weft-gateway".to_owned(),
            "--http-addr=127.0.0.1:0".into(),
            "--admin-addr=127.0.0.1:0".into(),
            format!("--descriptor-set={}", descriptors.path().display()),
            format!("--upstream={ECHO}=http://{echo_addr}"),
            format!("--user-service-url=http://{key_addr}"),
            "--jwks-refresh=1s".into(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let config = <weft_gateway::Config as clap::Parser>::try_parse_from(args).unwrap();
        let app = weft_gateway::App::build(config).await.unwrap();
        let base = format!("http://{}", app.http_addr());
        let admin = format!("http://{}", app.admin_addr());
        tokio::spawn(app.run_until_stopped(stop.clone()));
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::new();
        weft_testkit::eventually(
            "the gateway to load the test key",
            Duration::from_secs(20),
            || {
                let (http, admin) = (http.clone(), admin.clone());
                async move {
                    let r = http.get(format!("{admin}/readyz")).send().await.ok()?;
                    r.status().is_success().then_some(())
                }
            },
        )
        .await;
        Self {
            base,
            echo_addr,
            admin,
            issuer: Issuer::new(keys, TokenConfig::default()),
            http,
            slow_in_flight,
            stop,
            _descriptors: descriptors,
        }
    }

    /// A valid bearer token.
    pub fn token(&self) -> String {
        self.issuer.issue("user-1", &[]).unwrap().0
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET path` with `token` as the bearer.
    pub async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        let request = self.http.get(self.url(path)).bearer_auth(token);
        request.send().await.unwrap()
    }

    /// `POST path` with `token` as the bearer and `body` declared as `content_type`.
    pub async fn post(
        &self,
        path: &str,
        token: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let request = self.http.post(self.url(path)).bearer_auth(token);
        let request = request.header("content-type", content_type).body(body);
        request.send().await.unwrap()
    }

    /// The gateway's Prometheus text from its admin port.
    pub async fn metrics(&self) -> String {
        let answer = self.http.get(format!("{}/metrics", self.admin)).send();
        answer.await.unwrap().text().await.unwrap()
    }
}

/// An answer's status, headers and body: its JSON, or its text as a JSON string when
/// it is not JSON.
pub async fn json_of(
    resp: reqwest::Response,
) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, headers, body)
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
