//! Reading one event for the projections: each event type the projections know has
//! its own [`Counted`] reader, found in one table ([`READERS`], held to the catalogue
//! by a test), which checks the event and says what it changes and its one-line
//! summary. An event that can never be counted is refused (permanently, so it goes
//! to the dead-letter topic).
//!
//! Summaries name users by id, never by email address or phone number, and a
//! verification's secret is never read.

use weft_events::DomainEvent;
use weft_events::consumer::{HandlerError, Received};
use weft_proto::common::Money;
use weft_proto::notification::{EmailSent, SmsSent};
use weft_proto::order::{
    OrderCancelled, OrderCreated, OrderDelivered, OrderKind, OrderShipped, PaymentFailed,
    PaymentProcessed,
};
use weft_proto::user::{
    ContactVerificationRequested, ContactVerified, SignupSource, UserRolesChanged, UserSignedUp,
    UserUpdated,
};

pub(super) fn permanent(msg: impl Into<String>) -> HandlerError {
    HandlerError::Permanent(msg.into())
}

fn required(value: &str, what: &str, event: &str) -> Result<(), HandlerError> {
    if value.trim().is_empty() {
        return Err(permanent(format!("{event} without {what}")));
    }
    Ok(())
}

/// What one event adds to the projections beyond the common counters.
pub(super) enum Change {
    Signup(String),
    Order(Money),
    Email,
    Sms,
    Nothing,
}

/// An event type the projections know: what one event of it changes, and its
/// one-line summary, once it is checked.
trait Counted: DomainEvent {
    fn count(self) -> Result<(Change, String), HandlerError>;
}

/// How analytics reads one event type.
type Reader = fn(&Received) -> Result<(Change, String), HandlerError>;

/// Decodes `event` as `E` and counts it.
fn read_as<E: Counted>(event: &Received) -> Result<(Change, String), HandlerError> {
    event.decode::<E>()?.count()
}

/// Every event type the projections know, with its reader.
const READERS: &[(&str, Reader)] = &[
    (UserSignedUp::TYPE, read_as::<UserSignedUp>),
    (UserUpdated::TYPE, read_as::<UserUpdated>),
    (UserRolesChanged::TYPE, read_as::<UserRolesChanged>),
    (
        ContactVerificationRequested::TYPE,
        read_as::<ContactVerificationRequested>,
    ),
    (ContactVerified::TYPE, read_as::<ContactVerified>),
    (OrderCreated::TYPE, read_as::<OrderCreated>),
    (PaymentProcessed::TYPE, read_as::<PaymentProcessed>),
    (PaymentFailed::TYPE, read_as::<PaymentFailed>),
    (OrderShipped::TYPE, read_as::<OrderShipped>),
    (OrderDelivered::TYPE, read_as::<OrderDelivered>),
    (OrderCancelled::TYPE, read_as::<OrderCancelled>),
    (EmailSent::TYPE, read_as::<EmailSent>),
    (SmsSent::TYPE, read_as::<SmsSent>),
];

/// Reads and checks `event`: what it changes and its one-line summary.
pub(super) fn read(event: &Received) -> Result<(Change, String), HandlerError> {
    let t = event.envelope.event_type.as_str();
    match READERS.iter().find(|(name, _)| *name == t) {
        Some((_, reader)) => reader(event),
        // Catalogued but newer than this projection: counted and listed only.
        None => Ok((
            Change::Nothing,
            t.rsplit('.').next().unwrap_or(t).to_owned(),
        )),
    }
}

impl Counted for UserSignedUp {
    fn count(self) -> Result<(Change, String), HandlerError> {
        required(&self.user_id, "a user_id", "UserSignedUp")?;
        required(&self.email, "an email", "UserSignedUp")?;
        let source = SignupSource::try_from(self.source)
            .unwrap_or(SignupSource::Unspecified)
            .as_str_name()
            .to_owned();
        // Summaries carry ids, never an address or a number (see the module docs).
        let summary = format!("signup of user {} ({source})", self.user_id);
        Ok((Change::Signup(source), summary))
    }
}

impl Counted for UserUpdated {
    fn count(self) -> Result<(Change, String), HandlerError> {
        required(&self.user_id, "a user_id", "UserUpdated")?;
        let summary = format!(
            "profile of {} changed: {}",
            self.user_id,
            self.changed_fields.join(", ")
        );
        Ok((Change::Nothing, summary))
    }
}

impl Counted for UserRolesChanged {
    fn count(self) -> Result<(Change, String), HandlerError> {
        let summary = format!(
            "roles of user {} now {}",
            self.user_id,
            self.roles.join(", ")
        );
        Ok((Change::Nothing, summary))
    }
}

impl Counted for ContactVerificationRequested {
    fn count(self) -> Result<(Change, String), HandlerError> {
        // Never the secret, nor the address.
        let summary = format!("verification sent to user {}", self.user_id);
        Ok((Change::Nothing, summary))
    }
}

impl Counted for ContactVerified {
    fn count(self) -> Result<(Change, String), HandlerError> {
        let summary = format!("contact of user {} verified", self.user_id);
        Ok((Change::Nothing, summary))
    }
}

impl Counted for OrderCreated {
    fn count(self) -> Result<(Change, String), HandlerError> {
        required(&self.order_id, "an order_id", "OrderCreated")?;
        required(&self.user_id, "a user_id", "OrderCreated")?;
        let total = self
            .total
            .filter(|m| m.currency_code.len() == 3)
            .ok_or_else(|| permanent("OrderCreated without a total"))?;
        if (total.units > 0 && total.nanos < 0)
            || (total.units < 0 && total.nanos > 0)
            || total.nanos.abs() >= 1_000_000_000
        {
            return Err(permanent("OrderCreated with a malformed total"));
        }
        let welcome = if self.kind == OrderKind::Welcome as i32 {
            " (welcome)"
        } else {
            ""
        };
        let summary = format!("order {} {total}{welcome}", self.order_id);
        Ok((Change::Order(total), summary))
    }
}

impl Counted for PaymentProcessed {
    fn count(self) -> Result<(Change, String), HandlerError> {
        let amount = self.amount.map(|m| m.to_string()).unwrap_or_default();
        let summary = format!("payment {amount} for order {}", self.order_id);
        Ok((Change::Nothing, summary))
    }
}

impl Counted for PaymentFailed {
    fn count(self) -> Result<(Change, String), HandlerError> {
        let summary = format!(
            "payment failed for order {}: {}",
            self.order_id, self.reason
        );
        Ok((Change::Nothing, summary))
    }
}

impl Counted for OrderShipped {
    fn count(self) -> Result<(Change, String), HandlerError> {
        let summary = format!("order {} shipped with {}", self.order_id, self.carrier);
        Ok((Change::Nothing, summary))
    }
}

impl Counted for OrderDelivered {
    fn count(self) -> Result<(Change, String), HandlerError> {
        Ok((
            Change::Nothing,
            format!("order {} delivered", self.order_id),
        ))
    }
}

impl Counted for OrderCancelled {
    fn count(self) -> Result<(Change, String), HandlerError> {
        let summary = format!("order {} cancelled: {}", self.order_id, self.reason);
        Ok((Change::Nothing, summary))
    }
}

impl Counted for EmailSent {
    fn count(self) -> Result<(Change, String), HandlerError> {
        required(&self.notification_id, "a notification_id", "EmailSent")?;
        let summary = format!("email {} to user {}", self.template, self.user_id);
        Ok((Change::Email, summary))
    }
}

impl Counted for SmsSent {
    fn count(self) -> Result<(Change, String), HandlerError> {
        required(&self.notification_id, "a notification_id", "SmsSent")?;
        let summary = format!("text {} to user {}", self.template, self.user_id);
        Ok((Change::Sms, summary))
    }
}

#[cfg(test)]
mod tests {
    use super::READERS;

    #[test]
    fn every_catalogued_event_type_has_one_reader() {
        let mut read: Vec<&str> = READERS.iter().map(|(t, _)| *t).collect();
        let mut catalogued: Vec<&str> = weft_events::catalog::EVENT_TYPES
            .iter()
            .map(|(t, _)| *t)
            .collect();
        read.sort_unstable();
        catalogued.sort_unstable();
        assert_eq!(read, catalogued);
    }
}
