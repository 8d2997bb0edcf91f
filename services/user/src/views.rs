//! The API views of stored users: what a caller is shown (never the hash).

use weft_events::db::timestamp;
use weft_proto::user::User;

use crate::store::UserRecord;

/// The API view of a stored user (never the hash).
pub fn to_proto(u: &UserRecord) -> User {
    User {
        user_id: u.user_id.clone(),
        email: u.email.clone(),
        name: u.name.clone(),
        phone: u.phone.clone(),
        source: u.source,
        roles: u.roles.clone(),
        metadata: u.metadata.clone().into_iter().collect(),
        create_time: Some(timestamp(u.created_at)),
        update_time: Some(timestamp(u.updated_at)),
        email_verified: u.email_verified,
        phone_verified: u.phone_verified,
    }
}
