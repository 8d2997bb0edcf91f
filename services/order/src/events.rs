//! The events an order's changes publish, built from the stored order and the
//! request's context: one builder per event type, shared by the RPCs and the
//! welcome-order consumer.

use weft_events::EventContext;
use weft_proto::common::EventMetadata;
use weft_proto::order::{
    Order, OrderCancelled, OrderCreated, OrderDelivered, OrderShipped, PaymentFailed,
    PaymentProcessed,
};

use crate::config::IDENTITY;
use crate::domain::OrderRecord;
use crate::money;
use crate::views;

fn metadata(ctx: &EventContext) -> Option<EventMetadata> {
    Some(ctx.metadata(IDENTITY.name, IDENTITY.version))
}

/// `OrderCreated`: the order as it was made.
pub fn created(o: &OrderRecord, ctx: &EventContext) -> OrderCreated {
    let view: Order = views::to_proto(o);
    OrderCreated {
        metadata: metadata(ctx),
        order_id: view.order_id,
        user_id: view.user_id,
        items: view.items,
        total: view.total,
        status: view.status,
        kind: view.kind,
    }
}

/// `PaymentProcessed`: the order's total charged as `payment_id` to the card ending
/// in `card_last4`.
pub fn payment_processed(
    o: &OrderRecord,
    ctx: &EventContext,
    payment_id: &str,
    card_last4: &str,
) -> PaymentProcessed {
    PaymentProcessed {
        metadata: metadata(ctx),
        order_id: o.order_id.clone(),
        user_id: o.user_id.clone(),
        amount: Some(money::from_minor(o.currency, o.total_minor)),
        payment_id: payment_id.to_owned(),
        card_last4: card_last4.to_owned(),
    }
}

/// `PaymentFailed`: the charge of the order's total refused for `reason`, worth
/// another try when `retryable`.
pub fn payment_failed(
    o: &OrderRecord,
    ctx: &EventContext,
    reason: &str,
    retryable: bool,
) -> PaymentFailed {
    PaymentFailed {
        metadata: metadata(ctx),
        order_id: o.order_id.clone(),
        user_id: o.user_id.clone(),
        amount: Some(money::from_minor(o.currency, o.total_minor)),
        reason: reason.to_owned(),
        retryable,
    }
}

/// `OrderShipped`: with its carrier and tracking number.
pub fn shipped(o: &OrderRecord, ctx: &EventContext) -> OrderShipped {
    OrderShipped {
        metadata: metadata(ctx),
        order_id: o.order_id.clone(),
        user_id: o.user_id.clone(),
        carrier: o.carrier.clone(),
        tracking_number: o.tracking_number.clone(),
    }
}

/// `OrderDelivered`.
pub fn delivered(o: &OrderRecord, ctx: &EventContext) -> OrderDelivered {
    OrderDelivered {
        metadata: metadata(ctx),
        order_id: o.order_id.clone(),
        user_id: o.user_id.clone(),
    }
}

/// `OrderCancelled`, for `reason` (empty when none was given).
pub fn cancelled(o: &OrderRecord, ctx: &EventContext, reason: &str) -> OrderCancelled {
    OrderCancelled {
        metadata: metadata(ctx),
        order_id: o.order_id.clone(),
        user_id: o.user_id.clone(),
        reason: reason.to_owned(),
    }
}
