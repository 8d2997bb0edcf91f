//! Who may do what in the order service — the one place its RPCs ask.
//!
//! | action | customer | staff, admin |
//! |---|---|---|
//! | create an order | for themselves | for themselves |
//! | read, list | their own | anyone's |
//! | pay | their own | their own |
//! | cancel (before shipping) | their own | anyone's |
//! | ship, deliver | — | anyone's |
//! | read the catalogue | anyone, anonymous too | anyone |
//! | change the catalogue | — | yes |
//!
//! An order the caller may not read is `NOT_FOUND` (its existence does not leak); one
//! it may read but not act on is `PERMISSION_DENIED`.

use weft_auth::Caller;

pub use crate::domain::Action;
use crate::domain::OrderError;

/// `Ok` when `caller` may do `action` to an order of `owner`.
pub fn check(caller: &Caller, action: Action, owner: &str) -> Result<(), OrderError> {
    let own = caller.is(owner);
    let allowed = match action {
        Action::Read => caller.may_read(owner),
        Action::Pay => own,
        Action::Cancel => own || caller.is_staff(),
        Action::Ship | Action::Deliver => caller.is_staff(),
    };
    if allowed {
        Ok(())
    } else if caller.may_read(owner) {
        Err(OrderError::Denied(match action {
            Action::Ship | Action::Deliver => "only staff ship and deliver orders",
            Action::Pay => "only the customer pays an order",
            Action::Read | Action::Cancel => "not allowed",
        }))
    } else {
        Err(OrderError::NotFound)
    }
}

/// `Ok` when `caller` may change the catalogue.
pub fn check_catalogue(caller: &Caller) -> Result<(), OrderError> {
    if caller.is_staff() {
        Ok(())
    } else {
        Err(OrderError::Denied("only staff change the catalogue"))
    }
}
