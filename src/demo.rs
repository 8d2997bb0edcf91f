//! `weft demo`: the seed's story against a running mesh, one line per step (sign up,
//! verify the email, log in, the welcome order, the seed order 2 × 29.99 + 49.99 =
//! 109.97 USD from the catalogue, payment, a staff member ships it, the emails, the
//! analytics counts); then, with `--load`, an open-loop load of sign-ups, orders and
//! reads at a fixed rate for a fixed time, one progress line a second and a summary
//! (like k6's) at the end. Loopback only unless `--allow-remote`; bounded in rate and
//! time.

use std::net::ToSocketAddrs as _;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tonic::transport::Channel;
use weft_proto::analytics::analytics_service_client::AnalyticsServiceClient;
use weft_proto::order::order_service_client::OrderServiceClient;
use weft_proto::user::user_service_client::UserServiceClient;

use crate::cli::DemoArgs;

mod load;
mod mail;
mod mesh;
mod mix;
mod report;
mod story;

use mesh::Mesh;

pub use report::quantile;

/// Highest rate and longest run `--load` accepts.
const MAX_RATE: f64 = 5000.0;
const MAX_DURATION: Duration = Duration::from_secs(600);

/// Runs `weft demo`.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let mix = mix::parse_mix(&args.mix)?;
    let rate = f64::from(args.rate.count.get()) / args.rate.per.as_secs_f64();
    if args.load && (rate > MAX_RATE || args.duration > MAX_DURATION) {
        bail!("--load is bounded: at most {MAX_RATE}/s for at most {MAX_DURATION:?}");
    }
    for addr in [&args.user, &args.order, &args.analytics] {
        if !args.allow_remote && !is_loopback(addr)? {
            bail!(
                "{addr} is not this machine; the demo loads loopback only (--allow-remote to insist)"
            );
        }
    }
    let connect = |addr: &str| {
        Channel::from_shared(format!("http://{addr}"))
            .map(|c| c.connect_timeout(Duration::from_secs(5)).connect_lazy())
            .with_context(|| format!("{addr} is not an address"))
    };
    let mesh = Mesh {
        users: UserServiceClient::new(connect(&args.user)?),
        orders: OrderServiceClient::new(connect(&args.order)?),
        analytics: AnalyticsServiceClient::new(connect(&args.analytics)?),
    };
    let run_id = chrono::Utc::now().format("%Y%m%d%H%M%S%3f").to_string();
    if !args.skip_story {
        story::story(&mesh, &args.data_dir, &run_id).await?;
    }
    if args.load {
        load::load(&mesh, &run_id, rate, args.duration, &mix).await?;
    }
    Ok(())
}

fn is_loopback(addr: &str) -> anyhow::Result<bool> {
    let resolved: Vec<_> = addr
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {addr}"))?
        .collect();
    Ok(!resolved.is_empty() && resolved.iter().all(|a| a.ip().is_loopback()))
}
