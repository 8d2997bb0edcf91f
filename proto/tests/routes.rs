//! The REST route table against its baseline. buf does not see `google.api.http`, so
//! this is what stops a change from silently breaking REST clients: a removed or
//! changed route fails; a new route is allowed (and reported).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use weft_proto::routes::{diff, render, route_table};
use weft_proto::{SERVICES, descriptor_pool};

/// The one-line header of the baseline file; `diff` ignores `#` lines.
const HEADER: &str = "# REST routes (google.api.http) of the weft contracts, one binding a line: \
                      the baseline of proto/tests/routes.rs; regenerate with scripts/update-baseline\n";

fn baseline_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("baseline/routes.txt")
}

fn current() -> String {
    render(&route_table(descriptor_pool()).unwrap())
}

#[test]
fn routes_match_baseline() {
    if std::env::var_os("WEFT_BLESS_ROUTES").is_some() {
        std::fs::write(baseline_path(), format!("{HEADER}{}", current())).unwrap();
    }
    let baseline = std::fs::read_to_string(baseline_path()).expect("proto/baseline/routes.txt");
    let d = diff(&baseline, &current());
    if !d.added.is_empty() {
        eprintln!("new routes (not breaking):\n  {}", d.added.join("\n  "));
    }
    assert!(
        !d.is_breaking(),
        "REST routes removed or changed since the baseline (breaking for REST clients):\n\
         removed:\n  {}\nadded:\n  {}\n\
         If this is intended, run scripts/update-baseline and say so in the change.",
        d.removed.join("\n  "),
        d.added.join("\n  ")
    );
}

#[test]
fn a_removed_route_is_breaking() {
    let baseline = std::fs::read_to_string(baseline_path()).unwrap();
    let without: String = baseline
        .lines()
        .filter(|l| !l.contains("UserService.GetUser "))
        .map(|l| format!("{l}\n"))
        .collect();
    let d = diff(&baseline, &without);
    assert!(d.is_breaking());
    assert_eq!(d.removed.len(), 1);
    assert!(
        d.removed[0].starts_with("GET /v1/users/{user_id} "),
        "{:?}",
        d.removed
    );
}

#[test]
fn a_changed_route_is_breaking_and_an_added_one_is_not() {
    let baseline = std::fs::read_to_string(baseline_path()).unwrap();
    let changed = baseline.replace(
        "POST /v1/orders/{order_id}:ship",
        "POST /v1/orders/{order_id}:dispatch",
    );
    let d = diff(&baseline, &changed);
    assert!(d.is_breaking());
    assert_eq!(d.removed.len(), 1);
    assert_eq!(d.added.len(), 1);

    let added = format!(
        "{baseline}GET /v1/extra -> weft.user.v1.UserService.GetUser body= response_body=\n"
    );
    let d = diff(&baseline, &added);
    assert!(!d.is_breaking());
    assert_eq!(d.added.len(), 1);
}

#[test]
fn every_rpc_has_an_http_rule() {
    let pool = descriptor_pool();
    for name in SERVICES {
        let service = pool.get_service_by_name(name).expect(name);
        for method in service.methods() {
            assert!(
                weft_proto::routes::http_rule(&method).unwrap().is_some(),
                "{} has no google.api.http rule",
                method.full_name()
            );
        }
    }
}

#[test]
fn the_design_routes_exist() {
    let table = current();
    for line in [
        "POST /v1/users -> weft.user.v1.UserService.SignUp body=*",
        "POST /v1/users:login -> weft.user.v1.UserService.Login body=*",
        "GET /v1/users/{user_id} -> weft.user.v1.UserService.GetUser",
        "POST /v1/orders -> weft.order.v1.OrderService.CreateOrder body=*",
        "GET /v1/orders/{order_id} -> weft.order.v1.OrderService.GetOrder",
        "GET /v1/users/{user_id}/orders -> weft.order.v1.OrderService.ListOrders",
        "POST /v1/orders/{order_id}:pay -> weft.order.v1.OrderService.PayOrder",
        "POST /v1/orders/{order_id}:ship -> weft.order.v1.OrderService.ShipOrder",
        "GET /v1/analytics/metrics -> weft.analytics.v1.AnalyticsService.GetMetrics",
        "GET /v1/analytics/metrics:stream -> weft.analytics.v1.AnalyticsService.StreamMetrics",
    ] {
        assert!(
            table.lines().any(|l| l.starts_with(line)),
            "missing route {line:?} in:\n{table}"
        );
    }
    assert!(table.contains(
        ":stream -> weft.analytics.v1.AnalyticsService.StreamMetrics body= response_body= streaming"
    ));
}
