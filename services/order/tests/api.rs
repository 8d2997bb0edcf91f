//! The order service through real sockets, beside the real user service and broker:
//! the welcome order saga, exact totals, payments, shipping, authorization, pages,
//! idempotency and bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use prost::Message;
use rdkafka::Message as _;
use rdkafka::message::OwnedMessage;
use support::*;
use tonic::Code;
use weft_proto::order::*;
use weft_testkit::Caller::*;
use weft_testkit::{header, on_each_db, read_topic_until};

const WAIT: Duration = Duration::from_secs(60);

/// The first of `events` that `pick` chooses, decoded as `E`.
fn decode_first<E: Message + Default>(
    events: &[OwnedMessage],
    pick: impl Fn(&OwnedMessage) -> bool,
) -> E {
    let record = events.iter().find(|m| pick(m)).expect("a record as picked");
    E::decode(record.payload().unwrap()).unwrap()
}

/// Whether a record's CloudEvents type is `ce_type`.
fn of_type(ce_type: &str) -> impl Fn(&OwnedMessage) -> bool + '_ {
    move |m| header(m, "ce_type") == Some(ce_type)
}

on_each_db!(
    welcome_saga_and_order_lifecycle,
    control_characters_are_refused,
    concurrent_creates_are_each_written_as_asked
);

async fn welcome_saga_and_order_lifecycle(db: Db) {
    let shop = spawn_shop(db, "ada@example.com", "ops@example.com").await;
    let Shop {
        mesh,
        customer: ada,
        token,
        staff,
        mut orders,
    } = shop;

    // The welcome order arrives through user-events → order service.
    let welcome = weft_testkit::eventually("the welcome order", WAIT, || {
        let mut orders = orders.clone();
        let req = with_token(ListOrdersRequest::default(), &token);
        async move {
            let page = orders.list_orders(req).await.ok()?.into_inner();
            page.orders
                .into_iter()
                .find(|o| o.kind == OrderKind::Welcome as i32)
        }
    })
    .await;
    assert_eq!(welcome.user_id, ada);
    assert_eq!(welcome.status, OrderStatus::Confirmed as i32);
    assert_eq!(welcome.total, usd(0, 0));
    assert_eq!(welcome.items[0].name, "Welcome Package");

    // Its OrderCreated keeps the signup's correlation and names the signup as cause.
    let signed_up = |m: &rdkafka::message::OwnedMessage| {
        header(m, "ce_type") == Some("weft.user.v1.UserSignedUp") && m.key() == Some(ada.as_bytes())
    };
    let signup: Vec<_> = read_topic_until(&mesh.home.bootstrap(), "user-events", WAIT, |s| {
        s.iter().any(signed_up)
    })
    .into_iter()
    .filter(signed_up)
    .collect();
    let created: Vec<_> = read_topic_until(&mesh.home.bootstrap(), "order-events", WAIT, |s| {
        s.iter()
            .any(|m| m.key() == Some(welcome.order_id.as_bytes()))
    })
    .into_iter()
    .filter(|m| m.key() == Some(welcome.order_id.as_bytes()))
    .collect();
    assert_eq!(created.len(), 1);
    assert_eq!(
        header(&created[0], "ce_type"),
        Some("weft.order.v1.OrderCreated")
    );
    assert_eq!(
        header(&created[0], "ce_correlationid"),
        header(&signup[0], "ce_correlationid")
    );
    assert_eq!(
        header(&created[0], "ce_causationid"),
        header(&signup[0], "ce_id")
    );
    assert_eq!(created[0].key(), Some(welcome.order_id.as_bytes()));

    // The manual seed order totals exactly 109.97 USD.
    let order = create_order(&mut orders, seed_order(), &token).await;
    assert_eq!(order.total, usd(109, 970_000_000));
    assert_eq!(order.status, OrderStatus::Pending as i32);
    let events = read_topic_until(&mesh.home.bootstrap(), "order-events", WAIT, |s| {
        s.iter().any(|m| m.key() == Some(order.order_id.as_bytes()))
    });
    let event: OrderCreated = decode_first(&events, |m| m.key() == Some(order.order_id.as_bytes()));
    assert_eq!(event.total, usd(109, 970_000_000));
    assert_eq!(event.kind, OrderKind::Regular as i32);

    // Pay, ship, deliver; then cancelling is a failed precondition.
    let paid = orders
        .pay_order(with_token(
            PayOrderRequest {
                order_id: order.order_id.clone(),
                card: card("4242 4242 4242 4242"),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(paid.order.unwrap().status, OrderStatus::Confirmed as i32);
    assert!(!paid.payment_id.is_empty());
    // Customers do not ship or deliver their own orders; staff do.
    let callers = Callers::new().with(Customer, &token).with(Staff, &staff);
    let ship = Rpc::ship(&order.order_id, "UPS", "1Z999AA10123456784");
    let deliver = Rpc::deliver(&order.order_id);
    let [shipped, delivered] = callers
        .expect_codes(
            [
                (Customer, ship.clone(), Code::PermissionDenied),
                (Staff, ship, Code::Ok),
                (Customer, deliver.clone(), Code::PermissionDenied),
                (Staff, deliver, Code::Ok),
            ],
            async |auth, rpc| rpc.send(&mut orders, auth).await,
        )
        .await
        .try_into()
        .unwrap();
    let (shipped, delivered) = (shipped.order(), delivered.order());
    assert_eq!(shipped.status, OrderStatus::Shipped as i32);
    assert_eq!(shipped.tracking_number, "1Z999AA10123456784");
    assert_eq!(delivered.status, OrderStatus::Delivered as i32);
    let err = Rpc::cancel(&order.order_id, "late")
        .send(&mut orders, callers.auth(Customer))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("ORDER_STATUS_DELIVERED"),
        "{}",
        err.message()
    );

    let events = read_topic_until(&mesh.home.bootstrap(), "order-events", WAIT, |s| {
        s.iter().any(of_type("weft.order.v1.OrderDelivered"))
    });
    let types: Vec<_> = events.iter().filter_map(|m| header(m, "ce_type")).collect();
    for t in [
        "weft.order.v1.PaymentProcessed",
        "weft.order.v1.OrderShipped",
        "weft.order.v1.OrderDelivered",
    ] {
        assert!(types.contains(&t), "{t} missing from {types:?}");
    }
    let shipped_event: OrderShipped = decode_first(&events, of_type("weft.order.v1.OrderShipped"));
    assert_eq!(shipped_event.carrier, "UPS");
    let paid_event: PaymentProcessed =
        decode_first(&events, of_type("weft.order.v1.PaymentProcessed"));
    assert_eq!(paid_event.card_last4, "4242");
    assert!(
        !format!("{paid_event:?}").contains("4242424242424242"),
        "no full card number"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_see_only_their_own_orders() {
    let shop = spawn_shop(Db::Sqlite, "ada@example.com", "root@example.com").await;
    let Shop {
        mesh,
        customer: ada,
        token: ada_token,
        staff: root_token,
        mut orders,
    } = shop;
    let (_, bob_token) = mesh.user("bob@example.com").await;
    let order = create_order(&mut orders, seed_order(), &ada_token).await;

    let foreign = weft_auth::Issuer::new(
        std::sync::Arc::new(weft_auth::SigningKeys::ephemeral().unwrap()),
        weft_auth::TokenConfig::default(),
    )
    .issue(&ada, &[])
    .unwrap()
    .0;
    let callers = Callers::new()
        .with(OtherCustomer, &bob_token)
        .with(BadToken("not-a-token"), "not-a-token")
        .with(ForeignKey, foreign)
        .with(Staff, &root_token);
    let id = &order.order_id;
    let [read] = callers
        .expect_codes(
            [
                (OtherCustomer, Rpc::get_order(id), Code::NotFound),
                (Anonymous, Rpc::get_order(id), Code::Unauthenticated),
                (
                    BadToken("not-a-token"),
                    Rpc::get_order(id),
                    Code::Unauthenticated,
                ),
                (ForeignKey, Rpc::get_order(id), Code::Unauthenticated),
                (Staff, Rpc::get_order(id), Code::Ok),
                (OtherCustomer, Rpc::orders_of(&ada), Code::NotFound),
                (OtherCustomer, Rpc::ship(id, "UPS", "X1"), Code::NotFound),
                (
                    OtherCustomer,
                    Rpc::pay(id, "4242424242424242"),
                    Code::NotFound,
                ),
                (OtherCustomer, Rpc::cancel(id, ""), Code::NotFound),
            ],
            async |auth, rpc| rpc.send(&mut orders, auth).await,
        )
        .await
        .try_into()
        .unwrap();
    assert_eq!(read.order().user_id, ada);
    let mut for_ada = seed_order();
    for_ada.user_id = ada.clone();
    let for_ada = Rpc::CreateOrder(for_ada).send(&mut orders, callers.auth(OtherCustomer));
    expect_fields(for_ada.await, &["user_id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_orders_are_invalid_argument_naming_the_fields() {
    let mesh = spawn_mesh(Db::Sqlite).await;
    let (_, token) = mesh.user("ada@example.com").await;
    let mut orders = mesh.ready(&token).await;
    let create = |items: Vec<OrderItem>| CreateOrderRequest {
        items,
        ..Default::default()
    };
    let eur = Some(weft_proto::common::Money {
        currency_code: "EUR".into(),
        units: 1,
        nanos: 0,
    });
    let xxx = Some(weft_proto::common::Money {
        currency_code: "XXX".into(),
        units: 1,
        nanos: 0,
    });
    let cases: Vec<(CreateOrderRequest, Vec<&str>)> = vec![
        (create(vec![]), vec!["items"]),
        (
            create(vec![item("mug", 0, None)]),
            vec!["items[0].quantity"],
        ),
        (
            create(vec![item("mug", -2, None)]),
            vec!["items[0].quantity"],
        ),
        (
            create(vec![item("mug", 1, usd(-1, 0))]),
            vec!["items[0].unit_price"],
        ),
        (
            create(vec![item("mug", 1, usd(1, 5_000_000))]),
            vec!["items[0].unit_price"],
        ),
        (
            create(vec![item("mug", 1, xxx)]),
            vec!["items[0].unit_price"],
        ),
        // The price is the catalogue's: a cheaper one, zero, or another currency is
        // refused, naming the line.
        (
            create(vec![item("mug", 1, usd(0, 0))]),
            vec!["items[0].unit_price"],
        ),
        (
            create(vec![
                item("lamp", 1, usd(49, 990_000_000)),
                item("mug", 2, usd(1, 0)),
            ]),
            vec!["items[1].unit_price"],
        ),
        (
            create(vec![item("mug", 1, eur)]),
            vec!["items[0].unit_price"],
        ),
        // Unknown products, and ids that cannot be products.
        (
            create(vec![item("mug", 1, None), item("yacht", 1, None)]),
            vec!["items[1].product_id"],
        ),
        (create(vec![item("", 1, None)]), vec!["items[0].product_id"]),
        (
            create(vec![item("MUG\u{0}", 1, None)]),
            vec!["items[0].product_id"],
        ),
        (
            create((0..10_000).map(|i| item(&i.to_string(), 1, None)).collect()),
            vec!["items"],
        ),
        (
            create(vec![OrderItem {
                name: "n".repeat(1024 * 1024),
                ..item("mug", 1, None)
            }]),
            vec!["items[0].name"],
        ),
        (
            create(vec![OrderItem {
                name: "Mug\u{202e}gnp.exe".into(),
                ..item("mug", 1, None)
            }]),
            vec!["items[0].name"],
        ),
        (
            create(vec![item("mug", i32::MAX, None)]),
            vec!["items[0].quantity"],
        ),
    ];
    let as_ada = Auth::bearer(&token);
    for (req, want) in cases {
        let err = Rpc::CreateOrder(req)
            .send(&mut orders, as_ada)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{want:?}: {err:?}");
        assert_eq!(violations(&err), want);
    }

    let order = create_order(&mut orders, seed_order(), &token).await;
    let id = &order.order_id;
    let mut expired = Rpc::pay(id, "4242424242424242");
    if let Rpc::PayOrder(PayOrderRequest { card: Some(c), .. }) = &mut expired {
        c.exp_year = 2001;
        c.cvc = "x".into();
    }
    for (pay, fields) in [
        (Rpc::pay(id, "4242424242424241"), vec!["card.number"]),
        (expired, vec!["card.exp_year", "card.cvc"]),
    ] {
        expect_fields(pay.send(&mut orders, as_ada).await, &fields);
    }
    let declined = Rpc::pay(id, "4000000000000002").send(&mut orders, as_ada);
    let err = expect_code(declined.await, Code::FailedPrecondition);
    assert!(err.message().contains("declined"));
    let unavailable = Rpc::pay(id, "4000000000000119").send(&mut orders, as_ada);
    expect_code(unavailable.await, Code::Unavailable);
    let still = read_order(&mut orders, &order.order_id, &token).await;
    assert_eq!(
        still.status,
        OrderStatus::Pending as i32,
        "a failed payment leaves the order pending"
    );
    let payment_failed = of_type("weft.order.v1.PaymentFailed");
    let events = read_topic_until(&mesh.home.bootstrap(), "order-events", WAIT, |s| {
        s.iter().filter(|m| payment_failed(m)).count() >= 2
    });
    let failed: Vec<_> = events
        .iter()
        .filter(|m| payment_failed(m))
        .map(|m| PaymentFailed::decode(m.payload().unwrap()).unwrap())
        .collect();
    assert_eq!(
        failed.iter().map(|f| f.retryable).collect::<Vec<_>>(),
        [false, true]
    );

    // Shipping a pending order is illegal; bad shipping input is named.
    let (_, staff) = mesh.staff("ops@example.com").await;
    let as_staff = Auth::bearer(&staff);
    let pending = Rpc::ship(id, "UPS", "1Z9").send(&mut orders, as_staff);
    expect_code(pending.await, Code::FailedPrecondition);
    // Carrier and tracking number reach emails and text messages: plain text only.
    for (carrier, tracking, want) in [
        ("", "bad tracking!", vec!["carrier", "tracking_number"]),
        ("UPS\u{0}", "1Z9", vec!["carrier"]),
        ("UPS\r\nBcc: x@example.com", "1Z9", vec!["carrier"]),
        ("https://evil.example/track", "1Z9", vec!["carrier"]),
        ("Visit evil.example now", "1Z9", vec!["carrier"]),
        ("UPS", "www.evil.example", vec!["tracking_number"]),
        ("UPS", &"9".repeat(200), vec!["tracking_number"]),
        (&"U".repeat(200), "1Z9", vec!["carrier"]),
        ("UPS\u{202e}", "1Z9", vec!["carrier"]),
    ] {
        let err = Rpc::ship(id, carrier, tracking)
            .send(&mut orders, as_staff)
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "{carrier:?} {tracking:?}"
        );
        assert_eq!(violations(&err), want, "{carrier:?} {tracking:?}");
    }
    let page = |page_size, page_token: &str| {
        Rpc::ListOrders(ListOrdersRequest {
            page_size,
            page_token: page_token.into(),
            ..Default::default()
        })
    };
    for (rpc, field) in [
        (Rpc::cancel(id, "see http://evil.example\u{7}"), "reason"),
        (Rpc::get_order(""), "order_id"),
        (page(0, "%%%"), "page_token"),
        (page(-1, ""), "page_size"),
    ] {
        expect_fields(rpc.send(&mut orders, as_ada).await, &[field]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_creates_and_pages() {
    let mesh = spawn_mesh(Db::Sqlite).await;
    let (_, token) = mesh.user("ada@example.com").await;
    let mut orders = mesh.ready(&token).await;
    let mut keyed = seed_order();
    keyed.idempotency_key = "checkout-42".into();
    let a = create_order(&mut orders, keyed.clone(), &token).await;
    let b = create_order(&mut orders, keyed, &token).await;
    assert_eq!(
        a.order_id, b.order_id,
        "a retried create returns the first order"
    );
    // The same key with other items is refused, naming the key and its order; nothing
    // is created.
    let mut other = seed_order();
    other.idempotency_key = "checkout-42".into();
    other.items[0].quantity += 1;
    let other = Rpc::CreateOrder(other).send(&mut orders, Auth::bearer(&token));
    let err = expect_code(other.await, Code::AlreadyExists);
    assert!(
        err.message().contains("checkout-42") && err.message().contains(&a.order_id),
        "{}",
        err.message()
    );
    for _ in 0..4 {
        create_order(&mut orders, seed_order(), &token).await;
    }
    // 5 regular + 1 welcome (eventually) = 6 orders, in pages of 2, newest first.
    let all = weft_testkit::eventually("six orders", WAIT, || {
        let mut orders = orders.clone();
        let token = token.clone();
        async move {
            let mut seen = Vec::new();
            let mut page_token = String::new();
            loop {
                let page = orders
                    .list_orders(with_token(
                        ListOrdersRequest {
                            page_size: 2,
                            page_token,
                            ..Default::default()
                        },
                        &token,
                    ))
                    .await
                    .ok()?
                    .into_inner();
                assert!(page.orders.len() <= 2);
                seen.extend(page.orders);
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            (seen.len() == 6).then_some(seen)
        }
    })
    .await;
    let mut ids: Vec<_> = all.iter().map(|o| o.order_id.clone()).collect();
    let times: Vec<_> = all.iter().map(|o| o.create_time.unwrap().seconds).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 6, "no order on two pages");
    let events = read_topic_until(&mesh.home.bootstrap(), "order-events", WAIT, |s| {
        s.len() >= 6
    });
    assert_eq!(
        events.len(),
        6,
        "one OrderCreated per order, none for the retry"
    );
}

/// A NUL byte or another control character in any id or free-text field is a clear
/// INVALID_ARGUMENT naming the field — on PostgreSQL too, which would refuse to store
/// or even compare such text — and nothing is written.
async fn control_characters_are_refused(db: Db) {
    let shop = spawn_shop(db, "nul@example.com", "nul-staff@example.com").await;
    let Shop {
        token,
        staff,
        mut orders,
        ..
    } = shop;
    let order = create_order(&mut orders, seed_order(), &token).await;
    let callers = Callers::new().with(Customer, &token).with(Staff, &staff);
    let id = &order.order_id;
    for bad in ["\0", "ord\0er", "\u{7}"] {
        let rows = [
            (Staff, Rpc::get_order(bad), "order_id"),
            (Staff, Rpc::orders_of(bad), "user_id"),
            (Anonymous, Rpc::get_product(bad), "product_id"),
            (
                Customer,
                Rpc::cancel(id, &format!("changed my mind{bad}")),
                "reason",
            ),
            (
                Staff,
                Rpc::ship(id, &format!("UPS{bad}"), "1Z999"),
                "carrier",
            ),
        ];
        let rows = rows.map(|(who, rpc, field)| (who, (rpc, field), Code::InvalidArgument));
        callers
            .expect_codes(rows, async |auth, (rpc, field)| {
                let outcome = rpc.send(&mut orders, auth).await;
                if let Err(status) = &outcome {
                    assert_eq!(violations(status), [field], "{status:?}");
                }
                outcome
            })
            .await;
    }
    let unchanged = read_order(&mut orders, &order.order_id, &token).await;
    assert_eq!(
        unchanged.status,
        OrderStatus::Pending as i32,
        "nothing changed"
    );
}

/// Concurrent `CreateOrder` calls are written together (a statement per table for
/// many orders); each still gets exactly what it asked for. Unkeyed orders each get
/// their own lines; two calls under one key, even in one batch, make one order; of
/// two calls under one key with other items, one is refused; one `OrderCreated` per
/// order.
async fn concurrent_creates_are_each_written_as_asked(db: Db) {
    let mesh = spawn_mesh(db).await;
    let (_, token) = mesh.user("many@example.com").await;
    let orders = mesh.ready(&token).await;
    let lines = |i: usize| {
        let mut lines = vec![item("mug", 1 + (i % 3) as i32, usd(29, 990_000_000))];
        if i.is_multiple_of(2) {
            lines.push(item("lamp", 1 + (i % 5) as i32, usd(49, 990_000_000)));
        }
        lines
    };
    let request = |i: usize, key: String| CreateOrderRequest {
        user_id: String::new(),
        items: lines(i),
        idempotency_key: key,
    };
    // First 24 calls without a key, written together; then 8 keys sent twice with
    // the same items and one key with two different baskets, among 8 more without a
    // key: a batch with two calls under one key fails written together, and each of
    // its calls is written again on its own.
    let mut waves = vec![
        (0..24)
            .map(|i| request(i, String::new()))
            .collect::<Vec<_>>(),
    ];
    let mut second = Vec::new();
    for i in 0..8 {
        second.push(request(i, format!("twice-{i}")));
        second.push(request(i + 24, String::new()));
        second.push(request(i, format!("twice-{i}")));
    }
    second.push(request(1, "clash".into()));
    second.push(request(2, "clash".into()));
    waves.push(second);
    let mut calls = Vec::new();
    let mut answers = Vec::new();
    for wave in waves {
        let sent = wave.iter().cloned().map(|req| {
            let mut orders = orders.clone();
            let token = token.clone();
            async move {
                Rpc::CreateOrder(req)
                    .send(&mut orders, Auth::bearer(&token))
                    .await
                    .map(|reply| reply.order())
            }
        });
        answers.extend(futures::future::join_all(sent).await);
        calls.extend(wave);
    }

    let mut by_key: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut made = std::collections::BTreeSet::new();
    let mut refused = 0;
    for (req, answer) in calls.iter().zip(answers) {
        let order = match answer {
            Ok(order) => order,
            Err(status) if req.idempotency_key == "clash" => {
                assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
                refused += 1;
                continue;
            }
            Err(status) => panic!("{req:?} refused: {status:?}"),
        };
        let got: Vec<_> = order
            .items
            .iter()
            .map(|l| (l.product_id.clone(), l.quantity))
            .collect();
        let asked: Vec<_> = req
            .items
            .iter()
            .map(|l| (l.product_id.clone(), l.quantity))
            .collect();
        assert_eq!(got, asked, "the answer to {req:?}");
        // What was stored is what was asked, line by line.
        let stored = Rpc::GetOrder(GetOrderRequest {
            order_id: order.order_id.clone(),
        })
        .send(&mut orders.clone(), Auth::bearer(&token))
        .await
        .unwrap()
        .order();
        assert_eq!(
            stored.items, order.items,
            "stored lines of {}",
            order.order_id
        );
        if !req.idempotency_key.is_empty() {
            by_key
                .entry(req.idempotency_key.clone())
                .or_default()
                .push(order.order_id.clone());
        }
        made.insert(order.order_id);
    }
    assert_eq!(refused, 1, "one of the clashing baskets is refused");
    for (key, ids) in &by_key {
        let want = if key == "clash" { 1 } else { 2 };
        assert_eq!(ids.len(), want, "answers under {key}");
        assert!(
            ids.windows(2).all(|w| w[0] == w[1]),
            "one order under {key}: {ids:?}"
        );
    }
    assert_eq!(made.len(), 24 + 8 + 8 + 1, "distinct orders made");

    // One OrderCreated for each of them, and for the welcome order.
    let events = read_topic_until(&mesh.home.bootstrap(), "order-events", WAIT, |s| {
        s.len() > made.len()
    });
    let created: Vec<String> = events
        .iter()
        .filter(|m| of_type("weft.order.v1.OrderCreated")(m))
        .map(|m| OrderCreated::decode(m.payload().unwrap()).unwrap().order_id)
        .collect();
    assert_eq!(created.len(), made.len() + 1, "OrderCreated events");
    let distinct: std::collections::BTreeSet<_> = created.iter().cloned().collect();
    assert_eq!(distinct.len(), created.len(), "no order announced twice");
    assert!(made.is_subset(&distinct), "every order announced");
}
