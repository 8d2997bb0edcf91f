//! The gRPC face of the order service. Requests are parsed at the edge, each change
//! commits with its outbox event, and errors become statuses in [`status`] only.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tonic_types::StatusExt as _;
use weft_auth::Caller;
use weft_events::outbox::RelayWaker;
use weft_events::{Database, EventContext, Outbox};
use weft_kit::paging::{page_token, parse_page_token};
use weft_proto::order::order_service_server::OrderService;
use weft_proto::order::*;

use crate::IDENTITY;
use crate::access::{self, Action};
use crate::catalog;
use crate::domain::{self, OrderError, Violations};
use crate::money;
use crate::payment::{Card, Charge, PaymentProvider, luhn};
use crate::store::{self, OrderRecord};
use crate::views::{created_event, to_proto};

/// The order service's handlers.
pub struct OrderApi {
    /// The service database.
    pub db: Database,
    /// Wakes the outbox relay after a commit.
    pub relay: RelayWaker,
    /// Charges cards.
    pub payments: Arc<dyn PaymentProvider>,
}

/// The single mapping of [`OrderError`] to a gRPC status.
pub fn status(e: OrderError) -> Status {
    match e {
        OrderError::Invalid(v) => weft_kit::status::invalid_argument(&v),
        OrderError::NotFound => Status::not_found("order not found"),
        OrderError::ProductNotFound => Status::not_found("product not found"),
        OrderError::ProductExists => Status::already_exists("a product with this id exists"),
        e @ OrderError::KeyReused { .. } => Status::already_exists(e.to_string()),
        OrderError::Denied(why) => Status::permission_denied(why),
        e @ OrderError::IllegalTransition { .. } => {
            let mut d = tonic_types::ErrorDetails::new();
            d.add_precondition_failure_violation("STATUS", "order", e.to_string());
            Status::with_error_details(tonic::Code::FailedPrecondition, e.to_string(), d)
        }
        OrderError::Declined(reason) => {
            let mut d = tonic_types::ErrorDetails::new();
            d.set_error_info(
                "PAYMENT_DECLINED",
                "weft.order",
                [("reason".to_owned(), reason.clone())],
            );
            Status::with_error_details(
                tonic::Code::FailedPrecondition,
                format!("payment declined: {reason}"),
                d,
            )
        }
        OrderError::PaymentUnavailable => {
            Status::unavailable("the payment provider is unavailable; retry later")
        }
        OrderError::Internal(err) => weft_kit::status::internal(err.as_ref()),
    }
}

fn context<T>(req: &Request<T>) -> EventContext {
    EventContext::from_correlation_header(
        req.metadata()
            .get("x-correlation-id")
            .and_then(|v| v.to_str().ok()),
    )
}

fn required_id(value: &str, field: &str) -> Result<String, OrderError> {
    let v = value.trim();
    if let Some(problem) = weft_kit::text::Text::ID.problem(v) {
        return Err(OrderError::invalid(field, &problem));
    }
    Ok(v.to_owned())
}

/// The user a request names, or the caller when it names none.
fn user_or_caller(value: &str, caller: &Caller) -> Result<String, OrderError> {
    if value.trim().is_empty() {
        Ok(caller.user_id.clone())
    } else {
        required_id(value, "user_id")
    }
}

impl OrderApi {
    async fn create(
        &self,
        caller: &Caller,
        ctx: EventContext,
        req: CreateOrderRequest,
    ) -> Result<OrderRecord, OrderError> {
        let mut v = Violations::default();
        let user_id = user_or_caller(&req.user_id, caller)?;
        let key = req.idempotency_key.trim().to_owned();
        if key.len() > 128 {
            v.add("idempotency_key", "must be at most 128 characters");
        }
        let wanted = domain::parse_items(&req.items, &mut v);
        if !caller.is(&user_id) {
            // Ordering for someone else looks like ordering for nobody.
            v.add("user_id", "must be your own user id");
        }
        v.finish(())?;
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
        let now = weft_events::db::now_micros();
        let order = OrderRecord {
            order_id: uuid::Uuid::now_v7().to_string(),
            user_id,
            status: OrderStatus::Pending,
            kind: OrderKind::Regular,
            currency,
            total_minor: total,
            carrier: String::new(),
            tracking_number: String::new(),
            payment_id: String::new(),
            card_last4: String::new(),
            idempotency_key: (!key.is_empty()).then_some(key.clone()),
            created_at: now,
            updated_at: now,
            lines,
        };
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
        let mut tx = self.db.begin().await?;
        if !key.is_empty()
            && let Some(existing) = store::by_idempotency_key(&mut tx, &order.user_id, &key).await?
        {
            return retried(existing);
        }
        if !store::insert(&mut tx, &order).await? {
            drop(tx);
            let mut conn = self.db.pool().acquire().await?;
            let existing = store::by_idempotency_key(&mut conn, &order.user_id, &key)
                .await?
                .ok_or_else(|| {
                    OrderError::Internal(anyhow::anyhow!("order insert conflicted without a match"))
                })?;
            return retried(existing);
        }
        Outbox::enqueue(&mut tx, &created_event(&order, &ctx)).await?;
        self.relay.commit(tx).await?;
        tracing::info!(order_id = %order.order_id, total = %money::display(order.currency, order.total_minor), "order created");
        Ok(order)
    }

    /// Order `order_id`, when `caller` may do `action` to it.
    async fn visible(
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

    async fn pay(
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
    async fn advance(
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

#[tonic::async_trait]
impl OrderService for OrderApi {
    async fn create_order(
        &self,
        request: Request<CreateOrderRequest>,
    ) -> Result<Response<CreateOrderResponse>, Status> {
        let caller = weft_auth::caller(&request)?;
        let ctx = context(&request);
        let order = self
            .create(&caller, ctx, request.into_inner())
            .await
            .map_err(status)?;
        Ok(Response::new(CreateOrderResponse {
            order: Some(to_proto(&order)),
        }))
    }

    async fn pay_order(
        &self,
        request: Request<PayOrderRequest>,
    ) -> Result<Response<PayOrderResponse>, Status> {
        let caller = weft_auth::caller(&request)?;
        let ctx = context(&request);
        let (order, payment_id) = self
            .pay(&caller, ctx, request.into_inner())
            .await
            .map_err(status)?;
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
            .await
            .map_err(status)?;
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
        let user_id = user_or_caller(&req.user_id, &caller).map_err(status)?;
        if req.page_size < 0 {
            return Err(status(OrderError::invalid(
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
        access::check(&caller, Action::Read, &user_id).map_err(status)?;
        let mut orders = store::page(&self.db, &user_id, after, size + 1)
            .await
            .map_err(status)?;
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
        let ctx = context(&request);
        let req = request.into_inner();
        let mut v = Violations::default();
        let carrier = req.carrier.trim().to_owned();
        let tracking = req.tracking_number.trim().to_owned();
        // Both go out in the shipping email and text message.
        let required_code = weft_kit::text::Text {
            optional: false,
            ..weft_kit::text::Text::CODE
        };
        if let Some(problem) = required_code.problem(&carrier) {
            v.add("carrier", problem);
        }
        if let Some(problem) = required_code.problem(&tracking) {
            v.add("tracking_number", problem);
        } else if !tracking
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            v.add("tracking_number", "must be letters, digits or dashes");
        }
        v.finish(()).map_err(status)?;
        let order = self
            .advance(
                &caller,
                ctx,
                &req.order_id,
                Action::Ship,
                String::new(),
                |o| {
                    o.carrier = carrier;
                    o.tracking_number = tracking;
                },
            )
            .await
            .map_err(status)?;
        Ok(Response::new(ShipOrderResponse {
            order: Some(to_proto(&order)),
        }))
    }

    async fn deliver_order(
        &self,
        request: Request<DeliverOrderRequest>,
    ) -> Result<Response<DeliverOrderResponse>, Status> {
        let caller = weft_auth::caller(&request)?;
        let ctx = context(&request);
        let order = self
            .advance(
                &caller,
                ctx,
                &request.get_ref().order_id,
                Action::Deliver,
                String::new(),
                |_| {},
            )
            .await
            .map_err(status)?;
        Ok(Response::new(DeliverOrderResponse {
            order: Some(to_proto(&order)),
        }))
    }

    async fn cancel_order(
        &self,
        request: Request<CancelOrderRequest>,
    ) -> Result<Response<CancelOrderResponse>, Status> {
        let caller = weft_auth::caller(&request)?;
        let ctx = context(&request);
        let req = request.into_inner();
        if let Some(problem) = weft_kit::text::Text::REASON.problem(req.reason.trim()) {
            return Err(status(OrderError::invalid("reason", &problem)));
        }
        let order = self
            .advance(
                &caller,
                ctx,
                &req.order_id,
                Action::Cancel,
                req.reason.trim().to_owned(),
                |_| {},
            )
            .await
            .map_err(status)?;
        Ok(Response::new(CancelOrderResponse {
            order: Some(to_proto(&order)),
        }))
    }

    async fn list_products(
        &self,
        request: Request<ListProductsRequest>,
    ) -> Result<Response<ListProductsResponse>, Status> {
        let staff = request
            .extensions()
            .get::<Caller>()
            .is_some_and(Caller::is_staff);
        let req = request.into_inner();
        if req.include_inactive && !staff {
            return Err(status(OrderError::Denied(
                "only staff see inactive products",
            )));
        }
        if req.page_size < 0 {
            return Err(status(OrderError::invalid(
                "page_size",
                "must not be negative",
            )));
        }
        let size = match req.page_size {
            0 => 50,
            n => i64::from(n.min(200)),
        };
        let after = parse_page_token(&req.page_token)?
            .map(|(_, id)| id)
            .unwrap_or_default();
        let mut products = catalog::page(&self.db, &after, size + 1, req.include_inactive)
            .await
            .map_err(status)?;
        let next_page_token = if products.len() as i64 > size {
            products.truncate(size as usize);
            products
                .last()
                .map(|p| page_token(0, &p.product_id))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(ListProductsResponse {
            products: products.iter().map(catalog::Product::to_proto).collect(),
            next_page_token,
        }))
    }

    async fn get_product(
        &self,
        request: Request<GetProductRequest>,
    ) -> Result<Response<GetProductResponse>, Status> {
        let id = required_id(&request.get_ref().product_id, "product_id").map_err(status)?;
        let product = catalog::get(&self.db, &id)
            .await
            .map_err(status)?
            .ok_or_else(|| status(OrderError::ProductNotFound))?;
        Ok(Response::new(GetProductResponse {
            product: Some(product.to_proto()),
        }))
    }

    async fn create_product(
        &self,
        request: Request<CreateProductRequest>,
    ) -> Result<Response<CreateProductResponse>, Status> {
        let caller = weft_auth::caller(&request)?;
        access::check_catalogue(&caller).map_err(status)?;
        let given = request.into_inner().product.unwrap_or_default();
        let mut v = Violations::default();
        let product_id = catalog::parse_product_id(&given.product_id, "product.product_id", &mut v);
        let name = catalog::parse_name(&given.name, "product.name", &mut v);
        let price = catalog::parse_price(given.unit_price.as_ref(), "product.unit_price", &mut v);
        v.finish(()).map_err(status)?;
        let Some((currency, unit_minor)) = price else {
            return Err(status(OrderError::invalid(
                "product.unit_price",
                "is required",
            )));
        };
        let now = weft_events::db::now_micros();
        let product = catalog::Product {
            product_id,
            name,
            currency,
            unit_minor,
            active: given.active,
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.db.begin().await.map_err(|e| status(e.into()))?;
        if !catalog::insert(&mut tx, &product).await.map_err(status)? {
            return Err(status(OrderError::ProductExists));
        }
        tx.commit().await.map_err(|e| status(e.into()))?;
        tracing::info!(product_id = %product.product_id, by = %caller.user_id, "product added");
        Ok(Response::new(CreateProductResponse {
            product: Some(product.to_proto()),
        }))
    }

    async fn update_product(
        &self,
        request: Request<UpdateProductRequest>,
    ) -> Result<Response<UpdateProductResponse>, Status> {
        let caller = weft_auth::caller(&request)?;
        access::check_catalogue(&caller).map_err(status)?;
        let req = request.into_inner();
        let given = req.product.unwrap_or_default();
        let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
        let mut v = Violations::default();
        if paths.is_empty() {
            v.add(
                "update_mask",
                "must name at least one of name, unit_price, active",
            );
        }
        let id = required_id(&given.product_id, "product.product_id").map_err(status)?;
        let mut tx = self.db.begin().await.map_err(|e| status(e.into()))?;
        let mut product = catalog::by_ids(&mut tx, std::slice::from_ref(&id))
            .await
            .map_err(status)?
            .remove(&id)
            .ok_or_else(|| status(OrderError::ProductNotFound))?;
        for (i, path) in paths.iter().enumerate() {
            match path.as_str() {
                "name" => product.name = catalog::parse_name(&given.name, "product.name", &mut v),
                "unit_price" => {
                    if let Some((c, minor)) = catalog::parse_price(
                        given.unit_price.as_ref(),
                        "product.unit_price",
                        &mut v,
                    ) {
                        product.currency = c;
                        product.unit_minor = minor;
                    }
                }
                "active" => product.active = given.active,
                other => v.add(
                    format!("update_mask.paths[{i}]"),
                    format!("{other:?} cannot be changed; use name, unit_price or active"),
                ),
            }
        }
        v.finish(()).map_err(status)?;
        product.updated_at = weft_events::db::now_micros();
        catalog::update(&mut tx, &product).await.map_err(status)?;
        tx.commit().await.map_err(|e| status(e.into()))?;
        tracing::info!(product_id = %product.product_id, by = %caller.user_id, "product changed");
        Ok(Response::new(UpdateProductResponse {
            product: Some(product.to_proto()),
        }))
    }
}
