//! Envoy's routes and clusters against the contracts and the launcher's ports.

use super::*;

#[test]
fn every_cluster_a_route_or_the_tracer_names_exists() {
    let clusters = clusters(envoy());
    let assert_defined = |cluster: &str, sender: &str| {
        assert!(
            clusters.contains_key(cluster),
            "{sender} goes to cluster {cluster}, which {ENVOY} does not define"
        );
    };
    for (listener, route) in all_routes(envoy()) {
        let sender = format!("route {} of listener {listener}", route_name(route));
        assert_defined(&route_cluster(route), &sender);
    }
    for l in listeners(envoy()) {
        if let Some(tracer) = hcm(l).get("tracing") {
            let path = "provider.typed_config.grpc_service.envoy_grpc.cluster_name";
            assert_defined(&text(at(tracer, path, "tracing")), "the tracer's spans");
        }
    }
}

#[test]
fn every_cluster_points_at_the_port_its_service_listens_on() {
    let clusters = clusters(envoy());
    let services = compose_service_names(compose());
    for c in components() {
        let cluster = clusters
            .get(&c.name)
            .unwrap_or_else(|| panic!("{ENVOY} has no cluster for {}", c.name));
        assert_eq!(
            endpoints(cluster),
            vec![(c.name.clone(), c.port)],
            "cluster {0} must point at {0}:{1}, the service and its port",
            c.name,
            c.port
        );
    }
    // Any other cluster: a compose service of the cluster's own name, on a port that
    // service declares; loopback only for the admin endpoint's re-export.
    let admin_port = port(at(
        envoy(),
        "admin.address.socket_address.port_value",
        "admin",
    ));
    for (name, cluster) in &clusters {
        for (host, p) in endpoints(cluster) {
            if host == "127.0.0.1" {
                assert_eq!(
                    p, admin_port,
                    "cluster {name}: loopback is for the admin endpoint only"
                );
                continue;
            }
            assert_eq!(
                &host, name,
                "cluster {name} points at host {host}: name clusters after the service they reach"
            );
            assert!(
                services.contains(&host),
                "cluster {name} points at {host}, which is no service of {COMPOSE}"
            );
            let declared = compose_ports(compose_service(compose(), &host));
            assert!(
                declared.contains(&p),
                "cluster {name} uses port {p}, but compose service {host} declares {declared:?}"
            );
        }
    }
}

#[test]
fn grpc_clusters_speak_http2_and_are_guarded() {
    let clusters = clusters(envoy());
    let http2 = |c: &Value| {
        c.get("typed_extension_protocol_options")
            .and_then(|o| o.get("envoy.extensions.upstreams.http.v3.HttpProtocolOptions"))
            .and_then(|o| o.get("explicit_http_config"))
            .and_then(|o| o.get("http2_protocol_options"))
            .is_some()
    };
    for c in components() {
        let cluster = clusters[&c.name];
        let what = format!("cluster {}", c.name);
        assert!(
            at(cluster, "connect_timeout", &what).is_string(),
            "{what}: connect_timeout"
        );
        let thresholds = list(at(cluster, "circuit_breakers.thresholds", &what), &what);
        assert!(
            thresholds
                .iter()
                .all(|t| t.get("retry_budget").is_some() && t.get("max_requests").is_some()),
            "{what}: circuit breaker thresholds need max_requests and a retry_budget (so retries cannot amplify an outage)"
        );
        assert!(
            cluster.get("outlier_detection").is_some(),
            "{what}: outlier_detection"
        );
        let checks = list(at(cluster, "health_checks", &what), &what);
        if c.grpc_service.is_some() {
            assert!(
                http2(cluster),
                "{what}: gRPC needs HTTP/2 upstream (explicit_http_config.http2_protocol_options)"
            );
            assert!(
                checks.iter().any(|h| h.get("grpc_health_check").is_some()),
                "{what}: actively health-check with grpc.health.v1"
            );
        } else {
            assert!(!http2(cluster), "{what}: the gateway serves HTTP/1.1 only");
            assert!(
                checks.iter().any(|h| h
                    .get("http_health_check")
                    .and_then(|x| x.get("path"))
                    .map(text)
                    .as_deref()
                    == Some("/healthz")),
                "{what}: actively health-check GET /healthz"
            );
        }
    }
    assert!(
        http2(clusters["otel-collector"]),
        "OTLP/gRPC to the collector needs HTTP/2"
    );
}

#[test]
fn every_grpc_method_is_routed_straight_to_its_service() {
    let routes = front_door_routes(envoy());
    for service in weft_grpc_services() {
        let cluster = cluster_of(&service);
        let prefix = format!("/{}/", service.full_name());
        assert!(
            grpc_routes_with_prefix(routes, &prefix).any(|r| route_cluster(r) == cluster),
            "{ENVOY}: no gRPC route with prefix {prefix} to cluster {cluster}"
        );
        for method in service.methods() {
            let path = format!("/{}/{}", service.full_name(), method.name());
            let route = route_for(routes, &grpc_call(&path));
            assert_eq!(
                route_cluster(route),
                cluster,
                "gRPC {path} takes route {} to {}, not to {cluster}",
                route_name(route),
                route_cluster(route)
            );
            // The same path without a gRPC content-type is a REST client's mistake:
            // it belongs to the gateway (which answers 404), never to a service.
            let route = route_for(routes, &rest_call("POST", &path));
            assert_eq!(
                route_cluster(route),
                "gateway",
                "non-gRPC POST {path} must not reach a service"
            );
        }
    }
}

#[test]
fn reflection_and_health_are_routed() {
    let routes = front_door_routes(envoy());
    for service in [
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.health.v1.Health",
    ] {
        let prefix = format!("/{service}/");
        assert!(
            grpc_routes_with_prefix(routes, &prefix).next().is_some(),
            "{ENVOY}: no gRPC route with prefix {prefix}"
        );
    }
    // Reflection is a bidirectional stream and Health/Watch a server stream: no route
    // timeout may cut them.
    for path in [
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/grpc.health.v1.Health/Watch",
    ] {
        let route = route_for(routes, &grpc_call(path));
        assert_eq!(
            route_cluster(route),
            "user",
            "{path} goes to {}",
            route_cluster(route)
        );
        assert_timeout(route, true, path);
    }
    let check = route_for(routes, &grpc_call("/grpc.health.v1.Health/Check"));
    assert_eq!(route_cluster(check), "user");
}

/// Conditions under which a retry cannot run a request twice, or the service said it
/// did not run it.
pub(crate) const SAFE_RETRY_ON: [&str; 4] =
    ["unavailable", "reset", "connect-failure", "refused-stream"];

/// The routes that take only gRPC and match by `prefix`.
fn grpc_routes_with_prefix<'a>(
    routes: &'a [Value],
    prefix: &'a str,
) -> impl Iterator<Item = &'a Value> {
    routes.iter().filter(move |r| {
        is_grpc_route(r)
            && r.get("match")
                .and_then(|m| m.get("prefix"))
                .map(text)
                .as_deref()
                == Some(prefix)
    })
}

/// A stream's route (the request is `what`) has no timeout, a unary call's has one.
fn assert_timeout(route: &Value, streaming: bool, what: &str) {
    let name = route_name(route);
    if streaming {
        assert_eq!(
            route_timeout(route),
            0.0,
            "{what} streams: route {name} needs timeout 0s"
        );
    } else {
        assert!(
            route_timeout(route) > 0.0,
            "{what} is unary: route {name} needs a timeout"
        );
    }
}

/// Route `name` retries only on [`SAFE_RETRY_ON`] conditions.
fn assert_safe_retries(policy: &Value, name: &str) {
    for condition in text(at(policy, "retry_on", name)).split(',') {
        assert!(
            SAFE_RETRY_ON.contains(&condition.trim()),
            "route {name} retries on {condition}; only {SAFE_RETRY_ON:?} are safe"
        );
    }
}

#[test]
fn grpc_streams_have_no_timeout_and_only_reads_are_retried() {
    let routes = front_door_routes(envoy());
    let reads = read_only_rpcs();
    for service in weft_grpc_services() {
        for method in service.methods() {
            let path = format!("/{}/{}", service.full_name(), method.name());
            let route = route_for(routes, &grpc_call(&path));
            let name = route_name(route);
            let streaming = method.is_server_streaming() || method.is_client_streaming();
            assert_timeout(route, streaming, &path);
            let read = reads.contains(method.full_name()) && !streaming;
            let Some(policy) = retry_policy(route) else {
                assert!(
                    !read,
                    "{path} is read-only: route {name} should retry it on unavailable/reset"
                );
                continue;
            };
            assert!(
                read,
                "{path} is not a read-only unary RPC (no GET binding), yet route {name} retries it"
            );
            assert_safe_retries(policy, &name);
        }
    }
    // The writes that must never run twice by Envoy's doing.
    for path in [
        "/weft.order.v1.OrderService/CreateOrder",
        "/weft.order.v1.OrderService/PayOrder",
        "/weft.user.v1.UserService/SignUp",
    ] {
        let route = route_for(routes, &grpc_call(path));
        assert!(
            retry_policy(route).is_none(),
            "{path} must not be retried (route {})",
            route_name(route)
        );
    }
}

/// A path that a REST route template matches: each `{variable}` filled in.
pub(crate) fn sample_path(template: &str) -> String {
    template
        .split('/')
        .map(|seg| match (seg.find('{'), seg.find('}')) {
            (Some(open), Some(close)) => format!("{}abc123{}", &seg[..open], &seg[close + 1..]),
            _ => seg.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn rest_streams_have_no_timeout_and_only_gets_are_retried() {
    let routes = front_door_routes(envoy());
    for binding in weft_proto::routes::route_table(weft_proto::descriptor_pool()).unwrap() {
        let what = format!("{} {} ({})", binding.http_method, binding.path, binding.rpc);
        let route = route_for(
            routes,
            &rest_call(&binding.http_method, &sample_path(&binding.path)),
        );
        let name = route_name(route);
        assert_eq!(
            route_cluster(route),
            "gateway",
            "{what} must reach the gateway, not {}",
            route_cluster(route)
        );
        assert_timeout(route, binding.server_streaming, &what);
        if let Some(policy) = retry_policy(route) {
            assert!(
                binding.http_method == "GET" && !binding.server_streaming,
                "{what}: route {name} retries a request that is not a safe, unary GET"
            );
            assert_safe_retries(policy, &name);
        }
    }
}

#[test]
fn rest_falls_through_to_the_gateway_after_every_grpc_route() {
    let routes = front_door_routes(envoy());
    let catch_all = routes
        .iter()
        .position(|r| plain_prefix(r).as_deref() == Some("/"))
        .unwrap_or_else(|| {
            panic!("{ENVOY}: no catch-all route (prefix \"/\", no header matchers)")
        });
    assert_eq!(
        route_cluster(&routes[catch_all]),
        "gateway",
        "the catch-all must go to the gateway"
    );
    assert_eq!(
        catch_all,
        routes.len() - 1,
        "the catch-all must be the last route: routes after it never match"
    );
    assert!(
        retry_policy(&routes[catch_all]).is_none(),
        "the catch-all takes POST/PATCH/...: no retries"
    );
    for (i, r) in routes.iter().enumerate().filter(|(_, r)| is_grpc_route(r)) {
        assert!(
            i < catch_all,
            "gRPC route {} comes after the catch-all and never matches",
            route_name(r)
        );
    }
    // The gateway's own pages.
    for path in [
        "/",
        "/openapi.json",
        "/healthz",
        "/.well-known/jwks.json",
        "/v1/users",
    ] {
        for method in ["GET", "POST", "PATCH", "DELETE", "OPTIONS"] {
            let route = route_for(routes, &rest_call(method, path));
            assert_eq!(
                route_cluster(route),
                "gateway",
                "{method} {path} must reach the gateway"
            );
        }
    }
}
