//! The gRPC face of the order service. Requests are parsed at the edge, each change
//! commits with its outbox event, and errors become statuses through one `From`
//! impl ([`crate::error`]). The catalogue's RPCs are in [`crate::products`].

use std::sync::Arc;

use futures::future::BoxFuture;
use sqlx::AnyConnection;
use tonic::{Request, Response, Status};
use weft_events::batched::{Batched, WriteMany};
use weft_events::outbox::RelayWaker;
use weft_events::{Database, EventContext, Outbox};
use weft_kit::paging::{page_token, parse_page_token};
use weft_proto::order::order_service_server::OrderService;
use weft_proto::order::*;

use crate::access::{self, Action};
use crate::catalog;
use crate::domain::{self, OrderError, OrderRecord, Violations};
use crate::events;
use crate::money;
use crate::payment::PaymentProvider;
use crate::requests::{Cancellation, NewOrder, Payment, Shipment, user_or_caller};
use crate::store;
use crate::views::to_proto;

/// The order service's handlers.
pub struct OrderApi {
    /// The service database.
    pub db: Database,
    /// Wakes the outbox relay after a commit.
    pub relay: RelayWaker,
    /// Charges cards.
    pub payments: Arc<dyn PaymentProvider>,
    /// Writes new orders, many to a statement.
    pub creates: Batched<NewOrders>,
}

/// Why a CreateOrder write did not commit.
pub enum Write {
    /// The order's idempotency key was taken by a call that committed meanwhile.
    Raced,
    /// Anything else.
    Order(OrderError),
}

impl<E: Into<OrderError>> From<E> for Write {
    fn from(e: E) -> Self {
        Self::Order(e.into())
    }
}

/// New orders with their `OrderCreated`, written together by concurrent
/// `CreateOrder` calls: a statement per table for all of them, after looking up the
/// idempotency keys they carry.
pub struct NewOrders;

/// An order to store, its event, and its idempotency key (empty for none).
pub type NewOrderWrite = (OrderRecord, OrderCreated, String);

impl WriteMany for NewOrders {
    type Item = NewOrderWrite;
    /// `None` once committed, or the order the item's key already made.
    type Out = Option<OrderRecord>;
    type Error = Write;

    fn write<'c>(
        &'c self,
        conn: &'c mut AnyConnection,
        items: &'c [NewOrderWrite],
    ) -> BoxFuture<'c, Result<Vec<Option<OrderRecord>>, Write>> {
        Box::pin(async move {
            let mut outs = Vec::with_capacity(items.len());
            let (mut orders, mut events) = (Vec::new(), Vec::new());
            for (order, event, key) in items {
                let existing = match key.is_empty() {
                    true => None,
                    false => store::by_idempotency_key(conn, &order.user_id, key).await?,
                };
                if existing.is_none() {
                    orders.push(order);
                    events.push(event.clone());
                }
                outs.push(existing);
            }
            // Two of them under one key, or a key taken since it was looked up.
            if !store::insert_all(conn, &orders).await? {
                return Err(Write::Raced);
            }
            Outbox::enqueue_all(conn, &events).await?;
            Ok(outs)
        })
    }
}

impl OrderApi {
    /// Prices and stores a new order with its `OrderCreated`, or answers a retry
    /// under the same idempotency key with the order the key made.
    async fn create(&self, ctx: EventContext, new: NewOrder) -> Result<OrderRecord, OrderError> {
        let NewOrder {
            user_id,
            key,
            wanted,
        } = new;
        let catalogue = {
            let mut conn = self.db.pool().acquire().await?;
            let ids: Vec<String> = wanted.iter().map(|w| w.product_id.clone()).collect();
            catalog::by_ids(&mut conn, &ids).await?
        };
        let mut v = Violations::default();
        let priced = domain::price_lines(&wanted, &catalogue, &mut v);
        let (lines, currency, total) = v
            .finish(priced)?
            .ok_or_else(|| OrderError::invalid("items", "must not be empty"))?;
        let idempotency_key = (!key.is_empty()).then_some(key.clone());
        let order = OrderRecord::pending(user_id, idempotency_key, (lines, currency, total));
        // A retry with the key gets the order the key made, if it asks for the same
        // items; other items under a used key are refused, not answered with an
        // order the caller did not ask for.
        let retried = |existing: OrderRecord| {
            if domain::same_items(&existing.lines, &wanted) {
                Ok(existing)
            } else {
                Err(OrderError::KeyReused {
                    key: key.clone(),
                    order_id: existing.order_id,
                })
            }
        };
        let event = events::created(&order, &ctx);
        if let Some(existing) = self.store_new(&order, event, &key).await? {
            return retried(existing);
        }
        self.relay.wake();
        tracing::info!(order_id = %order.order_id, total = %money::display(order.currency, order.total_minor), "order created");
        Ok(order)
    }

    /// Stores `order` with its `OrderCreated`, written together with other calls'
    /// ([`NewOrders`]): `None` once committed, or the order its idempotency key
    /// already made.
    async fn store_new(
        &self,
        order: &OrderRecord,
        event: OrderCreated,
        key: &str,
    ) -> Result<Option<OrderRecord>, OrderError> {
        let written = self
            .creates
            .write((order.clone(), event, key.to_owned()))
            .await;
        match written {
            Ok(stored) => Ok(stored),
            Err(Write::Order(e)) => Err(e),
            // Another call with the key committed between the read and the insert.
            Err(Write::Raced) => {
                let mut conn = self.db.pool().acquire().await?;
                let existing = store::by_idempotency_key(&mut conn, &order.user_id, key).await?;
                existing.map(Some).ok_or_else(|| {
                    OrderError::Internal(anyhow::anyhow!("order insert conflicted without a match"))
                })
            }
        }
    }
}

#[tonic::async_trait]
impl OrderService for OrderApi {
    async fn create_order(
        &self,
        request: Request<CreateOrderRequest>,
    ) -> Result<Response<CreateOrderResponse>, Status> {
        let caller = weft_auth::caller(&request)?;
        let ctx = EventContext::of_request(&request);
        let new = NewOrder::try_from((&caller, request.into_inner()))?;
        let order = self.create(ctx, new).await?;
        Ok(Response::new(CreateOrderResponse {
            order: Some(to_proto(&order)),
        }))
    }

    async fn pay_order(
        &self,
        request: Request<PayOrderRequest>,
    ) -> Result<Response<PayOrderResponse>, Status> {
        let caller = weft_auth::caller(&request)?;
        let ctx = EventContext::of_request(&request);
        let payment = Payment::try_from(request.into_inner())?;
        let (order, payment_id) = self.pay(&caller, ctx, payment).await?;
        Ok(Response::new(PayOrderResponse {
            order: Some(to_proto(&order)),
            payment_id,
        }))
    }

    async fn get_order(
        &self,
        request: Request<GetOrderRequest>,
    ) -> Result<Response<GetOrderResponse>, Status> {
        let caller = weft_auth::caller(&request)?;
        let order = self
            .visible(&caller, &request.get_ref().order_id, Action::Read)
            .await?;
        Ok(Response::new(GetOrderResponse {
            order: Some(to_proto(&order)),
        }))
    }

    async fn list_orders(
        &self,
        request: Request<ListOrdersRequest>,
    ) -> Result<Response<ListOrdersResponse>, Status> {
        let caller = weft_auth::caller(&request)?;
        let req = request.into_inner();
        let user_id = user_or_caller(&req.user_id, &caller)?;
        if req.page_size < 0 {
            return Err(Status::from(OrderError::invalid(
                "page_size",
                "must not be negative",
            )));
        }
        let size = match req.page_size {
            0 => 20,
            n => i64::from(n.min(100)),
        };
        let after = parse_page_token(&req.page_token)?;
        // Another user's orders look like no orders at all.
        access::check(&caller, Action::Read, &user_id)?;
        let mut orders = store::page(&self.db, &user_id, after, size + 1).await?;
        let next_page_token = if orders.len() as i64 > size {
            orders.truncate(size as usize);
            orders
                .last()
                .map(|o| page_token(o.created_at, &o.order_id))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(ListOrdersResponse {
            orders: orders.iter().map(to_proto).collect(),
            next_page_token,
        }))
    }

    async fn ship_order(
        &self,
        request: Request<ShipOrderRequest>,
    ) -> Result<Response<ShipOrderResponse>, Status> {
        let caller = weft_auth::caller(&request)?;
        let ctx = EventContext::of_request(&request);
        let shipment = Shipment::try_from(request.into_inner())?;
        let order = self
            .advance(
                &caller,
                ctx,
                &shipment.order_id,
                Action::Ship,
                |o| {
                    o.carrier = shipment.carrier;
                    o.tracking_number = shipment.tracking_number;
                },
                events::shipped,
            )
            .await?;
        Ok(Response::new(ShipOrderResponse {
            order: Some(to_proto(&order)),
        }))
    }

    async fn deliver_order(
        &self,
        request: Request<DeliverOrderRequest>,
    ) -> Result<Response<DeliverOrderResponse>, Status> {
        let caller = weft_auth::caller(&request)?;
        let ctx = EventContext::of_request(&request);
        let order = self
            .advance(
                &caller,
                ctx,
                &request.get_ref().order_id,
                Action::Deliver,
                |_| {},
                events::delivered,
            )
            .await?;
        Ok(Response::new(DeliverOrderResponse {
            order: Some(to_proto(&order)),
        }))
    }

    async fn cancel_order(
        &self,
        request: Request<CancelOrderRequest>,
    ) -> Result<Response<CancelOrderResponse>, Status> {
        let caller = weft_auth::caller(&request)?;
        let ctx = EventContext::of_request(&request);
        let cancellation = Cancellation::try_from(request.into_inner())?;
        let order = self
            .advance(
                &caller,
                ctx,
                &cancellation.order_id,
                Action::Cancel,
                |_| {},
                |o, ctx| events::cancelled(o, ctx, &cancellation.reason),
            )
            .await?;
        Ok(Response::new(CancelOrderResponse {
            order: Some(to_proto(&order)),
        }))
    }

    async fn list_products(
        &self,
        request: Request<ListProductsRequest>,
    ) -> Result<Response<ListProductsResponse>, Status> {
        self.page_of_products(request).await
    }

    async fn get_product(
        &self,
        request: Request<GetProductRequest>,
    ) -> Result<Response<GetProductResponse>, Status> {
        self.product(request).await
    }

    async fn create_product(
        &self,
        request: Request<CreateProductRequest>,
    ) -> Result<Response<CreateProductResponse>, Status> {
        self.add_product(request).await
    }

    async fn update_product(
        &self,
        request: Request<UpdateProductRequest>,
    ) -> Result<Response<UpdateProductResponse>, Status> {
        self.change_product(request).await
    }
}
