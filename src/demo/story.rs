//! The seed's story against a running mesh, one line per step: sign up, verify the
//! email with the mailed link's token, log in, the welcome order (made through
//! Kafka), the seed order 2 × mug + 1 × lamp, payment with the test card, a staff
//! member ships it, the five emails arrive, and the analytics counts.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use weft_proto::analytics::GetMetricsRequest;
use weft_proto::order::{
    CreateOrderRequest, ListOrdersRequest, Order, OrderItem, OrderKind, PayOrderRequest,
    PaymentCard, ShipOrderRequest,
};
use weft_proto::user::{LoginRequest, SignUpRequest, SignupSource, User, VerifyEmailRequest};

use super::mail::{mailed_token, mails_to};
use super::mesh::{Mesh, PASSWORD, authed};

/// Tells the story of run `run_id` against `mesh`, whose data dir is `data_dir`.
pub(super) async fn story(mesh: &Mesh, data_dir: &Path, run_id: &str) -> anyhow::Result<()> {
    let story = Story {
        mesh,
        data_dir,
        email: format!("demo-{run_id}@example.com"),
        staff_email: format!("demo-staff-{run_id}@example.com"),
    };
    println!(
        "the story, against the mesh (data in {}):",
        data_dir.display()
    );
    let user = step(&format!("signing up {}", story.email), story.sign_up()).await?;
    let link = step("reading the verification email", story.verification_link()).await?;
    step(
        "verifying the address with its link's token",
        story.verify(link),
    )
    .await?;
    let token = step("logging in", story.login(&story.email)).await?;
    step(
        "waiting for the welcome order (through Kafka)",
        story.welcome_order(&user, &token),
    )
    .await?;
    let order = step(
        "ordering 2 × mug + 1 × lamp from the catalogue",
        story.order(&token),
    )
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
    step("paying with the test card 4242…", story.pay(&order, &token)).await?;
    step(
        &format!(
            "making {} staff (as weft admin grant does)",
            story.staff_email
        ),
        story.make_staff(),
    )
    .await?;
    let staff = story.login(&story.staff_email).await?;
    step("staff ship the order", story.ship(&order, &staff)).await?;
    step(
        "waiting for the emails (verification, welcome, two confirmations, shipping)",
        story.emails(),
    )
    .await?;
    story.print_analytics().await
}

/// Runs `f` as one line of the story: what it does, then `ok` and how long it took,
/// or why it failed.
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

/// What `probe` finds, probing every 100 ms for up to a minute.
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

/// The story's mesh and its two people: the customer and the staff member.
struct Story<'a> {
    mesh: &'a Mesh,
    data_dir: &'a Path,
    email: String,
    staff_email: String,
}

impl Story<'_> {
    async fn sign_up(&self) -> anyhow::Result<User> {
        self.mesh
            .users
            .clone()
            .sign_up(SignUpRequest {
                email: self.email.clone(),
                name: "Demo User".into(),
                password: PASSWORD.into(),
                source: SignupSource::Web as i32,
                ..Default::default()
            })
            .await?
            .into_inner()
            .user
            .context("no user in the answer")
    }

    async fn verification_link(&self) -> anyhow::Result<String> {
        wait_for("the verification email", || async {
            Ok(mailed_token(self.data_dir, &self.email))
        })
        .await
    }

    async fn verify(&self, token: String) -> anyhow::Result<()> {
        let u = self
            .mesh
            .users
            .clone()
            .verify_email(VerifyEmailRequest { token })
            .await?
            .into_inner()
            .user
            .context("no user")?;
        anyhow::ensure!(u.email_verified, "the address is not verified");
        Ok(())
    }

    /// The access token of `email`.
    async fn login(&self, email: &str) -> anyhow::Result<String> {
        Ok(self
            .mesh
            .users
            .clone()
            .login(LoginRequest {
                email: email.to_owned(),
                password: PASSWORD.into(),
            })
            .await?
            .into_inner()
            .access_token)
    }

    /// Waits until the order service, told of the sign-up through Kafka, has made
    /// `user`'s welcome order.
    async fn welcome_order(&self, user: &User, token: &str) -> anyhow::Result<Order> {
        wait_for("the welcome order", || {
            let mut orders = self.mesh.orders.clone();
            let req = authed(
                ListOrdersRequest {
                    user_id: user.user_id.clone(),
                    ..Default::default()
                },
                token,
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
    }

    async fn order(&self, token: &str) -> anyhow::Result<Order> {
        let item = |id: &str, quantity| OrderItem {
            product_id: id.into(),
            quantity,
            ..Default::default()
        };
        self.mesh
            .orders
            .clone()
            .create_order(authed(
                CreateOrderRequest {
                    items: vec![item("mug", 2), item("lamp", 1)],
                    ..Default::default()
                },
                token,
            )?)
            .await?
            .into_inner()
            .order
            .context("no order")
    }

    async fn pay(&self, order: &Order, token: &str) -> anyhow::Result<()> {
        self.mesh
            .orders
            .clone()
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
                token,
            )?)
            .await?;
        Ok(())
    }

    /// Signs up the staff member and grants the role in the user database, as
    /// `weft admin grant` does.
    async fn make_staff(&self) -> anyhow::Result<()> {
        self.mesh
            .users
            .clone()
            .sign_up(SignUpRequest {
                email: self.staff_email.clone(),
                name: "Demo Staff".into(),
                password: PASSWORD.into(),
                source: SignupSource::Api as i32,
                ..Default::default()
            })
            .await?;
        let db = crate::admin::open_at(self.data_dir).await?;
        weft_user::admin::change(
            &db,
            &self.staff_email,
            weft_auth::Role::Staff,
            weft_user::admin::Change::Grant,
            "weft demo",
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(())
    }

    async fn ship(&self, order: &Order, staff_token: &str) -> anyhow::Result<()> {
        self.mesh
            .orders
            .clone()
            .ship_order(authed(
                ShipOrderRequest {
                    order_id: order.order_id.clone(),
                    carrier: "UPS".into(),
                    tracking_number: "1Z999AA10123456784".into(),
                },
                staff_token,
            )?)
            .await?;
        Ok(())
    }

    /// Waits for the customer's five emails: verification, welcome, two
    /// confirmations and shipping.
    async fn emails(&self) -> anyhow::Result<()> {
        wait_for("five emails", || async {
            Ok((mails_to(self.data_dir, &self.email) >= 5).then_some(()))
        })
        .await
    }

    async fn print_analytics(&self) -> anyhow::Result<()> {
        let metrics = self
            .mesh
            .analytics
            .clone()
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
}
