//! How messages leave: email through lettre (a mailbox a day by default, in
//! [`crate::mailbox`]; `.eml` files; SMTP when configured) and text messages through
//! files or an HTTP webhook.
//!
//! Every transport is told the notification id. The file transports name their files
//! after it and write them atomically, so delivering the same notification again
//! (after a crash between sending and recording it) replaces the file rather than
//! adding a second one. SMTP cannot promise that; it sends the same `Message-ID`, and
//! the webhook the same `Idempotency-Key`, so the receiver can tell.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};

/// Why a message was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth retrying later (server busy or unreachable, 4xx SMTP reply, 5xx HTTP).
    #[error("transient: {0}")]
    Transient(String),
    /// Will never succeed (5xx SMTP reply, rejected recipient, 4xx HTTP).
    #[error("permanent: {0}")]
    Permanent(String),
}

/// Sends emails.
#[async_trait]
pub trait MailTransport: Send + Sync + 'static {
    /// Sends `message`, the email of notification `id`.
    async fn send(&self, id: &str, message: &Message) -> Result<(), SendError>;
    /// Where mail goes, for the start-up log.
    fn describe(&self) -> String;
}

/// Sends text messages.
#[async_trait]
pub trait SmsTransport: Send + Sync + 'static {
    /// Sends `body` to `to` (E.164), the text message of notification `id`.
    async fn send(&self, id: &str, to: &str, body: &str) -> Result<(), SendError>;
    /// Where text messages go, for the start-up log.
    fn describe(&self) -> String;
}

/// Writes `contents` to `dir/name` atomically: a temporary file in the same
/// directory renamed over the target, so a reader (or a crash) never sees half a
/// file. It is not `fsync`ed (with many messages a second, that cost more CPU than the
/// rest of the delivery): like the service database's own commits (SQLite in WAL
/// mode with `synchronous = NORMAL`), it survives any process crash at once, and a
/// crash of the machine can lose the last seconds of it, as it can of those.
///
/// One file is written at a time per process: creating and renaming files in one
/// directory takes its lock, and writers that wait for it spin in the kernel (with 8
/// at once that cost more than the writes).
async fn write_atomically(dir: &Path, name: &str, contents: Vec<u8>) -> Result<PathBuf, SendError> {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let dir = dir.to_owned();
    let name = name.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let _turn = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        std::fs::create_dir_all(&dir)?;
        let target = dir.join(&name);
        let mut tmp = tempfile_in(&dir, &name)?;
        tmp.1.write_all(&contents)?;
        std::fs::rename(&tmp.0, &target)?;
        Ok::<_, std::io::Error>(target)
    })
    .await
    .map_err(|e| SendError::Transient(format!("writer task failed: {e}")))?
    .map_err(|e| SendError::Transient(format!("writing the file: {e}")))
}

fn tempfile_in(dir: &Path, name: &str) -> std::io::Result<(PathBuf, std::fs::File)> {
    let path = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4()));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    Ok((path, file))
}

/// lettre's message, written as `<dir>/<notification id>.eml` (RFC 5322; any mail
/// client opens it).
pub struct MailFiles {
    dir: PathBuf,
}

impl MailFiles {
    /// Mail goes to `dir`, created when missing.
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }
}

#[async_trait]
impl MailTransport for MailFiles {
    async fn send(&self, id: &str, message: &Message) -> Result<(), SendError> {
        write_atomically(&self.dir, &format!("{id}.eml"), message.formatted()).await?;
        Ok(())
    }

    fn describe(&self) -> String {
        format!(".eml files in {}", self.dir.display())
    }
}

/// An SMTP relay through lettre's pooled async transport.
pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    server: String,
}

impl Smtp {
    /// Connects lazily to `url`, e.g. `smtp://host:2525`, `smtp://user:pass@host:587?tls=required`
    /// or `smtps://host` (lettre's URL form).
    pub fn from_url(url: &str, timeout: Duration) -> Result<Self, SendError> {
        let builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| SendError::Permanent(format!("bad SMTP URL: {e}")))?;
        let server = url
            .split_once('@')
            .map_or(url, |(_, host)| host)
            .trim_start_matches("smtp://")
            .trim_start_matches("smtps://")
            .to_owned();
        Ok(Self {
            transport: builder.timeout(Some(timeout)).build(),
            server,
        })
    }
}

#[async_trait]
impl MailTransport for Smtp {
    async fn send(&self, _id: &str, message: &Message) -> Result<(), SendError> {
        match self.transport.send(message.clone()).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(SendError::Permanent(format!("SMTP: {e}"))),
            Err(e) => Err(SendError::Transient(format!("SMTP: {e}"))),
        }
    }

    fn describe(&self) -> String {
        format!("SMTP via {}", self.server)
    }
}

/// A text message as a JSON file `<dir>/<notification id>.json`.
pub struct SmsFiles {
    dir: PathBuf,
}

impl SmsFiles {
    /// Messages go to `dir`, created when missing.
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }
}

#[async_trait]
impl SmsTransport for SmsFiles {
    async fn send(&self, id: &str, to: &str, body: &str) -> Result<(), SendError> {
        let json = serde_json::json!({ "notification_id": id, "to": to, "body": body });
        let mut bytes = serde_json::to_vec_pretty(&json)
            .map_err(|e| SendError::Permanent(format!("encoding the message: {e}")))?;
        bytes.push(b'\n');
        write_atomically(&self.dir, &format!("{id}.json"), bytes).await?;
        Ok(())
    }

    fn describe(&self) -> String {
        format!("JSON files in {}", self.dir.display())
    }
}

/// A text message POSTed as JSON `{notification_id, to, body}` to a webhook (an SMS
/// provider's API or a bridge to one), with `Idempotency-Key: <notification id>`.
/// 2xx is sent; 408, 429 and 5xx are retried; any other answer is permanent.
pub struct SmsWebhook {
    client: reqwest::Client,
    url: reqwest::Url,
}

impl SmsWebhook {
    /// Posts to `url` with `timeout` per request.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, SendError> {
        let url = reqwest::Url::parse(url)
            .map_err(|e| SendError::Permanent(format!("bad SMS webhook URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(SendError::Permanent(format!(
                "bad SMS webhook URL: scheme {:?} is not http or https",
                url.scheme()
            )));
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| SendError::Permanent(format!("HTTP client: {e}")))?;
        Ok(Self { client, url })
    }
}

#[async_trait]
impl SmsTransport for SmsWebhook {
    async fn send(&self, id: &str, to: &str, body: &str) -> Result<(), SendError> {
        let response = self
            .client
            .post(self.url.clone())
            .header("idempotency-key", id)
            .json(&serde_json::json!({ "notification_id": id, "to": to, "body": body }))
            .send()
            .await
            .map_err(|e| SendError::Transient(format!("SMS webhook: {e}")))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let detail = response.text().await.unwrap_or_default();
        let detail: String = detail.chars().take(200).collect();
        let message = format!("SMS webhook answered {status}: {detail}");
        if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
            Err(SendError::Transient(message))
        } else {
            Err(SendError::Permanent(message))
        }
    }

    fn describe(&self) -> String {
        format!("webhook {}", self.url)
    }
}
