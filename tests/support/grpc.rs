//! The gRPC steps tests and benchmarks share, against a mesh on loopback: a channel,
//! a bearer token on a request, the analytics figures, health, and accounts signed up
//! with [`PASSWORD`] and logged in.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use weft_proto::analytics::analytics_service_client::AnalyticsServiceClient;
use weft_proto::analytics::{GetMetricsRequest, Metrics};
use weft_proto::user::user_service_client::UserServiceClient;
use weft_proto::user::{LoginRequest, LoginResponse, SignUpRequest, SignupSource};

pub use super::PASSWORD;

/// A connected channel to `127.0.0.1:port`.
pub async fn channel(port: u16) -> Channel {
    let uri = format!("http://127.0.0.1:{port}").parse().unwrap();
    Channel::builder(uri).connect().await.unwrap()
}

/// `message` with `authorization: Bearer <token>`.
pub fn authed<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

/// The analytics service's metrics now, over `channel`.
pub async fn metrics_on(channel: Channel) -> Metrics {
    let answer = AnalyticsServiceClient::new(channel)
        .get_metrics(GetMetricsRequest {})
        .await
        .unwrap();
    answer.into_inner().metrics.unwrap()
}

/// The analytics service's metrics now.
pub async fn metrics(port: u16) -> Metrics {
    metrics_on(channel(port).await).await
}

/// True when the gRPC server on `port` answers its health check with SERVING within
/// half a second of connecting; false while it is down or not yet serving.
pub async fn serving(port: u16) -> bool {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    let endpoint = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect_timeout(Duration::from_millis(500));
    let Ok(channel) = endpoint.connect().await else {
        return false;
    };
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await;
    answer.is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32)
}

/// A client of the user service on `port`.
pub async fn users(port: u16) -> UserServiceClient<Channel> {
    UserServiceClient::new(channel(port).await)
}

/// The sign-up of `email`, named `name`, from `source`, with [`PASSWORD`].
pub fn sign_up_request(email: &str, name: &str, source: SignupSource) -> SignUpRequest {
    SignUpRequest {
        email: email.into(),
        name: name.into(),
        password: PASSWORD.into(),
        source: source as i32,
        ..Default::default()
    }
}

/// Signs `request` up through the user service on `port`, asserting it succeeded.
pub async fn sign_up(port: u16, request: SignUpRequest) {
    users(port).await.sign_up(request).await.unwrap();
}

/// Logs `email` in with [`PASSWORD`] through the user service on `port`.
pub async fn login(port: u16, email: &str) -> LoginResponse {
    let request = LoginRequest {
        email: email.into(),
        password: PASSWORD.into(),
    };
    users(port).await.login(request).await.unwrap().into_inner()
}

/// Signs `request` up through `clients`, starting with the one at `first` and going
/// round them while calls fail (every 100 ms, 300 attempts at most). AlreadyExists
/// after a failed attempt means an earlier attempt got through.
pub async fn sign_up_retrying(
    clients: &[UserServiceClient<Channel>],
    first: usize,
    request: SignUpRequest,
) {
    for attempt in 0..300 {
        let mut client = clients[(first + attempt) % clients.len()].clone();
        match client.sign_up(request.clone()).await {
            Ok(_) => return,
            Err(s) if attempt > 0 && s.code() == tonic::Code::AlreadyExists => return,
            Err(s) if attempt == 299 => {
                panic!("sign-up {} kept failing: {s}", request.email)
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
