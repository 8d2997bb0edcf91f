//! Proving contacts: an email link or a phone code checked against its stored
//! secret (with tries counted and expiry), and a new secret sent again when asked,
//! no sooner than the resend interval allows. Each proof commits with its event.

use weft_events::EventContext;
use weft_proto::user::*;

use crate::access::{self, Action};
use crate::contact::{self, CodeCheck};
use crate::domain::UserError;
use crate::service::UserApi;
use crate::store::{self, UserRecord};

impl UserApi {
    pub(crate) async fn verify_email(
        &self,
        ctx: EventContext,
        token: &str,
    ) -> Result<UserRecord, UserError> {
        let token = token.trim();
        if token.is_empty() || token.len() > 128 {
            return Err(UserError::invalid("token", "is not a verification token"));
        }
        let now = weft_events::db::now_micros();
        let mut tx = self.db.begin().await?;
        let Some((user_id, address)) = contact::take_email_token(&mut tx, token, now).await? else {
            tx.commit().await?;
            return Err(UserError::invalid(
                "token",
                "is unknown, used or expired; ask for a new verification email",
            ));
        };
        let Some(mut user) = store::by_id_in(&mut tx, &user_id).await? else {
            return Err(UserError::NotFound);
        };
        if user.email != address {
            tx.commit().await?;
            return Err(UserError::invalid(
                "token",
                "was sent to an address this user no longer has",
            ));
        }
        if !user.email_verified {
            user.email_verified = true;
            user.updated_at = now;
            store::update(&mut tx, &user).await?;
            contact::verified(&mut tx, &ctx, &user.user_id, ContactKind::Email, &address).await?;
        }
        self.relay.commit(tx).await?;
        Ok(user)
    }

    pub(crate) async fn verify_phone(
        &self,
        ctx: EventContext,
        caller: &weft_auth::Caller,
        req: VerifyPhoneRequest,
    ) -> Result<UserRecord, UserError> {
        access::check(caller, Action::Verify, &req.user_id)?;
        let code = req.code.trim();
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(UserError::invalid(
                "code",
                "is the six digits of the text message",
            ));
        }
        let now = weft_events::db::now_micros();
        let mut tx = self.db.begin().await?;
        let Some(mut user) = store::by_id_in(&mut tx, &req.user_id).await? else {
            return Err(UserError::NotFound);
        };
        match contact::check_phone_code(&mut tx, &user.user_id, code, now).await? {
            CodeCheck::Verified(address) if address == user.phone => {
                user.phone_verified = true;
                user.updated_at = now;
                store::update(&mut tx, &user).await?;
                contact::verified(&mut tx, &ctx, &user.user_id, ContactKind::Phone, &address)
                    .await?;
                self.relay.commit(tx).await?;
                Ok(user)
            }
            CodeCheck::Verified(_) | CodeCheck::Gone => {
                tx.commit().await?;
                Err(UserError::Precondition(
                    "no valid code is pending for this phone; ask for a new one",
                ))
            }
            CodeCheck::Wrong(left) => {
                tx.commit().await?;
                Err(UserError::Invalid(vec![
                    weft_kit::status::FieldViolation::new(
                        "code",
                        format!("is wrong; {} tries left", left.max(0)),
                    ),
                ]))
            }
        }
    }

    pub(crate) async fn resend_verification(
        &self,
        ctx: EventContext,
        caller: &weft_auth::Caller,
        req: ResendVerificationRequest,
    ) -> Result<(), UserError> {
        access::check(caller, Action::Verify, &req.user_id)?;
        let kind = ContactKind::try_from(req.kind).unwrap_or(ContactKind::Unspecified);
        let now = weft_events::db::now_micros();
        let mut tx = self.db.begin().await?;
        let Some(user) = store::by_id_in(&mut tx, &req.user_id).await? else {
            return Err(UserError::NotFound);
        };
        let address = match kind {
            ContactKind::Email if user.email_verified => {
                return Err(UserError::Precondition(
                    "the email address is verified already",
                ));
            }
            ContactKind::Phone if user.phone.is_empty() => {
                return Err(UserError::Precondition("this user has no phone number"));
            }
            ContactKind::Phone if user.phone_verified => {
                return Err(UserError::Precondition(
                    "the phone number is verified already",
                ));
            }
            ContactKind::Email => user.email.clone(),
            ContactKind::Phone => user.phone.clone(),
            ContactKind::Unspecified => {
                return Err(UserError::invalid(
                    "kind",
                    "must be CONTACT_KIND_EMAIL or CONTACT_KIND_PHONE",
                ));
            }
        };
        if let Err(wait) = contact::may_resend(&mut tx, &user.user_id, kind, now).await? {
            return Err(UserError::TooSoon {
                what: "a verification was sent less than a minute ago",
                retry_after: std::time::Duration::from_micros(wait.max(0) as u64),
            });
        }
        contact::request(&mut tx, &ctx, &user.user_id, kind, &address, now).await?;
        self.relay.commit(tx).await?;
        Ok(())
    }
}
