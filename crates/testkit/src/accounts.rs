//! Accounts on the user service as tests make them: signed up with [`PASSWORD`] and
//! logged in for a token.

use tonic::transport::Channel;
use weft_proto::user::user_service_client::UserServiceClient;
use weft_proto::user::{LoginRequest, SignUpRequest, SignupSource};

/// The password test accounts sign up with.
pub const PASSWORD: &str = "analytical engine 1843";

/// The plainest sign-up of `email`: named "Test User", from the API, with
/// [`PASSWORD`] and nothing optional.
pub fn sign_up_request(email: &str) -> SignUpRequest {
    SignUpRequest {
        email: email.into(),
        name: "Test User".into(),
        password: PASSWORD.into(),
        source: SignupSource::Api as i32,
        ..Default::default()
    }
}

/// Signs `request` up (its password [`PASSWORD`]) and logs in; returns (user id,
/// token).
pub async fn sign_up_and_login(
    users: &mut UserServiceClient<Channel>,
    request: SignUpRequest,
) -> (String, String) {
    let email = request.email.clone();
    let answer = users.sign_up(request).await.expect("the sign-up");
    let user = answer.into_inner().user.expect("the new user");
    (user.user_id, login(users, &email).await)
}

/// A fresh access token of `email`, logging in with [`PASSWORD`].
pub async fn login(users: &mut UserServiceClient<Channel>, email: &str) -> String {
    let request = LoginRequest {
        email: email.into(),
        password: PASSWORD.into(),
    };
    let answer = users.login(request).await.expect("the login");
    answer.into_inner().access_token
}
