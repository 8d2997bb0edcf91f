//! The events a user's changes publish, one builder per event type, each from the
//! stored user or the change and the request's context.

use weft_events::EventContext;
use weft_proto::common::EventMetadata;
use weft_proto::user::{
    ContactKind, ContactVerificationRequested, ContactVerified, UserRolesChanged, UserSignedUp,
    UserUpdated,
};

use crate::config::IDENTITY;
use crate::store::UserRecord;

fn metadata(ctx: &EventContext) -> Option<EventMetadata> {
    Some(ctx.metadata(IDENTITY.name, IDENTITY.version))
}

/// `UserSignedUp`: the new user as stored.
pub fn signed_up(user: &UserRecord, ctx: &EventContext) -> UserSignedUp {
    UserSignedUp {
        metadata: metadata(ctx),
        user_id: user.user_id.clone(),
        email: user.email.clone(),
        name: user.name.clone(),
        source: user.source,
        phone: user.phone.clone(),
        attributes: user.metadata.clone().into_iter().collect(),
    }
}

/// `UserUpdated`: the user after the change, naming the fields that `changed`.
pub fn updated(user: &UserRecord, changed: &[&str], ctx: &EventContext) -> UserUpdated {
    UserUpdated {
        metadata: metadata(ctx),
        user_id: user.user_id.clone(),
        changed_fields: changed.iter().map(|s| (*s).to_owned()).collect(),
        email: user.email.clone(),
        name: user.name.clone(),
        phone: user.phone.clone(),
    }
}

/// A contact of `user_id`: what kind, at which address.
#[derive(Debug, Clone, Copy)]
pub struct Contact<'a> {
    /// The user.
    pub user_id: &'a str,
    /// Email or phone.
    pub kind: ContactKind,
    /// The address or number.
    pub address: &'a str,
}

/// `ContactVerificationRequested`: `secret` to be sent to the contact, valid until
/// `expires_at` (µs).
pub fn verification_requested(
    contact: Contact<'_>,
    secret: String,
    expires_at: i64,
    ctx: &EventContext,
) -> ContactVerificationRequested {
    ContactVerificationRequested {
        metadata: metadata(ctx),
        user_id: contact.user_id.to_owned(),
        kind: contact.kind as i32,
        address: contact.address.to_owned(),
        secret,
        expire_time: Some(weft_events::db::timestamp(expires_at)),
    }
}

/// `ContactVerified`: the contact is proven its owner's.
pub fn verified(contact: Contact<'_>, ctx: &EventContext) -> ContactVerified {
    ContactVerified {
        metadata: metadata(ctx),
        user_id: contact.user_id.to_owned(),
        kind: contact.kind as i32,
        address: contact.address.to_owned(),
    }
}

/// `UserRolesChanged`: `user_id` now holds `roles`, after `actor` granted or
/// revoked the ones named. An operator's act, so it starts a trace of its own.
pub fn roles_changed(
    user_id: &str,
    roles: &[String],
    (granted, revoked): (Vec<String>, Vec<String>),
    actor: &str,
) -> UserRolesChanged {
    UserRolesChanged {
        metadata: metadata(&EventContext::root()),
        user_id: user_id.to_owned(),
        roles: roles.to_vec(),
        granted,
        revoked,
        actor: actor.to_owned(),
    }
}
