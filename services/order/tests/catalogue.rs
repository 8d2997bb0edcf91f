//! The product catalogue through a real socket: anyone reads it, only staff change it,
//! orders are priced from it, and bad products are refused naming the field.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::*;
use tonic::Code;
use weft_proto::order::*;
use weft_testkit::Caller::*;

/// An order of `items`, for the caller.
fn order_of(items: Vec<OrderItem>) -> CreateOrderRequest {
    CreateOrderRequest {
        items,
        ..Default::default()
    }
}

fn product(id: &str, name: &str, units: i64, nanos: i32, active: bool) -> Product {
    Product {
        product_id: id.into(),
        name: name.into(),
        unit_price: usd(units, nanos),
        active,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalogue_prices_orders_and_only_staff_change_it() {
    let shop = spawn_shop(Db::Sqlite, "ada@example.com", "ops@example.com").await;
    let Shop {
        token: customer,
        staff,
        mut orders,
        ..
    } = shop;
    let callers = Callers::new().with(Customer, &customer).with(Staff, &staff);
    let (as_customer, as_staff) = (callers.auth(Customer), callers.auth(Staff));

    // The built-in seed, readable without a token.
    let [listed, mug] = callers
        .expect_codes(
            [
                (Anonymous, Rpc::ListProducts(Default::default()), Code::Ok),
                (Anonymous, Rpc::get_product("mug"), Code::Ok),
                (Anonymous, Rpc::get_product("yacht"), Code::NotFound),
            ],
            async |auth, rpc| rpc.send(&mut orders, auth).await,
        )
        .await
        .try_into()
        .unwrap();
    let listed = listed.products();
    let ids: Vec<_> = listed.iter().map(|p| p.product_id.as_str()).collect();
    assert!(ids.contains(&"mug") && ids.contains(&"lamp"), "{ids:?}");
    let mug = mug.product();
    assert_eq!(mug.unit_price, usd(29, 990_000_000));
    assert!(mug.active);

    // An order without prices is priced from the catalogue: 2 × 29.99 + 49.99.
    let order = Rpc::CreateOrder(order_of(vec![item("mug", 2, None), item("lamp", 1, None)]))
        .send(&mut orders, as_customer)
        .await
        .unwrap()
        .order();
    assert_eq!(order.total, usd(109, 970_000_000));
    assert_eq!(order.items[0].unit_price, usd(29, 990_000_000));
    assert_eq!(order.items[0].name, mug.name);

    // Customers and anonymous callers do not change the catalogue. Staff add a product;
    // a second with the same id is ALREADY_EXISTS.
    let price_cut = Rpc::UpdateProduct(UpdateProductRequest {
        product: Some(product("mug", "", 0, 10_000_000, true)),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["unit_price".into()],
        }),
    });
    let with_inactive = Rpc::ListProducts(ListProductsRequest {
        include_inactive: true,
        ..Default::default()
    });
    let lunch = || Rpc::create_product(product("free-lunch", "Lunch", 0, 0, true));
    let kettle = |units| Rpc::create_product(product("kettle", "Kettle", units, 0, true));
    let [kettle] = callers
        .expect_codes(
            [
                (Customer, lunch(), Code::PermissionDenied),
                (Anonymous, lunch(), Code::Unauthenticated),
                (Customer, price_cut.clone(), Code::PermissionDenied),
                (Customer, with_inactive.clone(), Code::PermissionDenied),
                (Staff, kettle(35), Code::Ok),
                (Staff, kettle(1), Code::AlreadyExists),
            ],
            async |auth, rpc| rpc.send(&mut orders, auth).await,
        )
        .await
        .try_into()
        .unwrap();
    assert_eq!(kettle.product().unit_price, usd(35, 0));

    // Bad products, each naming its field.
    let cases: Vec<(Product, &str)> = vec![
        (product("", "Thing", 1, 0, true), "product.product_id"),
        (product("Bad Id", "Thing", 1, 0, true), "product.product_id"),
        (
            product("nul\u{0}", "Thing", 1, 0, true),
            "product.product_id",
        ),
        (
            product(&"x".repeat(65), "Thing", 1, 0, true),
            "product.product_id",
        ),
        (product("thing", "", 1, 0, true), "product.name"),
        (product("thing", "Th\u{0}ing", 1, 0, true), "product.name"),
        (
            product("thing", "Buy at https://evil.example", 1, 0, true),
            "product.name",
        ),
        (
            product("thing", &"n".repeat(1000), 1, 0, true),
            "product.name",
        ),
        (product("thing", "Thing", -1, 0, true), "product.unit_price"),
        (product("thing", "Thing", 1, 1, true), "product.unit_price"),
        (
            Product {
                unit_price: None,
                ..product("thing", "Thing", 1, 0, true)
            },
            "product.unit_price",
        ),
        (
            Product {
                unit_price: Some(weft_proto::common::Money {
                    currency_code: "ZZZ".into(),
                    units: 1,
                    nanos: 0,
                }),
                ..product("thing", "Thing", 1, 0, true)
            },
            "product.unit_price",
        ),
    ];
    for (p, field) in cases {
        let err = Rpc::create_product(p.clone())
            .send(&mut orders, as_staff)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{p:?}: {err:?}");
        assert_eq!(violations(&err), [field], "{p:?}");
    }
    let no_product = Rpc::CreateProduct(CreateProductRequest { product: None });
    expect_code(
        no_product.send(&mut orders, as_staff).await,
        Code::InvalidArgument,
    );

    // A price change applies to new orders; placed orders keep theirs.
    let changed = price_cut
        .send(&mut orders, as_staff)
        .await
        .unwrap()
        .product();
    assert_eq!(changed.unit_price, usd(0, 10_000_000));
    assert_eq!(changed.name, mug.name, "not in the mask: unchanged");
    let placed = read_order(&mut orders, &order.order_id, &customer).await;
    assert_eq!(placed.total, usd(109, 970_000_000));
    // A client that expects the old price is told the new one.
    let old_price = Rpc::CreateOrder(order_of(vec![item("mug", 1, usd(29, 990_000_000))]));
    let err = expect_fields(
        old_price.send(&mut orders, as_customer).await,
        &["items[0].unit_price"],
    );
    assert!(err.message().contains("0.01"), "{}", err.message());

    // An inactive product cannot be ordered and is listed for staff only.
    let retire = Rpc::UpdateProduct(UpdateProductRequest {
        product: Some(product("kettle", "", 0, 0, false)),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["active".into()],
        }),
    });
    retire.send(&mut orders, as_staff).await.unwrap();
    let retired = Rpc::CreateOrder(order_of(vec![item("kettle", 1, None)]));
    expect_fields(
        retired.send(&mut orders, as_customer).await,
        &["items[0].product_id"],
    );
    let [public, all] = callers
        .expect_codes(
            [
                (Anonymous, Rpc::ListProducts(Default::default()), Code::Ok),
                (Staff, with_inactive, Code::Ok),
            ],
            async |auth, rpc| rpc.send(&mut orders, auth).await,
        )
        .await
        .try_into()
        .unwrap();
    let ids = |listed: Answer| -> Vec<_> {
        listed
            .products()
            .into_iter()
            .map(|p| p.product_id)
            .collect()
    };
    assert!(!ids(public).contains(&"kettle".to_owned()));
    assert!(ids(all).contains(&"kettle".to_owned()));

    // Bad updates: unknown product, unknown or empty mask.
    let update = |id: &str, paths: Vec<&str>| {
        Rpc::UpdateProduct(UpdateProductRequest {
            product: Some(product(id, "Name", 1, 0, true)),
            update_mask: Some(prost_types::FieldMask {
                paths: paths.into_iter().map(Into::into).collect(),
            }),
        })
    };
    let unknown = update("yacht", vec!["name"]);
    expect_code(unknown.send(&mut orders, as_staff).await, Code::NotFound);
    for (rpc, field) in [
        (update("mug", vec!["product_id"]), "update_mask.paths[0]"),
        (update("mug", vec![]), "update_mask"),
    ] {
        expect_fields(rpc.send(&mut orders, as_staff).await, &[field]);
    }
    // Pages of products.
    let page = |page_size, page_token: &str| ListProductsRequest {
        page_size,
        page_token: page_token.into(),
        ..Default::default()
    };
    let first = orders
        .list_products(page(1, ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.products.len(), 1);
    assert!(!first.next_page_token.is_empty());
    // A bad page token and a negative page size are refused; an oversize page is served
    // capped at 200.
    for (request, field) in [(page(0, "%%%"), "page_token"), (page(-1, ""), "page_size")] {
        expect_fields(orders.list_products(request).await, &[field]);
    }
    let huge = orders
        .list_products(page(i32::MAX, ""))
        .await
        .unwrap()
        .into_inner();
    assert!(
        !huge.products.is_empty() && huge.products.len() <= 200,
        "{} products",
        huge.products.len()
    );
    assert!(huge.next_page_token.is_empty(), "the whole catalogue fits");
}
