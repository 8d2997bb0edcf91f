//! Accounts on the user service as tests make them: signed up with [`PASSWORD`] and
//! logged in for a token.

use tonic::transport::Channel;
use weft_proto::user::user_service_client::UserServiceClient;
use weft_proto::user::{LoginRequest, SignUpRequest};

/// The password test accounts sign up with.
pub const PASSWORD: &str = "analytical engine 1843";

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
