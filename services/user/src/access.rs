//! Who may do what in the user service — the one place its RPCs ask.
//!
//! | action | customer | staff | admin |
//! |---|---|---|---|
//! | read a user | themselves | anyone | anyone |
//! | change a user | themselves | themselves | anyone |
//! | verify a phone, ask for a new verification | themselves | themselves | themselves |
//!
//! A user the caller may not read is `NOT_FOUND` (its existence does not leak); one it
//! may read but not change is `PERMISSION_DENIED`.

use weft_auth::Caller;

use crate::domain::UserError;

/// What a caller wants to do with a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// GetUser.
    Read,
    /// UpdateUser.
    Change,
    /// VerifyPhone, ResendVerification: only the owner holds the message.
    Verify,
}

/// `Ok` when `caller` may do `action` to the user `user_id`.
pub fn check(caller: &Caller, action: Action, user_id: &str) -> Result<(), UserError> {
    let allowed = match action {
        Action::Read => caller.may_read(user_id),
        Action::Change => caller.is(user_id) || caller.is_admin(),
        Action::Verify => caller.is(user_id),
    };
    if allowed {
        Ok(())
    } else if caller.may_read(user_id) {
        Err(UserError::Denied)
    } else {
        Err(UserError::NotFound)
    }
}
