//! Envoy's config as a model: listeners, clusters, routes, and first-match route selection.

use super::*;

/// envoy.yaml, parsed once per test process.
pub(crate) fn envoy() -> &'static Value {
    static ENVOY_YAML: OnceLock<Value> = OnceLock::new();
    ENVOY_YAML.get_or_init(|| parse(ENVOY, &read(ENVOY)))
}

pub(crate) fn listeners(envoy: &Value) -> &[Value] {
    list(at(envoy, "static_resources.listeners", ENVOY), "listeners")
}

pub(crate) fn listener<'a>(envoy: &'a Value, name: &str) -> &'a Value {
    listeners(envoy)
        .iter()
        .find(|l| l.get("name").map(text).as_deref() == Some(name))
        .unwrap_or_else(|| panic!("{ENVOY}: no listener named {name}"))
}

pub(crate) fn listener_port(listener: &Value) -> u16 {
    port(at(
        listener,
        "address.socket_address.port_value",
        "listener",
    ))
}

/// The HTTP connection manager of a listener (its only filter chain and filter).
pub(crate) fn hcm(listener: &Value) -> &Value {
    let name = text(at(listener, "name", "listener"));
    let chains = list(at(listener, "filter_chains", &name), &name);
    assert_eq!(chains.len(), 1, "listener {name}: one filter chain");
    let filters = list(at(&chains[0], "filters", &name), &name);
    let manager = filters
        .iter()
        .find(|f| {
            f.get("name").map(text).as_deref()
                == Some("envoy.filters.network.http_connection_manager")
        })
        .unwrap_or_else(|| panic!("listener {name} has no http_connection_manager"));
    at(manager, "typed_config", &name)
}

/// The routes of the public front door (its single virtual host, every domain).
pub(crate) fn front_door_routes(envoy: &Value) -> &[Value] {
    let hosts = list(
        at(
            hcm(listener(envoy, "https")),
            "route_config.virtual_hosts",
            ENVOY,
        ),
        "virtual_hosts",
    );
    assert_eq!(hosts.len(), 1, "{ENVOY}: one virtual host");
    assert_eq!(
        list(at(&hosts[0], "domains", "virtual host"), "domains"),
        &[Value::from("*")],
        "the virtual host answers every domain"
    );
    list(at(&hosts[0], "routes", "virtual host"), "routes")
}

pub(crate) fn clusters(envoy: &Value) -> BTreeMap<String, &Value> {
    list(at(envoy, "static_resources.clusters", ENVOY), "clusters")
        .iter()
        .map(|c| (text(at(c, "name", "cluster")), c))
        .collect()
}

/// Every (host, port) a cluster's load assignment names.
pub(crate) fn endpoints(cluster: &Value) -> Vec<(String, u16)> {
    let name = text(at(cluster, "name", "cluster"));
    list(at(cluster, "load_assignment.endpoints", &name), &name)
        .iter()
        .flat_map(|e| list(at(e, "lb_endpoints", &name), &name))
        .map(|e| {
            let socket = at(e, "endpoint.address.socket_address", &name);
            (
                text(at(socket, "address", &name)),
                port(at(socket, "port_value", &name)),
            )
        })
        .collect()
}

pub(crate) fn route_name(route: &Value) -> String {
    route.get("name").map_or_else(|| format!("{route:?}"), text)
}

pub(crate) fn route_cluster(route: &Value) -> String {
    text(at(route, "route.cluster", &route_name(route)))
}

/// An Envoy duration (`35s`, `0.25s`, `0s`) in seconds.
pub(crate) fn seconds(v: &Value) -> f64 {
    let s = text(v);
    s.strip_suffix('s')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{s:?} is not a duration in seconds such as 35s"))
}

/// A route's upstream timeout; Envoy's default is 15 s when none is set.
pub(crate) fn route_timeout(route: &Value) -> f64 {
    route
        .get("route")
        .and_then(|r| r.get("timeout"))
        .map_or(15.0, seconds)
}

pub(crate) fn retry_policy(route: &Value) -> Option<&Value> {
    route.get("route").and_then(|r| r.get("retry_policy"))
}

/// What Envoy's route matching looks at.
#[derive(Debug)]
pub(crate) struct Request<'a> {
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) content_type: &'a str,
}

pub(crate) fn grpc_call(path: &str) -> Request<'_> {
    Request {
        method: "POST",
        path,
        content_type: "application/grpc",
    }
}

pub(crate) fn rest_call<'a>(method: &'a str, path: &'a str) -> Request<'a> {
    Request {
        method,
        path,
        content_type: "application/json",
    }
}

/// The route Envoy picks for `req`: the first that matches.
pub(crate) fn route_for<'a>(routes: &'a [Value], req: &Request<'_>) -> &'a Value {
    routes
        .iter()
        .find(|r| route_matches(at(r, "match", &route_name(r)), req))
        .unwrap_or_else(|| panic!("no route of {ENVOY} matches {req:?}"))
}

pub(crate) fn route_matches(m: &Value, req: &Request<'_>) -> bool {
    let path = if let Some(p) = m.get("path") {
        req.path == text(p)
    } else if let Some(p) = m.get("prefix") {
        req.path.starts_with(&text(p))
    } else {
        panic!(
            "route match {m:?}: this test understands `path` and `prefix` only; teach it the new matcher"
        )
    };
    let headers = m
        .get("headers")
        .is_none_or(|hs| list(hs, "headers").iter().all(|h| header_matches(h, req)));
    let grpc = m.get("grpc").is_none() || req.content_type.starts_with("application/grpc");
    path && headers && grpc
}

pub(crate) fn header_matches(h: &Value, req: &Request<'_>) -> bool {
    let name = text(at(h, "name", "header matcher"));
    let value = match name.as_str() {
        ":method" => Some(req.method),
        "content-type" => Some(req.content_type),
        _ => None,
    };
    let string_match = at(h, "string_match", "header matcher");
    let hit = value.is_some_and(|v| {
        if let Some(exact) = string_match.get("exact") {
            v == text(exact)
        } else if let Some(prefix) = string_match.get("prefix") {
            v.starts_with(&text(prefix))
        } else {
            panic!("header matcher {h:?}: this test understands exact and prefix only")
        }
    });
    hit != h
        .get("invert_match")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// Whether a route only takes gRPC (content-type application/grpc…).
pub(crate) fn is_grpc_route(route: &Value) -> bool {
    let m = at(route, "match", &route_name(route));
    m.get("grpc").is_some() || {
        let probe = grpc_call("/");
        let rest = rest_call("POST", "/");
        m.get("headers").is_some_and(|hs| {
            list(hs, "headers")
                .iter()
                .any(|h| header_matches(h, &probe) && !header_matches(h, &rest))
        })
    }
}

/// The prefix of a route that matches by prefix alone (no header matchers).
pub(crate) fn plain_prefix(route: &Value) -> Option<String> {
    let m = route.get("match")?;
    if m.get("headers").is_some() || m.get("grpc").is_some() {
        return None;
    }
    m.get("prefix").map(text)
}

/// Every route of every listener, with the listener's name.
pub(crate) fn all_routes(envoy: &Value) -> Vec<(String, &Value)> {
    let mut routes = Vec::new();
    for l in listeners(envoy) {
        let name = text(at(l, "name", "listener"));
        for host in list(at(hcm(l), "route_config.virtual_hosts", &name), &name) {
            for route in list(at(host, "routes", &name), &name) {
                routes.push((name.clone(), route));
            }
        }
    }
    routes
}
