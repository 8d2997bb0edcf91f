//! The order's life after creation, driven through the state machine of
//! [`crate::domain::transition`]: the caller's access checked on the stored order,
//! payment charged before the order is confirmed, and shipping, delivery and
//! cancellation each committed with their event.

use weft_auth::Caller;
use weft_events::{DomainEvent, EventContext, Outbox};

use crate::access::{self, Action};
use crate::domain::{self, OrderError, OrderRecord};
use crate::events;
use crate::payment::Charge;
use crate::requests::{Payment, required_id};
use crate::service::OrderApi;
use crate::store;

impl OrderApi {
    /// Order `order_id`, when `caller` may do `action` to it.
    pub(crate) async fn visible(
        &self,
        caller: &Caller,
        order_id: &str,
        action: Action,
    ) -> Result<OrderRecord, OrderError> {
        let id = required_id(order_id, "order_id")?;
        let mut conn = self.db.pool().acquire().await?;
        let order = store::by_id(&mut conn, &id)
            .await?
            .ok_or(OrderError::NotFound)?;
        access::check(caller, action, &order.user_id)?;
        Ok(order)
    }

    /// Charges the card of `payment` for its order and confirms it, or records why
    /// the charge failed; either way with its event.
    pub(crate) async fn pay(
        &self,
        caller: &Caller,
        ctx: EventContext,
        payment: Payment,
    ) -> Result<(OrderRecord, String), OrderError> {
        let Payment { order_id, card } = payment;
        let mut order = self.visible(caller, &order_id, Action::Pay).await?;
        let from = order.status;
        let to = domain::transition(from, Action::Pay)?;
        let outcome = self
            .payments
            .charge(
                &card,
                order.currency.code,
                order.total_minor,
                &order.order_id,
            )
            .await;
        let mut tx = self.db.begin().await?;
        let result = match outcome {
            Charge::Approved(payment_id) => {
                order.status = to;
                order.payment_id = payment_id.clone();
                order.card_last4 = card.last4();
                order.updated_at = weft_events::db::now_micros();
                if !store::update(&mut tx, &order, from).await? {
                    return Err(OrderError::IllegalTransition {
                        action: "pay",
                        from: "changed meanwhile",
                    });
                }
                let paid = events::payment_processed(&order, &ctx, &payment_id, &card.last4());
                Outbox::enqueue(&mut tx, &paid).await?;
                Ok((order, payment_id))
            }
            failed => {
                let (reason, retryable) = match failed {
                    Charge::Declined(r) => (r, false),
                    _ => ("payment provider unavailable".to_owned(), true),
                };
                let event = events::payment_failed(&order, &ctx, &reason, retryable);
                Outbox::enqueue(&mut tx, &event).await?;
                Err(if retryable {
                    OrderError::PaymentUnavailable
                } else {
                    OrderError::Declined(reason)
                })
            }
        };
        self.relay.commit(tx).await?;
        result
    }

    /// Moves an order along the state machine by `action`, changes it with `apply`,
    /// and commits it with the event `event` builds of it.
    pub(crate) async fn advance<E: DomainEvent>(
        &self,
        caller: &Caller,
        ctx: EventContext,
        order_id: &str,
        action: Action,
        apply: impl FnOnce(&mut OrderRecord),
        event: impl FnOnce(&OrderRecord, &EventContext) -> E,
    ) -> Result<OrderRecord, OrderError> {
        let mut order = self.visible(caller, order_id, action).await?;
        let from = order.status;
        order.status = domain::transition(from, action)?;
        apply(&mut order);
        order.updated_at = weft_events::db::now_micros();
        let mut tx = self.db.begin().await?;
        if !store::update(&mut tx, &order, from).await? {
            return Err(OrderError::IllegalTransition {
                action: action.verb(),
                from: "changed meanwhile",
            });
        }
        Outbox::enqueue(&mut tx, &event(&order, &ctx)).await?;
        self.relay.commit(tx).await?;
        Ok(order)
    }
}
