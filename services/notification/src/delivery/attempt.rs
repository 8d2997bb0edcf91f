//! One attempt at a planned notification: who it goes to, whether it may go (a usable
//! address, a verified number, the recipient's limit), rendering it and handing it to
//! its transport. The answer is an [`Attempt`]; nothing here writes to the database.

use std::time::{Duration, UNIX_EPOCH};

use lettre::Message;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use serde_json::Value;
use weft_proto::notification::Channel;

use super::limits::RecipientLimits;
use crate::store::{Contact, NotificationRow};
use crate::templates::{RenderedEmail, Templates};
use crate::transport::{MailTransport, SendError, SmsTransport};

/// What became of one attempt.
pub(super) enum Attempt {
    /// Sent to `recipient` (with `subject`, for emails).
    Sent {
        recipient: String,
        subject: String,
    },
    Retry(String),
    GiveUp(String),
    Nobody,
    /// Not sent on purpose (limit reached, number not verified).
    Suppressed(String),
}

impl Attempt {
    /// The attempt a transport's answer makes, sent to `recipient`.
    fn from_send(result: Result<(), SendError>, recipient: &str, subject: String) -> Self {
        match result {
            Ok(()) => Self::Sent {
                recipient: recipient.to_owned(),
                subject,
            },
            Err(SendError::Transient(e)) => Self::Retry(e),
            Err(SendError::Permanent(e)) => Self::GiveUp(e),
        }
    }
}

/// What an attempt needs: the templates, the transports and the recipients' limits.
pub(super) struct Sender<'a> {
    pub(super) mail: &'a dyn MailTransport,
    pub(super) sms: &'a dyn SmsTransport,
    pub(super) templates: &'a Templates,
    pub(super) limits: &'a RecipientLimits,
    /// The sender of every email.
    pub(super) from: &'a Mailbox,
}

impl Sender<'_> {
    /// Tries to send `row` once, to `contact` (the user's, if this service has seen
    /// the user).
    pub(super) async fn attempt(
        &self,
        row: &NotificationRow,
        contact: Option<&Contact>,
    ) -> Attempt {
        let Some(contact) = contact else {
            return Attempt::Retry(format!("user {} is not known yet", row.user_id));
        };
        let context = match template_values(row, contact) {
            Ok(c) => c,
            Err(e) => return Attempt::GiveUp(e),
        };
        if weft_kit::faults::get("notification-down").is_some() {
            return Attempt::Retry("the fault flag notification-down is on".into());
        }
        match row.channel {
            Channel::Email => self.email(row, contact, &context).await,
            Channel::Sms => self.text(row, contact, &context).await,
            Channel::Unspecified => Attempt::GiveUp("notification without a channel".into()),
        }
    }

    async fn email(&self, row: &NotificationRow, contact: &Contact, context: &Value) -> Attempt {
        let address = if row.recipient.is_empty() {
            contact.email.as_str()
        } else {
            row.recipient.as_str()
        };
        let to: Mailbox = match address.parse() {
            Ok(a) => a,
            Err(e) => return Attempt::GiveUp(format!("unusable email address {address:?}: {e}")),
        };
        if !self.limits.allow(address) {
            return Attempt::Suppressed(format!("{address} got its limit of messages for now"));
        }
        let rendered = match self.templates.email(&row.template, context) {
            Ok(r) => r,
            Err(e) => return Attempt::GiveUp(e.to_string()),
        };
        let subject = rendered.subject.clone();
        let message = match email_message(row, self.from.clone(), to, rendered) {
            Ok(m) => m,
            Err(e) => return Attempt::GiveUp(format!("building the email: {e}")),
        };
        Attempt::from_send(self.mail.send(&row.id, &message).await, address, subject)
    }

    async fn text(&self, row: &NotificationRow, contact: &Contact, context: &Value) -> Attempt {
        let number = if row.recipient.is_empty() {
            contact.phone.as_str()
        } else {
            row.recipient.as_str()
        };
        if number.is_empty() {
            return Attempt::Nobody;
        }
        if !is_e164(number) {
            return Attempt::GiveUp(format!("phone number {number:?} is not in E.164 form"));
        }
        // Only the message that verifies a number may go to one not verified yet.
        if row.template != crate::templates::VERIFY_PHONE
            && !(contact.phone_verified && contact.phone == number)
        {
            return Attempt::Suppressed("the phone number is not verified".into());
        }
        if !self.limits.allow(number) {
            return Attempt::Suppressed(format!("{number} got its limit of messages for now"));
        }
        let body = match self.templates.sms(&row.template, context) {
            Ok(b) => b,
            Err(e) => return Attempt::GiveUp(e.to_string()),
        };
        let sent = self.sms.send(&row.id, number, &body).await;
        Attempt::from_send(sent, number, String::new())
    }
}

/// The email of `row`: plain text and HTML alternatives, with the notification id in
/// its `Message-ID` and boundary and the row's creation as its date, so sending it
/// again sends the same message.
fn email_message(
    row: &NotificationRow,
    from: Mailbox,
    to: Mailbox,
    rendered: RenderedEmail,
) -> Result<Message, lettre::error::Error> {
    let date = UNIX_EPOCH + Duration::from_micros(row.created_at.max(0) as u64);
    Message::builder()
        .from(from)
        .to(to)
        .subject(rendered.subject)
        .message_id(Some(format!("<{}@weft>", row.id)))
        .date(date)
        .multipart(
            MultiPart::alternative()
                .boundary(format!("weft-{}", row.id))
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(rendered.text),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(rendered.html),
                ),
        )
}

/// The template values of `row`: what the event said plus the contact and a short
/// order reference.
fn template_values(row: &NotificationRow, contact: &Contact) -> Result<Value, String> {
    let mut values: Value =
        serde_json::from_str(&row.context).map_err(|e| format!("stored template values: {e}"))?;
    let Some(map) = values.as_object_mut() else {
        return Err("stored template values are not an object".into());
    };
    let name = if contact.name.is_empty() {
        "there".to_owned()
    } else {
        contact.name.clone()
    };
    map.insert("name".into(), Value::String(name));
    map.insert("email".into(), Value::String(contact.email.clone()));
    if let Some(order) = map.get("order_id").and_then(Value::as_str) {
        let short: String = order.chars().take(8).collect();
        map.insert("order_ref".into(), Value::String(short));
    }
    Ok(values)
}

/// `+` and 7 to 15 digits, the first not zero.
fn is_e164(number: &str) -> bool {
    let Some(digits) = number.strip_prefix('+') else {
        return false;
    };
    (7..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_numbers() {
        assert!(is_e164("+15551234567"));
        assert!(!is_e164("15551234567"));
        assert!(!is_e164("+0555123"));
        assert!(!is_e164("+1555abc4567"));
        assert!(!is_e164("+123"));
    }
}
