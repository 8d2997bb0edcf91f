//! `weft demo`: the seed's story against a running mesh, one line per step (sign up,
//! verify the email, log in, the welcome order, the seed order 2 × 29.99 + 49.99 =
//! 109.97 USD from the catalogue, payment, a staff member ships it, the emails, the
//! analytics counts); then, with `--load`, an open-loop load of sign-ups, orders and
//! reads at a fixed rate for a fixed time, one progress line a second and a summary
//! (like k6's) at the end. Loopback only unless `--allow-remote`; bounded in rate and
//! time.

use std::collections::BTreeMap;
use std::net::ToSocketAddrs as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tonic::transport::Channel;
use weft_proto::analytics::GetMetricsRequest;
use weft_proto::analytics::analytics_service_client::AnalyticsServiceClient;
use weft_proto::order::order_service_client::OrderServiceClient;
use weft_proto::order::{
    CreateOrderRequest, GetOrderRequest, ListOrdersRequest, OrderItem, OrderKind, PayOrderRequest,
    PaymentCard, ShipOrderRequest,
};
use weft_proto::user::user_service_client::UserServiceClient;
use weft_proto::user::{LoginRequest, SignUpRequest, SignupSource, VerifyEmailRequest};

use crate::cli::DemoArgs;

const PASSWORD: &str = "correct horse battery 9";
/// Highest rate and longest run `--load` accepts.
const MAX_RATE: f64 = 5000.0;
const MAX_DURATION: Duration = Duration::from_secs(600);

/// Runs `weft demo`.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let mix = parse_mix(&args.mix)?;
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
        story(&mesh, &args.data_dir, &run_id).await?;
    }
    if args.load {
        load(&mesh, &run_id, rate, args.duration, &mix).await?;
    }
    Ok(())
}

#[derive(Clone)]
struct Mesh {
    users: UserServiceClient<Channel>,
    orders: OrderServiceClient<Channel>,
    analytics: AnalyticsServiceClient<Channel>,
}

fn is_loopback(addr: &str) -> anyhow::Result<bool> {
    let resolved: Vec<_> = addr
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {addr}"))?
        .collect();
    Ok(!resolved.is_empty() && resolved.iter().all(|a| a.ip().is_loopback()))
}

/// `signup=1,order=5,read=20` → weights.
fn parse_mix(mix: &str) -> anyhow::Result<Vec<(Op, u32)>> {
    let mut out = Vec::new();
    for part in mix.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, weight) = part
            .split_once('=')
            .with_context(|| format!("{part:?} is not name=weight"))?;
        let op = match name.trim() {
            "signup" => Op::Signup,
            "order" => Op::Order,
            "read" => Op::Read,
            other => bail!("unknown operation {other:?} in --mix; use signup, order, read"),
        };
        let weight: u32 = weight
            .trim()
            .parse()
            .with_context(|| format!("{weight:?} is not a whole number"))?;
        out.push((op, weight));
    }
    if out.iter().map(|(_, w)| w).sum::<u32>() == 0 {
        bail!("--mix needs at least one operation with a weight above 0");
    }
    Ok(out)
}

fn authed<T>(message: T, token: &str) -> anyhow::Result<tonic::Request<T>> {
    let mut req = tonic::Request::new(message);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    Ok(req)
}

async fn step<T, F: std::future::Future<Output = anyhow::Result<T>>>(
    what: &str,
    f: F,
) -> anyhow::Result<T> {
    let t = Instant::now();
    print!("▸ {what} … ");
    let out = f.await;
    match &out {
        Ok(_) => println!("ok ({} ms)", t.elapsed().as_millis()),
        Err(e) => println!("failed: {e:#}"),
    }
    out
}

async fn wait_for<T, F, Fut>(what: &str, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = probe().await? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("{what} did not happen within a minute");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The newest verification token mailed to `email` under `<data dir>/mail`.
fn mailed_token(data_dir: &Path, email: &str) -> Option<String> {
    let mut mails: Vec<_> = std::fs::read_dir(data_dir.join("mail"))
        .ok()?
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
        .collect();
    mails.sort_by_key(|e| e.metadata().and_then(|m| m.modified()).ok());
    mails.iter().rev().find_map(|e| {
        let text = std::fs::read_to_string(e.path()).ok()?;
        // Quoted-printable: join soft line breaks and undo `=3D` before reading.
        let text = text
            .replace("=\r\n", "")
            .replace("=\n", "")
            .replace("=3D", "=");
        if !text
            .lines()
            .any(|l| l.starts_with("To:") && l.contains(email))
        {
            return None;
        }
        let at = text.find("/verify?token=")? + "/verify?token=".len();
        let token: String = text[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
            .collect();
        (!token.is_empty()).then_some(token)
    })
}

fn mails_to(data_dir: &Path, email: &str) -> usize {
    std::fs::read_dir(data_dir.join("mail"))
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    std::fs::read_to_string(e.path())
                        .is_ok_and(|t| t.lines().any(|l| l.starts_with("To:") && l.contains(email)))
                })
                .count()
        })
        .unwrap_or(0)
}

async fn story(mesh: &Mesh, data_dir: &Path, run_id: &str) -> anyhow::Result<()> {
    let mut m = mesh.clone();
    let email = format!("demo-{run_id}@example.com");
    let staff_email = format!("demo-staff-{run_id}@example.com");
    println!(
        "the story, against the mesh (data in {}):",
        data_dir.display()
    );
    let user = step(&format!("signing up {email}"), async {
        m.users
            .sign_up(SignUpRequest {
                email: email.clone(),
                name: "Demo User".into(),
                password: PASSWORD.into(),
                source: SignupSource::Web as i32,
                ..Default::default()
            })
            .await?
            .into_inner()
            .user
            .context("no user in the answer")
    })
    .await?;
    let link = step("reading the verification email", async {
        wait_for("the verification email", || async {
            Ok(mailed_token(data_dir, &email))
        })
        .await
    })
    .await?;
    step("verifying the address with its link's token", async {
        let u = m
            .users
            .clone()
            .verify_email(VerifyEmailRequest { token: link })
            .await?
            .into_inner()
            .user
            .context("no user")?;
        anyhow::ensure!(u.email_verified, "the address is not verified");
        Ok(())
    })
    .await?;
    let users = m.users.clone();
    let login = |email: String| {
        let mut users = users.clone();
        async move {
            Ok::<_, anyhow::Error>(
                users
                    .login(LoginRequest {
                        email,
                        password: PASSWORD.into(),
                    })
                    .await?
                    .into_inner()
                    .access_token,
            )
        }
    };
    let token = step("logging in", login(email.clone())).await?;
    step("waiting for the welcome order (through Kafka)", async {
        wait_for("the welcome order", || {
            let mut orders = m.orders.clone();
            let req = authed(
                ListOrdersRequest {
                    user_id: user.user_id.clone(),
                    ..Default::default()
                },
                &token,
            );
            async move {
                let list = orders.list_orders(req?).await?.into_inner();
                Ok(list
                    .orders
                    .into_iter()
                    .find(|o| o.kind == OrderKind::Welcome as i32))
            }
        })
        .await
    })
    .await?;
    let order = step("ordering 2 × mug + 1 × lamp from the catalogue", async {
        let item = |id: &str, quantity| OrderItem {
            product_id: id.into(),
            quantity,
            ..Default::default()
        };
        m.orders
            .create_order(authed(
                CreateOrderRequest {
                    items: vec![item("mug", 2), item("lamp", 1)],
                    ..Default::default()
                },
                &token,
            )?)
            .await?
            .into_inner()
            .order
            .context("no order")
    })
    .await?;
    println!(
        "  order {} total {}",
        order.order_id,
        order
            .total
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default()
    );
    step("paying with the test card 4242…", async {
        m.orders
            .pay_order(authed(
                PayOrderRequest {
                    order_id: order.order_id.clone(),
                    card: Some(PaymentCard {
                        number: "4242424242424242".into(),
                        exp_month: 12,
                        exp_year: 2099,
                        cvc: "123".into(),
                    }),
                },
                &token,
            )?)
            .await?;
        Ok(())
    })
    .await?;
    step(
        &format!("making {staff_email} staff (as weft admin grant does)"),
        async {
            m.users
                .sign_up(SignUpRequest {
                    email: staff_email.clone(),
                    name: "Demo Staff".into(),
                    password: PASSWORD.into(),
                    source: SignupSource::Api as i32,
                    ..Default::default()
                })
                .await?;
            let db = crate::admin::open_at(data_dir).await?;
            weft_user::admin::change(
                &db,
                &staff_email,
                weft_auth::Role::Staff,
                weft_user::admin::Change::Grant,
                "weft demo",
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(())
        },
    )
    .await?;
    let staff = login(staff_email.clone()).await?;
    step("staff ship the order", async {
        m.orders
            .ship_order(authed(
                ShipOrderRequest {
                    order_id: order.order_id.clone(),
                    carrier: "UPS".into(),
                    tracking_number: "1Z999AA10123456784".into(),
                },
                &staff,
            )?)
            .await?;
        Ok(())
    })
    .await?;
    step(
        "waiting for the emails (verification, welcome, two confirmations, shipping)",
        async {
            wait_for("five emails", || async {
                Ok((mails_to(data_dir, &email) >= 5).then_some(()))
            })
            .await
        },
    )
    .await?;
    let metrics = m
        .analytics
        .get_metrics(GetMetricsRequest {})
        .await?
        .into_inner()
        .metrics
        .unwrap_or_default();
    println!(
        "  analytics: {} signups, {} orders, {} emails, {} events processed",
        metrics.signups, metrics.orders_created, metrics.emails_sent, metrics.events_processed
    );
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Signup,
    Order,
    Read,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Signup => "signup",
            Op::Order => "order",
            Op::Read => "read",
        }
    }
}

#[derive(Default)]
struct Tally {
    latencies: BTreeMap<Op, Vec<Duration>>,
    errors: BTreeMap<String, u64>,
}

/// The `q` quantile (0–1) of sorted durations; zero for none.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

async fn load(
    mesh: &Mesh,
    run_id: &str,
    rate: f64,
    duration: Duration,
    mix: &[(Op, u32)],
) -> anyhow::Result<()> {
    // The customers that order and read, each with an order to read.
    let mut customers = Vec::new();
    for i in 0..4 {
        let mut m = mesh.clone();
        let email = format!("load-{run_id}-c{i}@example.com");
        m.users
            .sign_up(SignUpRequest {
                email: email.clone(),
                name: "Load".into(),
                password: PASSWORD.into(),
                source: SignupSource::Api as i32,
                ..Default::default()
            })
            .await?;
        let login = m
            .users
            .login(LoginRequest {
                email,
                password: PASSWORD.into(),
            })
            .await?
            .into_inner();
        let order = m
            .orders
            .create_order(authed(
                CreateOrderRequest {
                    items: vec![OrderItem {
                        product_id: "mug".into(),
                        quantity: 1,
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                &login.access_token,
            )?)
            .await?
            .into_inner()
            .order
            .context("no order")?;
        customers.push((login.access_token, order.order_id));
    }
    let customers = Arc::new(customers);
    let schedule: Vec<Op> = mix
        .iter()
        .flat_map(|(op, w)| std::iter::repeat_n(*op, *w as usize))
        .collect();
    println!(
        "load: {rate:.0}/s for {duration:?}, mix {} (open loop; one line a second)",
        mix.iter()
            .map(|(op, w)| format!("{}={w}", op.name()))
            .collect::<Vec<_>>()
            .join(",")
    );
    let tally = Arc::new(Mutex::new(Tally::default()));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(1024));
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = 0u64;
    let mut next_report = Duration::from_secs(1);
    let mut reported = (0usize, 0u64);
    let mut tasks = tokio::task::JoinSet::new();
    while started.elapsed() < duration {
        tick.tick().await;
        let op = schedule[(sent as usize) % schedule.len()];
        let (m, customers, shared) = (mesh.clone(), customers.clone(), tally.clone());
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            *tally
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .errors
                .entry("client saturated (1024 in flight)".into())
                .or_default() += 1;
            sent += 1;
            continue;
        };
        let n = sent;
        let run_id = run_id.to_owned();
        tasks.spawn(async move {
            let _permit = permit;
            let t = Instant::now();
            let result = one(m, op, n, &run_id, &customers).await;
            let mut tally = shared.lock().unwrap_or_else(|e| e.into_inner());
            match result {
                Ok(()) => tally.latencies.entry(op).or_default().push(t.elapsed()),
                Err(code) => {
                    *tally
                        .errors
                        .entry(format!("{} {code}", op.name()))
                        .or_default() += 1
                }
            }
        });
        sent += 1;
        while tasks.try_join_next().is_some() {}
        if started.elapsed() >= next_report {
            let tally = tally.lock().unwrap_or_else(|e| e.into_inner());
            let ok: usize = tally.latencies.values().map(Vec::len).sum();
            let errors: u64 = tally.errors.values().sum();
            let mut recent: Vec<Duration> = tally
                .latencies
                .values()
                .flat_map(|v| v.iter().rev().take(500).copied())
                .collect();
            recent.sort();
            println!(
                "  {:>4} s  {:>6.0} ok/s  ok {ok:>7}  errors {errors:>5}  p50 {:>7.1?}  p99 {:>7.1?}",
                next_report.as_secs(),
                (ok - reported.0) as f64,
                quantile(&recent, 0.5),
                quantile(&recent, 0.99)
            );
            reported = (ok, errors);
            next_report += Duration::from_secs(1);
        }
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    let tally = tally.lock().unwrap_or_else(|e| e.into_inner());
    let ok: usize = tally.latencies.values().map(Vec::len).sum();
    let errors: u64 = tally.errors.values().sum();
    println!(
        "summary: {sent} requests in {elapsed:.1?} ({:.0}/s of {rate:.0}/s asked), {ok} ok, {errors} failed",
        sent as f64 / elapsed.as_secs_f64()
    );
    for (op, lat) in &tally.latencies {
        let mut lat = lat.clone();
        lat.sort();
        println!(
            "  {:<7} {:>7} ok   p50 {:>8.1?}  p90 {:>8.1?}  p99 {:>8.1?}  max {:>8.1?}",
            op.name(),
            lat.len(),
            quantile(&lat, 0.5),
            quantile(&lat, 0.9),
            quantile(&lat, 0.99),
            lat.last().copied().unwrap_or_default()
        );
    }
    for (what, n) in &tally.errors {
        println!("  failed: {what} × {n}");
    }
    Ok(())
}

/// One operation of the load; the gRPC code when it failed.
async fn one(
    mut m: Mesh,
    op: Op,
    n: u64,
    run_id: &str,
    customers: &[(String, String)],
) -> Result<(), tonic::Code> {
    let (token, order_id) = &customers[(n as usize) % customers.len()];
    let authed = |message| authed(message, token).map_err(|_| tonic::Code::Internal);
    let result = match op {
        Op::Signup => m
            .users
            .sign_up(SignUpRequest {
                email: format!("load-{run_id}-{n}@example.com"),
                name: "Load".into(),
                password: PASSWORD.into(),
                source: SignupSource::Api as i32,
                ..Default::default()
            })
            .await
            .map(drop),
        Op::Order => m
            .orders
            .create_order(authed(CreateOrderRequest {
                items: vec![OrderItem {
                    product_id: "lamp".into(),
                    quantity: 1,
                    ..Default::default()
                }],
                ..Default::default()
            })?)
            .await
            .map(drop),
        Op::Read => m
            .orders
            .get_order(
                self::authed(
                    GetOrderRequest {
                        order_id: order_id.clone(),
                    },
                    token,
                )
                .map_err(|_| tonic::Code::Internal)?,
            )
            .await
            .map(drop),
    };
    result.map_err(|s| s.code())
}
