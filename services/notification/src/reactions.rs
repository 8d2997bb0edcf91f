//! What the notification service does with each event: remember contacts and plan
//! notifications, inside the consumer's transaction (so a redelivered event finds its
//! inbox row and plans nothing twice; the unique (event, template, channel) index is
//! the second guard). Delivery happens later, in [`crate::delivery`], so a slow or
//! failing transport never holds up the consumer.
//!
//! Content that can never become a message (no user id, an email without `@`, an
//! order without items or total) is a permanent error: the record goes to the
//! dead-letter topic.

use serde::Serialize;
use sqlx::AnyConnection;
use weft_events::consumer::{Handler, HandlerError, Projection, Received, Scope};
use weft_events::db::now_micros;
use weft_proto::common::Money;
use weft_proto::notification::Channel;
use weft_proto::order::{OrderCreated, OrderShipped};
use weft_proto::user::{
    ContactKind, ContactVerificationRequested, ContactVerified, UserSignedUp, UserUpdated,
};

use crate::store::{self, Contact, NotificationRow};
use crate::templates::{ORDER_CONFIRMATION, ORDER_SHIPPED, VERIFY_EMAIL, VERIFY_PHONE, WELCOME};

fn permanent(msg: impl Into<String>) -> HandlerError {
    HandlerError::Permanent(msg.into())
}

fn user_id(id: &str, event: &str) -> Result<String, HandlerError> {
    let id = id.trim();
    if id.is_empty() || id.len() > 64 {
        return Err(permanent(format!("{event} without a usable user_id")));
    }
    Ok(id.to_owned())
}

/// Plans `row` with one statement (see [`Confirmation`] for many at once).
async fn plan(tx: &mut AnyConnection, row: NotificationRow) -> Result<(), HandlerError> {
    if store::plan(tx, &row).await? {
        count_planned(&row);
    }
    Ok(())
}

/// The notification of `event` to plan: `template` on `channel` to `user_id` (at
/// `recipient`, or the user's address when empty), filled in with `context`.
fn notification(
    event: &Received,
    user_id: &str,
    channel: Channel,
    template: &str,
    recipient: &str,
    context: &impl Serialize,
) -> Result<NotificationRow, HandlerError> {
    let context =
        serde_json::to_string(context).map_err(|e| permanent(format!("template values: {e}")))?;
    Ok(NotificationRow {
        id: uuid::Uuid::now_v7().to_string(),
        user_id: user_id.to_owned(),
        channel,
        template: template.to_owned(),
        trigger_event_id: event.envelope.id.clone(),
        context,
        recipient: recipient.to_owned(),
        subject: String::new(),
        status: weft_proto::notification::DeliveryStatus::Pending,
        attempts: 0,
        last_error: None,
        created_at: now_micros(),
        sent_at: None,
    })
}

fn count_planned(row: &NotificationRow) {
    metrics::counter!("notifications_planned_total", "template" => row.template.clone(), "channel" => row.channel.as_str_name())
        .increment(1);
}

/// `UserSignedUp`: remember the contact, plan the welcome email.
pub struct Welcome;

#[async_trait::async_trait]
impl Handler for Welcome {
    async fn handle(&self, tx: &mut AnyConnection, event: &Received) -> Result<(), HandlerError> {
        let e = event.decode::<UserSignedUp>()?;
        let user_id = user_id(&e.user_id, "UserSignedUp")?;
        let email = e.email.trim();
        if !email.contains('@') {
            return Err(permanent("UserSignedUp without a usable email"));
        }
        let contact = Contact {
            email: email.to_owned(),
            name: e.name.trim().to_owned(),
            phone: e.phone.trim().to_owned(),
            email_verified: false,
            phone_verified: false,
        };
        store::put_contact(tx, &user_id, &contact, now_micros()).await?;
        store::save_trigger(tx, event, now_micros()).await?;
        let context = serde_json::json!({});
        plan(
            tx,
            notification(event, &user_id, Channel::Email, WELCOME, email, &context)?,
        )
        .await
    }
}

/// `UserUpdated`: keep the contact current.
pub struct ContactChanges;

#[async_trait::async_trait]
impl Handler for ContactChanges {
    async fn handle(&self, tx: &mut AnyConnection, event: &Received) -> Result<(), HandlerError> {
        let e = event.decode::<UserUpdated>()?;
        let user_id = user_id(&e.user_id, "UserUpdated")?;
        let mut contact = store::contact(tx, &user_id).await?.unwrap_or_default();
        for field in &e.changed_fields {
            match field.as_str() {
                "email" => {
                    contact.email = e.email.trim().to_owned();
                    contact.email_verified = false;
                }
                "name" => contact.name = e.name.trim().to_owned(),
                "phone" => {
                    contact.phone = e.phone.trim().to_owned();
                    contact.phone_verified = false;
                }
                _ => {}
            }
        }
        store::put_contact(tx, &user_id, &contact, now_micros()).await?;
        Ok(())
    }
}

/// `ContactVerificationRequested`: plan the message that carries the secret — an
/// email with the verification link, or a text message with the code — to the
/// address being verified (the one message that may go to an unverified number).
pub struct Verification {
    /// Where the gateway's pages are, for the email's link.
    pub public_url: String,
}

#[async_trait::async_trait]
impl Handler for Verification {
    async fn handle(&self, tx: &mut AnyConnection, event: &Received) -> Result<(), HandlerError> {
        let e = event.decode::<ContactVerificationRequested>()?;
        let user_id = user_id(&e.user_id, "ContactVerificationRequested")?;
        let secret = e.secret.trim();
        if secret.is_empty() || secret.len() > 128 {
            return Err(permanent(
                "ContactVerificationRequested without a usable secret",
            ));
        }
        let expires = e
            .expire_time
            .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_default();
        store::save_trigger(tx, event, now_micros()).await?;
        match ContactKind::try_from(e.kind).unwrap_or(ContactKind::Unspecified) {
            ContactKind::Email => {
                if !e.address.contains('@') {
                    return Err(permanent("email verification without a usable address"));
                }
                let link = format!(
                    "{}/verify?token={secret}",
                    self.public_url.trim_end_matches('/')
                );
                let context = serde_json::json!({ "link": link, "expires": expires });
                plan(
                    tx,
                    notification(
                        event,
                        &user_id,
                        Channel::Email,
                        VERIFY_EMAIL,
                        &e.address,
                        &context,
                    )?,
                )
                .await
            }
            ContactKind::Phone => {
                let context = serde_json::json!({ "code": secret, "expires": expires });
                plan(
                    tx,
                    notification(
                        event,
                        &user_id,
                        Channel::Sms,
                        VERIFY_PHONE,
                        &e.address,
                        &context,
                    )?,
                )
                .await
            }
            ContactKind::Unspecified => {
                Err(permanent("verification of an unknown kind of contact"))
            }
        }
    }
}

/// `ContactVerified`: remember that the address is the user's.
pub struct Verified;

#[async_trait::async_trait]
impl Handler for Verified {
    async fn handle(&self, tx: &mut AnyConnection, event: &Received) -> Result<(), HandlerError> {
        let e = event.decode::<ContactVerified>()?;
        let user_id = user_id(&e.user_id, "ContactVerified")?;
        let email = match ContactKind::try_from(e.kind).unwrap_or(ContactKind::Unspecified) {
            ContactKind::Email => true,
            ContactKind::Phone => false,
            ContactKind::Unspecified => {
                return Err(permanent("ContactVerified of an unknown kind"));
            }
        };
        store::set_verified(tx, &user_id, email, e.address.trim(), now_micros()).await?;
        Ok(())
    }
}

/// One line of an order confirmation.
#[derive(Debug, Serialize)]
struct ItemLine {
    name: String,
    quantity: i32,
    unit_price: String,
    line_total: String,
}

/// `unit × quantity`, exactly (in nanos, with 128-bit headroom).
fn times(unit: &Money, quantity: i32) -> Result<Money, HandlerError> {
    let nanos =
        (i128::from(unit.units) * 1_000_000_000 + i128::from(unit.nanos)) * i128::from(quantity);
    let units =
        i64::try_from(nanos / 1_000_000_000).map_err(|_| permanent("line total out of range"))?;
    Ok(Money {
        currency_code: unit.currency_code.clone(),
        units,
        nanos: (nanos % 1_000_000_000) as i32,
    })
}

/// `OrderCreated`: plan the order confirmation. The orders of one transaction are
/// planned together when it ends: their trigger records and their emails are written
/// with a statement each (per run of a power of two of them), not two per order.
pub struct Confirmation;

impl Projection for Confirmation {
    fn scope(&self) -> Box<dyn Scope> {
        Box::new(Confirmations::default())
    }
}

/// The confirmations of one transaction's orders.
#[derive(Default)]
struct Confirmations {
    triggers: Vec<store::TriggerRow>,
    emails: Vec<NotificationRow>,
}

#[async_trait::async_trait]
impl Scope for Confirmations {
    async fn handle(
        &mut self,
        _: &mut AnyConnection,
        event: &Received,
    ) -> Result<(), HandlerError> {
        let e = event.decode::<OrderCreated>()?;
        let user_id = user_id(&e.user_id, "OrderCreated")?;
        if e.order_id.trim().is_empty() {
            return Err(permanent("OrderCreated without an order_id"));
        }
        let total = e
            .total
            .as_ref()
            .filter(|t| !t.currency_code.is_empty())
            .ok_or_else(|| permanent("OrderCreated without a total"))?;
        if e.items.is_empty() {
            return Err(permanent("OrderCreated without items"));
        }
        let mut items = Vec::with_capacity(e.items.len());
        for item in &e.items {
            let unit = item
                .unit_price
                .as_ref()
                .ok_or_else(|| permanent("OrderCreated item without a unit price"))?;
            if item.quantity <= 0 {
                return Err(permanent("OrderCreated item with a quantity below one"));
            }
            items.push(ItemLine {
                name: item.name.clone(),
                quantity: item.quantity,
                unit_price: unit.to_string(),
                line_total: times(unit, item.quantity)?.to_string(),
            });
        }
        let context = serde_json::json!({
            "order_id": e.order_id,
            "items": items,
            "total": total.to_string(),
        });
        let email = notification(
            event,
            &user_id,
            Channel::Email,
            ORDER_CONFIRMATION,
            "",
            &context,
        )?;
        self.triggers
            .push(store::TriggerRow::of(event, now_micros()));
        self.emails.push(email);
        Ok(())
    }

    async fn finish(self: Box<Self>, tx: &mut AnyConnection) -> Result<(), sqlx::Error> {
        store::save_triggers(tx, &self.triggers).await?;
        let planned = store::plan_all(tx, &self.emails).await?;
        self.emails
            .iter()
            .filter(|row| planned.contains(&row.id))
            .for_each(count_planned);
        Ok(())
    }
}

/// `OrderShipped`: plan the shipping email and, unless the user is known to have no
/// phone number, the text message.
pub struct Shipping;

#[async_trait::async_trait]
impl Handler for Shipping {
    async fn handle(&self, tx: &mut AnyConnection, event: &Received) -> Result<(), HandlerError> {
        let e = event.decode::<OrderShipped>()?;
        let user_id = user_id(&e.user_id, "OrderShipped")?;
        if e.order_id.trim().is_empty() {
            return Err(permanent("OrderShipped without an order_id"));
        }
        store::save_trigger(tx, event, now_micros()).await?;
        let context = serde_json::json!({
            "order_id": e.order_id,
            "carrier": e.carrier,
            "tracking_number": e.tracking_number,
        });
        plan(
            tx,
            notification(event, &user_id, Channel::Email, ORDER_SHIPPED, "", &context)?,
        )
        .await?;
        let known_without_phone = store::contact(tx, &user_id)
            .await?
            .is_some_and(|c| c.phone.is_empty());
        if !known_without_phone {
            plan(
                tx,
                notification(event, &user_id, Channel::Sms, ORDER_SHIPPED, "", &context)?,
            )
            .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_totals_are_exact() {
        let unit = Money {
            currency_code: "USD".into(),
            units: 29,
            nanos: 990_000_000,
        };
        assert_eq!(times(&unit, 2).unwrap().to_string(), "59.98 USD");
        assert_eq!(times(&unit, 1000).unwrap().to_string(), "29990.00 USD");
        let big = Money {
            currency_code: "USD".into(),
            units: i64::MAX / 2,
            nanos: 0,
        };
        assert!(times(&big, 3).is_err());
    }
}
