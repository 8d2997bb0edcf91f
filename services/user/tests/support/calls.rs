//! UserService reads and updates as rows of a table name them ([`Rpc`]): each with its
//! request, made as a given caller by [`Rpc::send`], which answers with the user.

use tonic::transport::Channel;
use weft_proto::user::user_service_client::UserServiceClient;
use weft_proto::user::*;
use weft_testkit::Auth;

/// One UserService call about a user, and its request.
#[derive(Clone, Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "a row's call, made once: its size does not matter"
)]
pub enum Rpc {
    GetUser(GetUserRequest),
    UpdateUser(UpdateUserRequest),
}

impl Rpc {
    /// `GetUser` of `user_id`.
    pub fn get_user(user_id: &str) -> Self {
        Self::GetUser(GetUserRequest {
            user_id: user_id.into(),
        })
    }

    /// Makes the call on `users` with the credentials `auth`; the user it answers with.
    pub async fn send(
        self,
        users: &mut UserServiceClient<Channel>,
        auth: Auth<'_>,
    ) -> Result<User, tonic::Status> {
        let user = match self {
            Self::GetUser(r) => users.get_user(auth.request(r)).await?.into_inner().user,
            Self::UpdateUser(r) => users.update_user(auth.request(r)).await?.into_inner().user,
        };
        Ok(user.expect("the call's user"))
    }
}
