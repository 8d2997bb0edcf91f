//! `spawn_app` for the user service: the real service on free ports, a temp data dir,
//! the embedded broker, and SQLite or a fresh PostgreSQL database.
#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use tonic::transport::Channel;
use weft_kit::host::Running;
use weft_proto::user::user_service_client::UserServiceClient;
use weft_proto::user::*;
use weft_testkit::Home;
pub use weft_testkit::{
    Auth, Caller, Callers, Db, expect_code, expect_fields, violations, with_token,
};

mod calls;
pub use calls::Rpc;

pub struct TestApp {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub home: Home,
    pub database_url: String,
    extra: Vec<String>,
    running: Running,
}

pub async fn spawn_app(db: Db) -> TestApp {
    spawn_app_with(db, &[]).await
}

/// The service on `db`, and a client of it.
pub async fn spawn_app_and_client(db: Db) -> (TestApp, UserServiceClient<Channel>) {
    let app = spawn_app(db).await;
    let client = app.client().await;
    (app, client)
}

/// The service with `extra` flags after the test defaults.
pub async fn spawn_app_with(db: Db, extra: &[&str]) -> TestApp {
    let home = Home::new();
    let kafka = weft_events::kafka::KafkaArgs::new(home.bootstrap());
    weft_events::topics::provision(&kafka, &weft_events::topics::all_topics())
        .await
        .unwrap();
    let database_url = home.database(db, "user").await;
    let extra = extra.iter().map(|s| (*s).to_owned()).collect();
    start(home, database_url, extra).await
}

async fn start(home: Home, database_url: String, extra: Vec<String>) -> TestApp {
    let mut args = vec!["--login-max-failures", "3"];
    args.extend(extra.iter().map(String::as_str));
    let running = home.spawn::<weft_user::App>(&database_url, &args).await;
    TestApp {
        addr: running.grpc,
        admin: running.admin,
        home,
        database_url,
        extra,
        running,
    }
}

impl TestApp {
    pub async fn client(&self) -> UserServiceClient<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        UserServiceClient::new(channel)
    }

    /// The service's database, as the operator's tools open it.
    pub async fn db(&self) -> weft_events::Database {
        weft_events::Database::connect(&self.database_url)
            .await
            .unwrap()
    }

    /// Grants `role` to the user with `email` the operator's way (`weft admin grant`).
    pub async fn grant(&self, email: &str, role: weft_auth::Role) -> Vec<String> {
        weft_user::admin::change(
            &self.db().await,
            email,
            role,
            weft_user::admin::Change::Grant,
            "operator@test",
        )
        .await
        .unwrap()
    }

    /// The events of `ce_type` (short name, e.g. `UserSignedUp`) on `user-events`,
    /// once there are at least `n`.
    pub fn events_of(&self, ce_type: &str, n: usize) -> Vec<rdkafka::message::OwnedMessage> {
        let full = format!("weft.user.v1.{ce_type}");
        let of = |r: &rdkafka::message::OwnedMessage| {
            weft_testkit::header(r, "ce_type") == Some(full.as_str())
        };
        weft_testkit::read_topic_until(
            &self.home.bootstrap(),
            "user-events",
            std::time::Duration::from_secs(30),
            |s| s.iter().filter(|r| of(r)).count() >= n,
        )
        .into_iter()
        .filter(of)
        .collect()
    }

    /// The verification secrets sent to `address` of `user_id`, oldest first, once
    /// there are `n`.
    pub fn secrets_for(&self, user_id: &str, address: &str, n: usize) -> Vec<String> {
        use prost::Message as _;
        use rdkafka::Message as _;
        let decode = |r: &rdkafka::message::OwnedMessage| {
            (weft_testkit::header(r, "ce_type")
                == Some("weft.user.v1.ContactVerificationRequested"))
            .then(|| ContactVerificationRequested::decode(r.payload().unwrap()).unwrap())
            .filter(|e| e.address == address && e.user_id == user_id)
        };
        weft_testkit::read_topic_until(
            &self.home.bootstrap(),
            "user-events",
            std::time::Duration::from_secs(30),
            |s| s.iter().filter_map(decode).count() >= n,
        )
        .iter()
        .filter_map(decode)
        .map(|e| e.secret)
        .collect()
    }

    pub async fn stop(self) {
        self.running.stop().await.unwrap();
    }

    /// Stops the service and starts it again on the same database and broker.
    pub async fn restart(self) -> TestApp {
        self.running.stop().await.unwrap();
        start(self.home, self.database_url, self.extra).await
    }

    /// The service's Prometheus text.
    pub async fn metrics(&self) -> String {
        weft_testkit::scrape_metrics(self.admin).await.unwrap()
    }
}

pub fn signup_request(email: &str) -> SignUpRequest {
    SignUpRequest {
        name: "Ada Lovelace".into(),
        source: SignupSource::Web as i32,
        phone: "+14155550123".into(),
        metadata: [("campaign".to_owned(), "launch".to_owned())]
            .into_iter()
            .collect(),
        ..weft_testkit::sign_up_request(email)
    }
}

/// `UpdateUser` of `user` (whose `user_id` names the user to change) with the field
/// mask `paths`.
pub fn update_request(user: User, paths: &[&str]) -> UpdateUserRequest {
    UpdateUserRequest {
        user: Some(user),
        update_mask: Some(prost_types::FieldMask {
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        }),
    }
}

/// `Login` of `email` with `password`.
pub fn login_request(email: &str, password: &str) -> LoginRequest {
    LoginRequest {
        email: email.into(),
        password: password.into(),
    }
}

/// Signs up `email` (as [`signup_request`]); the new user.
pub async fn sign_up(client: &mut UserServiceClient<Channel>, email: &str) -> User {
    let answer = client.sign_up(signup_request(email)).await.unwrap();
    answer.into_inner().user.unwrap()
}

/// Signs up `email` (as [`signup_request`]) and logs in; returns (user id, token).
pub async fn user_with_token(
    client: &mut UserServiceClient<Channel>,
    email: &str,
) -> (String, String) {
    weft_testkit::sign_up_and_login(client, signup_request(email)).await
}

/// A fresh access token of `email` (password of [`signup_request`]).
pub use weft_testkit::login;

/// How many users the database holds.
pub async fn user_count(url: &str) -> i64 {
    count_rows(url, "users").await
}

/// How many events the service ever wrote to its outbox (sent or not).
pub async fn outbox_count(url: &str) -> i64 {
    count_rows(url, "weft_outbox").await
}

async fn count_rows(url: &str, table: &str) -> i64 {
    let db = weft_events::Database::connect(url).await.unwrap();
    weft_testkit::count_rows(db.pool(), table).await
}
