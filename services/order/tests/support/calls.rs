//! OrderService calls as rows of a table name them ([`Rpc`]): each RPC with its
//! request, made as a given caller by [`Rpc::send`], which answers with the order,
//! product or page the RPC returns.

use tonic::transport::Channel;
use weft_proto::order::order_service_client::OrderServiceClient;
use weft_proto::order::*;
use weft_testkit::Auth;

/// One OrderService call and its request.
#[derive(Clone, Debug)]
pub enum Rpc {
    CreateOrder(CreateOrderRequest),
    PayOrder(PayOrderRequest),
    GetOrder(GetOrderRequest),
    ListOrders(ListOrdersRequest),
    ShipOrder(ShipOrderRequest),
    DeliverOrder(DeliverOrderRequest),
    CancelOrder(CancelOrderRequest),
    ListProducts(ListProductsRequest),
    GetProduct(GetProductRequest),
    CreateProduct(CreateProductRequest),
    UpdateProduct(UpdateProductRequest),
}

/// What a call answered.
#[derive(Debug)]
pub enum Answer {
    Order(Order),
    Orders(Vec<Order>),
    Product(Product),
    Products(Vec<Product>),
}

impl Answer {
    /// The order answered; panics when the call answered something else.
    pub fn order(self) -> Order {
        match self {
            Self::Order(order) => order,
            other => panic!("not an order: {other:?}"),
        }
    }

    /// The products listed; panics when the call answered something else.
    pub fn products(self) -> Vec<Product> {
        match self {
            Self::Products(products) => products,
            other => panic!("not a list of products: {other:?}"),
        }
    }

    /// The product answered; panics when the call answered something else.
    pub fn product(self) -> Product {
        match self {
            Self::Product(product) => product,
            other => panic!("not a product: {other:?}"),
        }
    }
}

impl Rpc {
    /// `GetOrder` of `order_id`.
    pub fn get_order(order_id: &str) -> Self {
        Self::GetOrder(GetOrderRequest {
            order_id: order_id.into(),
        })
    }

    /// `ListOrders` of the orders of `user_id`, first page.
    pub fn orders_of(user_id: &str) -> Self {
        Self::ListOrders(ListOrdersRequest {
            user_id: user_id.into(),
            ..Default::default()
        })
    }

    /// `PayOrder` of `order_id` with a card numbered `number`.
    pub fn pay(order_id: &str, number: &str) -> Self {
        Self::PayOrder(PayOrderRequest {
            order_id: order_id.into(),
            card: super::card(number),
        })
    }

    /// `ShipOrder` of `order_id` with `carrier` and `tracking_number`.
    pub fn ship(order_id: &str, carrier: &str, tracking_number: &str) -> Self {
        Self::ShipOrder(ShipOrderRequest {
            order_id: order_id.into(),
            carrier: carrier.into(),
            tracking_number: tracking_number.into(),
        })
    }

    /// `DeliverOrder` of `order_id`.
    pub fn deliver(order_id: &str) -> Self {
        Self::DeliverOrder(DeliverOrderRequest {
            order_id: order_id.into(),
        })
    }

    /// `CancelOrder` of `order_id` for `reason`.
    pub fn cancel(order_id: &str, reason: &str) -> Self {
        Self::CancelOrder(CancelOrderRequest {
            order_id: order_id.into(),
            reason: reason.into(),
        })
    }

    /// `GetProduct` of `product_id`.
    pub fn get_product(product_id: &str) -> Self {
        Self::GetProduct(GetProductRequest {
            product_id: product_id.into(),
        })
    }

    /// `CreateProduct` of `product`.
    pub fn create_product(product: Product) -> Self {
        Self::CreateProduct(CreateProductRequest {
            product: Some(product),
        })
    }

    /// Makes the call on `orders` with the credentials `auth`.
    pub async fn send(
        self,
        orders: &mut OrderServiceClient<Channel>,
        auth: Auth<'_>,
    ) -> Result<Answer, tonic::Status> {
        // The field `$field` of what `$method` answers to the request.
        macro_rules! call {
            ($method:ident($request:expr).$field:ident) => {
                orders
                    .$method(auth.request($request))
                    .await?
                    .into_inner()
                    .$field
            };
        }
        let order = |o: Option<Order>| Answer::Order(o.expect("the call's order"));
        let product = |p: Option<Product>| Answer::Product(p.expect("the call's product"));
        Ok(match self {
            Self::CreateOrder(r) => order(call!(create_order(r).order)),
            Self::PayOrder(r) => order(call!(pay_order(r).order)),
            Self::GetOrder(r) => order(call!(get_order(r).order)),
            Self::ListOrders(r) => Answer::Orders(call!(list_orders(r).orders)),
            Self::ShipOrder(r) => order(call!(ship_order(r).order)),
            Self::DeliverOrder(r) => order(call!(deliver_order(r).order)),
            Self::CancelOrder(r) => order(call!(cancel_order(r).order)),
            Self::ListProducts(r) => Answer::Products(call!(list_products(r).products)),
            Self::GetProduct(r) => product(call!(get_product(r).product)),
            Self::CreateProduct(r) => product(call!(create_product(r).product)),
            Self::UpdateProduct(r) => product(call!(update_product(r).product)),
        })
    }
}
