//! The welcome-order saga step: every `UserSignedUp` leads to exactly one free
//! "Welcome Package" order, keeping the signup's correlation id and naming the signup
//! event as its cause. Exactly once twice over: the consumer's inbox skips a
//! redelivered event, and a unique index allows one welcome order per user.

use sqlx::AnyConnection;
use weft_events::Outbox;
use weft_events::consumer::{Handler, HandlerError, Received};
use weft_proto::order::{OrderKind, OrderStatus};
use weft_proto::user::UserSignedUp;

use crate::domain::{self, Action, Line};
use crate::money::Currency;
use crate::store::{self, OrderRecord};
use crate::views::created_event;

/// Product id of the welcome package.
pub const WELCOME_PRODUCT: &str = "welcome-package";

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
        let currency = Currency::from_code("USD")
            .ok_or_else(|| HandlerError::Permanent("USD unknown".into()))?;
        // Free, and paid for by the house: the state machine's pay step, no charge.
        let status = domain::transition(OrderStatus::Pending, Action::Pay)
            .map_err(|e| HandlerError::Permanent(e.to_string()))?;
        let now = weft_events::db::now_micros();
        let order = OrderRecord {
            order_id: uuid::Uuid::now_v7().to_string(),
            user_id: user_id.to_owned(),
            status,
            kind: OrderKind::Welcome,
            currency,
            total_minor: 0,
            carrier: String::new(),
            tracking_number: String::new(),
            payment_id: String::new(),
            card_last4: String::new(),
            idempotency_key: None,
            created_at: now,
            updated_at: now,
            lines: vec![Line {
                product_id: WELCOME_PRODUCT.into(),
                name: "Welcome Package".into(),
                quantity: 1,
                unit_minor: 0,
            }],
        };
        let inserted = store::insert(tx, &order)
            .await
            .map_err(|e| HandlerError::Transient(e.to_string()))?;
        if inserted {
            Outbox::enqueue(tx, &created_event(&order, &event.context())).await?;
            tracing::info!(user_id, order_id = %order.order_id, "welcome order created");
        }
        Ok(())
    }
}
