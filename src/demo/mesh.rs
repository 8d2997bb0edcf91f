//! The demo's clients of the mesh (one channel per service, shared by every clone)
//! and what every call of the demo has in common: the password of the accounts it
//! makes and the bearer token on authenticated requests.

use tonic::transport::Channel;
use weft_proto::analytics::analytics_service_client::AnalyticsServiceClient;
use weft_proto::order::order_service_client::OrderServiceClient;
use weft_proto::user::user_service_client::UserServiceClient;

/// The password of every account the demo signs up.
pub(super) const PASSWORD: &str = "correct horse battery 9";

/// The services the demo talks to.
#[derive(Clone)]
pub(super) struct Mesh {
    pub(super) users: UserServiceClient<Channel>,
    pub(super) orders: OrderServiceClient<Channel>,
    pub(super) analytics: AnalyticsServiceClient<Channel>,
}

/// `message` with `token` as its bearer credentials.
pub(super) fn authed<T>(message: T, token: &str) -> anyhow::Result<tonic::Request<T>> {
    let mut req = tonic::Request::new(message);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    Ok(req)
}
