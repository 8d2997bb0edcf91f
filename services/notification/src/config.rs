//! Who the notification service is ([`IDENTITY`]) and its settings: flags or
//! environment variables, with defaults that run it in the embedded mesh.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use weft_kit::config::Secret;

/// Who the notification service is: its names, health service and event version.
pub const IDENTITY: weft_kit::host::Identity = weft_kit::host::Identity {
    name: "notification",
    service: "weft.notification.v1.NotificationService",
    version: env!("CARGO_PKG_VERSION"),
    ports: weft_kit::host::Ports::new(5053, 9103),
};

/// The notification service.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "weft-notification",
    version,
    about = "weft notification service: welcome, order and shipping messages by email and SMS"
)]
pub struct Config {
    /// Data, server limits, Kafka, pruning and telemetry.
    #[command(flatten)]
    pub common: weft_events::ServiceArgs,
    /// SMTP server, e.g. `smtp://127.0.0.1:2525` or `smtp://user:pass@host:587?tls=required`;
    /// without it emails are written to the mail directory (`--mail-format`).
    #[arg(long, env = "WEFT_SMTP_URL")]
    pub smtp_url: Option<Secret<String>>,
    /// Where mail files go when no SMTP server is set [default: <data dir>/mail].
    #[arg(long, env = "WEFT_MAIL_DIR")]
    pub mail_dir: Option<PathBuf>,
    /// How mail files are written when no SMTP server is set: `mbox`, a mailbox a day
    /// (`<YYYY-MM-DD>.mbox`, appended), or `eml`, a file a message
    /// (`<notification id>.eml`).
    #[arg(long, env = "WEFT_MAIL_FORMAT", value_enum, default_value_t = MailFormat::Mbox)]
    pub mail_format: MailFormat,
    /// Sender of every email.
    #[arg(
        long,
        env = "WEFT_MAIL_FROM",
        default_value = "weft <no-reply@weft.localhost>"
    )]
    pub mail_from: String,
    /// Webhook that text messages are POSTed to; without it they are written as JSON
    /// files to the SMS directory.
    #[arg(long, env = "WEFT_SMS_WEBHOOK_URL")]
    pub sms_webhook_url: Option<Secret<String>>,
    /// Where text messages go when no webhook is set [default: <data dir>/sms].
    #[arg(long, env = "WEFT_SMS_DIR")]
    pub sms_dir: Option<PathBuf>,
    /// Read the templates from this directory instead of the built-in ones (every
    /// file of the service's `templates/` must be there).
    #[arg(long, env = "WEFT_TEMPLATE_DIR")]
    pub template_dir: Option<PathBuf>,
    /// Delivery attempts before a message is given up on (its event then goes to the
    /// dead-letter topic).
    #[arg(long, env = "WEFT_DELIVERY_MAX_ATTEMPTS", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: u32,
    /// Messages one recipient (email address or phone number) may get, e.g. `20/h`;
    /// more are not sent (SUPPRESSED), whoever asks.
    #[arg(long, env = "WEFT_RECIPIENT_LIMIT", default_value = "20/h")]
    pub recipient_limit: weft_kit::rate::Rate,
    /// Base URL of the gateway's pages, for the link in verification emails.
    #[arg(long, env = "WEFT_PUBLIC_URL", default_value = "http://localhost:8080")]
    pub public_url: String,
    /// Messages sent at once by the delivery worker.
    #[arg(long, env = "WEFT_DELIVERY_CONCURRENCY", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub delivery_concurrency: u32,
    /// Time limit of one SMTP or webhook exchange.
    #[arg(long, env = "WEFT_SEND_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub send_timeout: Duration,
    /// Token keys.
    #[command(flatten)]
    pub jwks: weft_auth::JwksArgs,
    /// Consumer group.
    #[arg(long, env = "WEFT_CONSUMER_GROUP", default_value = "weft-notification")]
    pub consumer_group: String,
    /// Consumer behaviour shared by every consuming service.
    #[command(flatten)]
    pub consumer: weft_events::consumer::offsets::ConsumerArgs,
}

/// How mail files are written (`--mail-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MailFormat {
    /// A mailbox a day, appended: one write a message.
    Mbox,
    /// A file a message, named by its notification id.
    Eml,
}

impl Config {
    /// The mail directory in effect.
    pub fn mail_dir(&self) -> PathBuf {
        self.mail_dir
            .clone()
            .unwrap_or_else(|| self.common.data_dir.join("mail"))
    }

    /// The SMS directory in effect.
    pub fn sms_dir(&self) -> PathBuf {
        self.sms_dir
            .clone()
            .unwrap_or_else(|| self.common.data_dir.join("sms"))
    }
}
