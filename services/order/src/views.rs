//! The API view of a stored order (its events are built in [`crate::events`]).

use weft_events::db::timestamp;
use weft_proto::order::{Order, OrderItem};

use crate::domain::OrderRecord;
use crate::money;

/// The API view of a stored order.
pub fn to_proto(o: &OrderRecord) -> Order {
    Order {
        order_id: o.order_id.clone(),
        user_id: o.user_id.clone(),
        items: items(o),
        total: Some(money::from_minor(o.currency, o.total_minor)),
        status: o.status as i32,
        kind: o.kind as i32,
        carrier: o.carrier.clone(),
        tracking_number: o.tracking_number.clone(),
        create_time: Some(timestamp(o.created_at)),
        update_time: Some(timestamp(o.updated_at)),
    }
}

/// The lines of an order as API items.
pub fn items(o: &OrderRecord) -> Vec<OrderItem> {
    o.lines
        .iter()
        .map(|l| OrderItem {
            product_id: l.product_id.clone(),
            name: l.name.clone(),
            quantity: l.quantity,
            unit_price: Some(money::from_minor(o.currency, l.unit_minor)),
        })
        .collect()
}
