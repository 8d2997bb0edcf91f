//! `spawn_mesh` for the order service: the real user and order services on free ports
//! with the embedded broker, on SQLite or fresh PostgreSQL databases.
#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tonic::transport::Channel;
use weft_kit::host::Running;
use weft_proto::common::Money;
use weft_proto::order::order_service_client::OrderServiceClient;
use weft_proto::order::*;
use weft_proto::user::user_service_client::UserServiceClient;
use weft_proto::user::*;
use weft_testkit::Home;
pub use weft_testkit::{
    Auth, Caller, Callers, Db, expect_code, expect_fields, violations, with_token,
};

mod calls;
pub use calls::{Answer, Rpc};

pub struct Mesh {
    pub home: Home,
    pub user: Running,
    pub order: Option<Running>,
    pub order_db: String,
    pub user_db: String,
}

pub async fn spawn_mesh(db: Db) -> Mesh {
    let home = Home::new();
    let kafka = weft_events::kafka::KafkaArgs::new(home.bootstrap());
    weft_events::topics::provision(&kafka, &weft_events::topics::all_topics())
        .await
        .unwrap();
    let user_db = home.database(db, "user").await;
    let order_db = home.database(db, "order").await;
    let user = home.spawn::<weft_user::App>(&user_db, &[]).await;
    let mut mesh = Mesh {
        home,
        user,
        order: None,
        order_db,
        user_db,
    };
    mesh.start_order().await;
    mesh
}

/// A mesh whose order service knows the token keys, with a customer and a staff
/// member signed up.
pub struct Shop {
    pub mesh: Mesh,
    /// The customer's user id.
    pub customer: String,
    /// The customer's token.
    pub token: String,
    /// The staff member's token.
    pub staff: String,
    pub orders: OrderServiceClient<Channel>,
}

/// The mesh on `db` with the customer `customer` and the staff member `staff` signed
/// up, once the order service knows the token keys.
pub async fn spawn_shop(db: Db, customer: &str, staff: &str) -> Shop {
    let mesh = spawn_mesh(db).await;
    let (customer, token) = mesh.user(customer).await;
    let (_, staff) = mesh.staff(staff).await;
    let orders = mesh.ready(&token).await;
    Shop {
        mesh,
        customer,
        token,
        staff,
        orders,
    }
}

impl Mesh {
    pub async fn start_order(&mut self) {
        let user_service = self.user.url();
        let flags = [
            "--user-service-url",
            &user_service,
            // Tests publish sign-ups before the service first looks at its topics.
            "--from",
            "earliest",
        ];
        let order = self.home.spawn::<weft_order::App>(&self.order_db, &flags);
        self.order = Some(order.await);
    }

    pub async fn stop_order(&mut self) {
        if let Some(o) = self.order.take() {
            o.stop().await.unwrap();
        }
    }

    pub async fn users(&self) -> UserServiceClient<Channel> {
        UserServiceClient::connect(self.user.url()).await.unwrap()
    }

    pub async fn orders(&self) -> OrderServiceClient<Channel> {
        OrderServiceClient::connect(self.order.as_ref().unwrap().url())
            .await
            .unwrap()
    }

    /// Signs `email` up and logs in; returns (user id, token).
    pub async fn user(&self, email: &str) -> (String, String) {
        let request = weft_testkit::sign_up_request(email);
        weft_testkit::sign_up_and_login(&mut self.users().await, request).await
    }

    /// A fresh access token of `email` (signed up by [`Self::user`]).
    pub async fn login(&self, email: &str) -> String {
        weft_testkit::login(&mut self.users().await, email).await
    }

    /// Signs `email` up, has the operator grant it `staff` (`weft admin grant`), and
    /// logs in; returns (user id, token).
    pub async fn staff(&self, email: &str) -> (String, String) {
        let (id, _) = self.user(email).await;
        let db = weft_events::Database::connect(&self.user_db).await.unwrap();
        weft_user::admin::change(
            &db,
            email,
            weft_auth::Role::Staff,
            weft_user::admin::Change::Grant,
            "operator@test",
        )
        .await
        .unwrap();
        (id, self.login(email).await)
    }

    /// Waits until the order service knows the token keys (as [`Self::wait_ready`]);
    /// a client of it.
    pub async fn ready(&self, token: &str) -> OrderServiceClient<Channel> {
        self.wait_ready(token).await;
        self.orders().await
    }

    /// Waits until the order service has the user service's token keys.
    pub async fn wait_ready(&self, token: &str) {
        let mut orders = self.orders().await;
        weft_testkit::eventually(
            "the order service to know the token keys",
            Duration::from_secs(30),
            || {
                let mut orders = orders.clone();
                let req = with_token(ListOrdersRequest::default(), token);
                async move { orders.list_orders(req).await.ok() }
            },
        )
        .await;
        let _ = &mut orders;
    }
}

/// `GetOrder` of `order_id` as the holder of `token`: the order.
pub async fn read_order(
    orders: &mut OrderServiceClient<Channel>,
    order_id: &str,
    token: &str,
) -> Order {
    let read = Rpc::get_order(order_id).send(orders, Auth::bearer(token));
    read.await.unwrap().order()
}

/// `CreateOrder` of `request` as the holder of `token`: the new order.
pub async fn create_order(
    orders: &mut OrderServiceClient<Channel>,
    request: CreateOrderRequest,
    token: &str,
) -> Order {
    let create = Rpc::CreateOrder(request).send(orders, Auth::bearer(token));
    create.await.unwrap().order()
}

pub fn usd(units: i64, nanos: i32) -> Option<Money> {
    Some(Money {
        currency_code: "USD".into(),
        units,
        nanos,
    })
}

pub fn item(product: &str, qty: i32, price: Option<Money>) -> OrderItem {
    OrderItem {
        product_id: product.into(),
        name: String::new(),
        quantity: qty,
        unit_price: price,
    }
}

/// The seed order of the design: 2 × 29.99 + 1 × 49.99 USD, from the built-in
/// catalogue (the client names the prices it expects).
pub fn seed_order() -> CreateOrderRequest {
    CreateOrderRequest {
        user_id: String::new(),
        items: vec![
            item("mug", 2, usd(29, 990_000_000)),
            item("lamp", 1, usd(49, 990_000_000)),
        ],
        idempotency_key: String::new(),
    }
}

pub fn card(number: &str) -> Option<PaymentCard> {
    Some(PaymentCard {
        number: number.into(),
        exp_month: 12,
        exp_year: 2099,
        cvc: "123".into(),
    })
}
