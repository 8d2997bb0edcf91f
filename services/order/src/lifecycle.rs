//! The order's life after creation, driven through the state machine of
//! [`crate::domain::transition`]: the caller's access checked on the stored order,
//! payment charged before the order is confirmed, and shipping, delivery and
//! cancellation each committed with their event.

use weft_auth::Caller;
use weft_events::{EventContext, Outbox};
use weft_proto::order::*;

use crate::IDENTITY;
use crate::access::{self, Action};
use crate::domain::{self, OrderError, Violations};
use crate::money;
use crate::payment::{Card, Charge, luhn};
use crate::service::{OrderApi, required_id};
use crate::store::{self, OrderRecord};

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

    pub(crate) async fn pay(
        &self,
        caller: &Caller,
        ctx: EventContext,
        req: PayOrderRequest,
    ) -> Result<(OrderRecord, String), OrderError> {
        let mut v = Violations::default();
        let card = req.card.unwrap_or_default();
        let number: String = card
            .number
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .collect();
        if !(12..=19).contains(&number.len())
            || !number.bytes().all(|b| b.is_ascii_digit())
            || !luhn(&number)
        {
            v.add("card.number", "is not a valid card number");
        }
        if !(1..=12).contains(&card.exp_month) {
            v.add("card.exp_month", "must be 1–12");
        }
        let now = year_month_now();
        if card.exp_year < now.0 || (card.exp_year == now.0 && card.exp_month < now.1) {
            v.add("card.exp_year", "the card has expired");
        }
        if !(3..=4).contains(&card.cvc.len()) || !card.cvc.bytes().all(|b| b.is_ascii_digit()) {
            v.add("card.cvc", "must be 3 or 4 digits");
        }
        v.finish(())?;
        let mut order = self.visible(caller, &req.order_id, Action::Pay).await?;
        let from = order.status;
        let to = domain::transition(from, Action::Pay)?;
        let card = Card { number };
        let amount = Some(money::from_minor(order.currency, order.total_minor));
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
                Outbox::enqueue(
                    &mut tx,
                    &PaymentProcessed {
                        metadata: Some(ctx.metadata(IDENTITY.name, IDENTITY.version)),
                        order_id: order.order_id.clone(),
                        user_id: order.user_id.clone(),
                        amount,
                        payment_id: payment_id.clone(),
                        card_last4: card.last4(),
                    },
                )
                .await?;
                Ok((order, payment_id))
            }
            failed => {
                let (reason, retryable) = match failed {
                    Charge::Declined(r) => (r, false),
                    _ => ("payment provider unavailable".to_owned(), true),
                };
                Outbox::enqueue(
                    &mut tx,
                    &PaymentFailed {
                        metadata: Some(ctx.metadata(IDENTITY.name, IDENTITY.version)),
                        order_id: order.order_id.clone(),
                        user_id: order.user_id.clone(),
                        amount,
                        reason: reason.clone(),
                        retryable,
                    },
                )
                .await?;
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

    /// Moves an order along the state machine and emits the matching event.
    pub(crate) async fn advance(
        &self,
        caller: &Caller,
        ctx: EventContext,
        order_id: &str,
        action: Action,
        reason: String,
        apply: impl FnOnce(&mut OrderRecord),
    ) -> Result<OrderRecord, OrderError> {
        let mut order = self.visible(caller, order_id, action).await?;
        let from = order.status;
        order.status = domain::transition(from, action)?;
        apply(&mut order);
        order.updated_at = weft_events::db::now_micros();
        let meta = Some(ctx.metadata(IDENTITY.name, IDENTITY.version));
        let (order_id, user_id) = (order.order_id.clone(), order.user_id.clone());
        let mut tx = self.db.begin().await?;
        if !store::update(&mut tx, &order, from).await? {
            return Err(OrderError::IllegalTransition {
                action: action.verb(),
                from: "changed meanwhile",
            });
        }
        match action {
            Action::Ship => {
                let e = OrderShipped {
                    metadata: meta,
                    order_id,
                    user_id,
                    carrier: order.carrier.clone(),
                    tracking_number: order.tracking_number.clone(),
                };
                Outbox::enqueue(&mut tx, &e).await?;
            }
            Action::Deliver => {
                Outbox::enqueue(
                    &mut tx,
                    &OrderDelivered {
                        metadata: meta,
                        order_id,
                        user_id,
                    },
                )
                .await?
            }
            _ => {
                Outbox::enqueue(
                    &mut tx,
                    &OrderCancelled {
                        metadata: meta,
                        order_id,
                        user_id,
                        reason,
                    },
                )
                .await?
            }
        }
        self.relay.commit(tx).await?;
        Ok(order)
    }
}

/// (year, month) now, UTC.
fn year_month_now() -> (i32, i32) {
    use chrono::Datelike as _;
    let today = chrono::Utc::now().date_naive();
    (today.year(), i32::try_from(today.month()).unwrap_or(12))
}
