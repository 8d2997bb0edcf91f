//! `weft demo --load`: an open-loop load at a fixed rate for a fixed time. A few
//! customers, each with an order, are made first; then each tick sends the next
//! operation of the mix without waiting for the previous ones (at most 1024 in
//! flight: beyond that a tick counts as a client-side failure), and the
//! [`report`](super::report) prints progress and a summary.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use weft_proto::order::{CreateOrderRequest, GetOrderRequest, OrderItem};
use weft_proto::user::{LoginRequest, SignUpRequest, SignupSource};

use super::mesh::{Mesh, PASSWORD, authed};
use super::mix::{self, Op};
use super::report::{Progress, Tally};

/// How many requests may wait for an answer at once.
const IN_FLIGHT: usize = 1024;

/// Runs the load: `rate` operations a second of `mix` for `duration`.
pub(super) async fn load(
    mesh: &Mesh,
    run_id: &str,
    rate: f64,
    duration: Duration,
    mix: &[(Op, u32)],
) -> anyhow::Result<()> {
    let customers = Arc::new(customers(mesh, run_id).await?);
    let schedule = mix::schedule(mix);
    println!(
        "load: {rate:.0}/s for {duration:?}, mix {} (open loop; one line a second)",
        mix::describe(mix)
    );
    let mut sender = Sender {
        mesh,
        run_id,
        customers,
        tally: Arc::new(Mutex::new(Tally::default())),
        in_flight: Arc::new(Semaphore::new(IN_FLIGHT)),
        tasks: JoinSet::new(),
    };
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = 0u64;
    let mut progress = Progress::new();
    while started.elapsed() < duration {
        tick.tick().await;
        let op = schedule[(sent as usize) % schedule.len()];
        let accepted = sender.send(op, sent);
        sent += 1;
        if !accepted {
            continue;
        }
        while sender.tasks.try_join_next().is_some() {}
        progress.print_due(started.elapsed(), &sender.tally);
    }
    while sender.tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    Tally::lock(&sender.tally).print_summary(sent, elapsed, rate);
    Ok(())
}

/// The customers that order and read: each signed up, logged in (its access token)
/// and with an order to read (its id).
async fn customers(mesh: &Mesh, run_id: &str) -> anyhow::Result<Vec<(String, String)>> {
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
    Ok(customers)
}

/// Sends the operations of the load, each on a task of its own.
struct Sender<'a> {
    mesh: &'a Mesh,
    run_id: &'a str,
    customers: Arc<Vec<(String, String)>>,
    tally: Arc<Mutex<Tally>>,
    in_flight: Arc<Semaphore>,
    tasks: JoinSet<()>,
}

impl Sender<'_> {
    /// Sends operation `n`, an `op`, unless too many are in flight (then it is
    /// counted as failed and false returned).
    fn send(&mut self, op: Op, n: u64) -> bool {
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            Tally::lock(&self.tally).failed(format!("client saturated ({IN_FLIGHT} in flight)"));
            return false;
        };
        let (m, customers, shared) = (
            self.mesh.clone(),
            self.customers.clone(),
            self.tally.clone(),
        );
        let run_id = self.run_id.to_owned();
        self.tasks.spawn(async move {
            let _permit = permit;
            let t = Instant::now();
            let result = one(m, op, n, &run_id, &customers).await;
            let mut tally = Tally::lock(&shared);
            match result {
                Ok(()) => tally.ok(op, t.elapsed()),
                Err(code) => tally.failed(format!("{} {code}", op.name())),
            }
        });
        true
    }
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
                super::mesh::authed(
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
