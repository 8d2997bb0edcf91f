//! The REST steps tests and benchmarks share, through the gateway at a base URL: an
//! HTTP client, a page's text, and accounts and orders made with [`PASSWORD`].

use serde_json::{Value, json};

pub use super::PASSWORD;

/// An HTTP client keeping up to 64 idle connections to a host (enough for the
/// benchmarks' callers), with the process's TLS provider installed first.
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap()
}

/// The body of `GET url`, after asserting the answer was 200.
pub async fn text(http: &reqwest::Client, url: &str) -> String {
    let resp = http.get(url).send().await.unwrap();
    let status = resp.status();
    let body = resp.text().await.unwrap();
    assert_eq!(status, 200, "GET {url}: {body}");
    body
}

/// Sends `request`: the JSON it answered, after asserting the answer was 200.
pub async fn answer_ok(request: reqwest::RequestBuilder) -> Value {
    let resp = request.send().await.unwrap();
    let (status, url) = (resp.status(), resp.url().clone());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{url}: {body}");
    body
}

async fn post(http: &reqwest::Client, url: String, token: Option<&str>, body: Value) -> Value {
    let mut req = http.post(&url).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    answer_ok(req).await
}

/// Logs `email` in: (user id, access token).
pub async fn login(http: &reqwest::Client, base: &str, email: &str) -> (String, String) {
    let login = json!({"email": email, "password": PASSWORD});
    let login = post(http, format!("{base}/v1/users:login"), None, login).await;
    (
        login["userId"].as_str().unwrap().to_owned(),
        login["accessToken"].as_str().unwrap().to_owned(),
    )
}

/// Signs `email` up and logs in: (user id, access token).
pub async fn signup_and_login(http: &reqwest::Client, base: &str, email: &str) -> (String, String) {
    let signup = json!({"email": email, "name": "Grace Hopper", "password": PASSWORD, "source": "SIGNUP_SOURCE_API"});
    post(http, format!("{base}/v1/users"), None, signup).await;
    login(http, base, email).await
}

/// Places the seed order (2 × 29.99 + 1 × 49.99 USD = 109.97): the order.
pub async fn seed_order(http: &reqwest::Client, base: &str, token: &str) -> Value {
    let items = json!({"items": [
        {"productId": "mug", "name": "Mug", "quantity": 2, "unitPrice": {"currencyCode": "USD", "units": "29", "nanos": 990000000}},
        {"productId": "lamp", "name": "Lamp", "quantity": 1, "unitPrice": {"currencyCode": "USD", "units": "49", "nanos": 990000000}}]});
    post(http, format!("{base}/v1/orders"), Some(token), items).await["order"].take()
}

/// A customer with the seed order, made through the gateway at `base` with `http`.
pub struct Customer {
    pub user_id: String,
    pub token: String,
    /// The seed order's id.
    pub order_id: String,
}

impl Customer {
    /// Signs `email` up, logs in and places the seed order.
    pub async fn with_seed_order(http: &reqwest::Client, base: &str, email: &str) -> Self {
        let (user_id, token) = signup_and_login(http, base, email).await;
        let order = seed_order(http, base, &token).await;
        let order_id = order["orderId"].as_str().unwrap().to_owned();
        Self {
            user_id,
            token,
            order_id,
        }
    }

    /// `Bearer <token>`, the value of an `authorization` header.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }
}

/// `GET path` on `127.0.0.1:port` over a connection of its own, the HTTP/1.1 request
/// written by hand so that the answer is seen as sent: (its head, its body).
pub async fn raw_get(port: u16, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (head.to_owned(), body.to_owned())
}
