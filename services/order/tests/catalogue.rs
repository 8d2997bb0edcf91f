//! The product catalogue through a real socket: anyone reads it, only staff change it,
//! orders are priced from it, and bad products are refused naming the field.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::*;
use tonic::Code;
use weft_proto::order::*;

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
    let mesh = spawn_mesh(Db::Sqlite).await;
    let (_, customer) = mesh.user("ada@example.com").await;
    let (_, staff) = mesh.staff("ops@example.com").await;
    mesh.wait_ready(&customer).await;
    let mut orders = mesh.orders().await;

    // The built-in seed, readable without a token.
    let listed = orders
        .list_products(ListProductsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .products;
    let ids: Vec<_> = listed.iter().map(|p| p.product_id.as_str()).collect();
    assert!(ids.contains(&"mug") && ids.contains(&"lamp"), "{ids:?}");
    let mug = orders
        .get_product(GetProductRequest {
            product_id: "mug".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .product
        .unwrap();
    assert_eq!(mug.unit_price, usd(29, 990_000_000));
    assert!(mug.active);
    let err = orders
        .get_product(GetProductRequest {
            product_id: "yacht".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // An order without prices is priced from the catalogue: 2 × 29.99 + 49.99.
    let order = orders
        .create_order(with_token(
            CreateOrderRequest {
                items: vec![item("mug", 2, None), item("lamp", 1, None)],
                ..Default::default()
            },
            &customer,
        ))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(order.total, usd(109, 970_000_000));
    assert_eq!(order.items[0].unit_price, usd(29, 990_000_000));
    assert_eq!(order.items[0].name, mug.name);

    // Customers and anonymous callers do not change the catalogue.
    let create = |p: Product| CreateProductRequest { product: Some(p) };
    let err = orders
        .create_product(with_token(
            create(product("free-lunch", "Lunch", 0, 0, true)),
            &customer,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = orders
        .create_product(create(product("free-lunch", "Lunch", 0, 0, true)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let price_cut = UpdateProductRequest {
        product: Some(product("mug", "", 0, 10_000_000, true)),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["unit_price".into()],
        }),
    };
    let err = orders
        .update_product(with_token(price_cut.clone(), &customer))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = orders
        .list_products(with_token(
            ListProductsRequest {
                include_inactive: true,
                ..Default::default()
            },
            &customer,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // Staff add a product; a second with the same id is ALREADY_EXISTS.
    let kettle = orders
        .create_product(with_token(
            create(product("kettle", "Kettle", 35, 0, true)),
            &staff,
        ))
        .await
        .unwrap()
        .into_inner()
        .product
        .unwrap();
    assert_eq!(kettle.unit_price, usd(35, 0));
    let err = orders
        .create_product(with_token(
            create(product("kettle", "Kettle", 1, 0, true)),
            &staff,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);

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
        let err = orders
            .create_product(with_token(create(p.clone()), &staff))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{p:?}: {err:?}");
        assert_eq!(violations(&err), [field], "{p:?}");
    }
    let err = orders
        .create_product(with_token(CreateProductRequest { product: None }, &staff))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // A price change applies to new orders; placed orders keep theirs.
    let changed = orders
        .update_product(with_token(price_cut, &staff))
        .await
        .unwrap()
        .into_inner()
        .product
        .unwrap();
    assert_eq!(changed.unit_price, usd(0, 10_000_000));
    assert_eq!(changed.name, mug.name, "not in the mask: unchanged");
    let placed = read_order(&mut orders, &order.order_id, &customer).await;
    assert_eq!(placed.total, usd(109, 970_000_000));
    // A client that expects the old price is told the new one.
    let err = orders
        .create_order(with_token(
            CreateOrderRequest {
                items: vec![item("mug", 1, usd(29, 990_000_000))],
                ..Default::default()
            },
            &customer,
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&err), ["items[0].unit_price"]);
    assert!(err.message().contains("0.01"), "{}", err.message());

    // An inactive product cannot be ordered and is listed for staff only.
    let retire = UpdateProductRequest {
        product: Some(product("kettle", "", 0, 0, false)),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["active".into()],
        }),
    };
    orders
        .update_product(with_token(retire, &staff))
        .await
        .unwrap();
    let err = orders
        .create_order(with_token(
            CreateOrderRequest {
                items: vec![item("kettle", 1, None)],
                ..Default::default()
            },
            &customer,
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&err), ["items[0].product_id"]);
    let public: Vec<_> = orders
        .list_products(ListProductsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .products
        .into_iter()
        .map(|p| p.product_id)
        .collect();
    assert!(!public.contains(&"kettle".to_owned()));
    let all: Vec<_> = orders
        .list_products(with_token(
            ListProductsRequest {
                include_inactive: true,
                ..Default::default()
            },
            &staff,
        ))
        .await
        .unwrap()
        .into_inner()
        .products
        .into_iter()
        .map(|p| p.product_id)
        .collect();
    assert!(all.contains(&"kettle".to_owned()));

    // Bad updates: unknown product, unknown or empty mask.
    let update = |id: &str, paths: Vec<&str>| UpdateProductRequest {
        product: Some(product(id, "Name", 1, 0, true)),
        update_mask: Some(prost_types::FieldMask {
            paths: paths.into_iter().map(Into::into).collect(),
        }),
    };
    let err = orders
        .update_product(with_token(update("yacht", vec!["name"]), &staff))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = orders
        .update_product(with_token(update("mug", vec!["product_id"]), &staff))
        .await
        .unwrap_err();
    assert_eq!(violations(&err), ["update_mask.paths[0]"]);
    let err = orders
        .update_product(with_token(update("mug", vec![]), &staff))
        .await
        .unwrap_err();
    assert_eq!(violations(&err), ["update_mask"]);
    // Pages of products.
    let first = orders
        .list_products(ListProductsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.products.len(), 1);
    assert!(!first.next_page_token.is_empty());
    let err = orders
        .list_products(ListProductsRequest {
            page_token: "%%%".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violations(&err), ["page_token"]);
    // A negative page size is refused; an oversize one is served capped at 200.
    let err = orders
        .list_products(ListProductsRequest {
            page_size: -1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violations(&err), ["page_size"]);
    let huge = orders
        .list_products(ListProductsRequest {
            page_size: i32::MAX,
            ..Default::default()
        })
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
