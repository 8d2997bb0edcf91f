//! The welcome-order saga step: every `UserSignedUp` leads to exactly one free
//! "Welcome Package" order, keeping the signup's correlation id and naming the signup
//! event as its cause. Exactly once twice over: the consumer's inbox skips a
//! redelivered event, and a unique index allows one welcome order per user.

use sqlx::AnyConnection;
use weft_events::Outbox;
use weft_events::consumer::{Handler, HandlerError, Received};
use weft_proto::user::UserSignedUp;

use crate::domain::OrderRecord;
use crate::events;
use crate::store;

/// Creates the welcome order of a new user.
pub struct WelcomeOrders;

#[async_trait::async_trait]
impl Handler for WelcomeOrders {
    async fn handle(&self, tx: &mut AnyConnection, event: &Received) -> Result<(), HandlerError> {
        let signup = event.decode::<UserSignedUp>()?;
        let user_id = signup.user_id.trim();
        if user_id.is_empty() || user_id.len() > 64 {
            return Err(HandlerError::Permanent(
                "UserSignedUp without a usable user_id".into(),
            ));
        }
        if store::has_welcome(tx, user_id)
            .await
            .map_err(|e| HandlerError::Transient(e.to_string()))?
        {
            return Ok(());
        }
        let order =
            OrderRecord::welcome(user_id).map_err(|e| HandlerError::Permanent(e.to_string()))?;
        let inserted = store::insert(tx, &order)
            .await
            .map_err(|e| HandlerError::Transient(e.to_string()))?;
        if inserted {
            Outbox::enqueue(tx, &events::created(&order, &event.context())).await?;
            tracing::info!(user_id, order_id = %order.order_id, "welcome order created");
        }
        Ok(())
    }
}
