//! A stand-in user service served by the kit's bootstrap, shared by the kit's
//! integration tests. The stack around it is what the tests examine.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use weft_kit::config::ServerArgs;
use weft_kit::grpc::GrpcServer;
use weft_proto::user::user_service_client::UserServiceClient;
use weft_proto::user::user_service_server::{UserService, UserServiceServer};
use weft_proto::user::*;

pub struct StandIn {
    /// Notified when a sign-up handler starts running.
    pub started: Arc<tokio::sync::Notify>,
}

#[tonic::async_trait]
impl UserService for StandIn {
    async fn sign_up(
        &self,
        req: Request<SignUpRequest>,
    ) -> Result<Response<SignUpResponse>, Status> {
        let delay = req
            .metadata()
            .get("x-test-delay-ms")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(0);
        self.started.notify_one();
        tokio::time::sleep(Duration::from_millis(delay)).await;
        Ok(Response::new(SignUpResponse {
            user: Some(User {
                name: req.into_inner().name,
                ..Default::default()
            }),
        }))
    }
    async fn login(&self, _: Request<LoginRequest>) -> Result<Response<LoginResponse>, Status> {
        Err(weft_kit::status::internal(&std::io::Error::other(
            "secret /var/lib/weft/user.db locked",
        )))
    }
    async fn get_user(
        &self,
        _: Request<GetUserRequest>,
    ) -> Result<Response<GetUserResponse>, Status> {
        Err(Status::unimplemented("stand-in"))
    }
    async fn update_user(
        &self,
        _: Request<UpdateUserRequest>,
    ) -> Result<Response<UpdateUserResponse>, Status> {
        Err(Status::unimplemented("stand-in"))
    }
    async fn verify_email(
        &self,
        _: Request<VerifyEmailRequest>,
    ) -> Result<Response<VerifyEmailResponse>, Status> {
        Err(Status::unimplemented("stand-in"))
    }
    async fn verify_phone(
        &self,
        _: Request<VerifyPhoneRequest>,
    ) -> Result<Response<VerifyPhoneResponse>, Status> {
        Err(Status::unimplemented("stand-in"))
    }
    async fn resend_verification(
        &self,
        _: Request<ResendVerificationRequest>,
    ) -> Result<Response<ResendVerificationResponse>, Status> {
        Err(Status::unimplemented("stand-in"))
    }
    async fn get_jwks(
        &self,
        _: Request<GetJwksRequest>,
    ) -> Result<Response<GetJwksResponse>, Status> {
        Ok(Response::new(GetJwksResponse::default()))
    }
}

pub struct Running {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub ready: Arc<AtomicBool>,
    pub started: Arc<tokio::sync::Notify>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// A user service client on a new connection to the stand-in.
    pub async fn client(&self) -> UserServiceClient<Channel> {
        UserServiceClient::new(channel(self.addr).await)
    }
}

/// The default server arguments with `change` applied.
pub fn args(change: impl FnOnce(&mut ServerArgs)) -> ServerArgs {
    let mut args = ServerArgs::default();
    change(&mut args);
    args
}

/// The stand-in served with a dependency that is up while `ready` is set and down
/// otherwise.
pub async fn spawn(args: ServerArgs) -> Running {
    spawn_probed(args, false).await
}

/// The stand-in served with a dependency whose probe does not answer until `ready`
/// is set (it starts unset), like a broker still being connected to.
pub async fn spawn_held(args: ServerArgs) -> Running {
    spawn_probed(args, true).await
}

async fn spawn_probed(args: ServerArgs, held: bool) -> Running {
    let server = GrpcServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        args,
        weft_proto::DESCRIPTOR_SET,
    )
    .await
    .unwrap();
    let addr = server.local_addr();
    let limit = server.max_message_bytes();
    let ready = Arc::new(AtomicBool::new(!held));
    let probe_flag = ready.clone();
    let readiness = server.readiness(&["weft.user.v1.UserService"]).with_probe(
        "stand-in dependency",
        move || {
            let flag = probe_flag.clone();
            async move {
                while held && !flag.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                if flag.load(Ordering::SeqCst) {
                    Ok(())
                } else {
                    Err("down".to_owned())
                }
            }
        },
    );
    let started = Arc::new(tokio::sync::Notify::new());
    let svc = UserServiceServer::new(StandIn {
        started: started.clone(),
    })
    .max_decoding_message_size(limit)
    .max_encoding_message_size(limit);
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        server
            .serve(Routes::new(svc), readiness, token)
            .await
            .unwrap();
    });
    Running {
        addr,
        shutdown,
        ready,
        started,
        task,
    }
}

pub async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}
