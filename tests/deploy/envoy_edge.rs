//! Envoy's listeners: TLS, admin, logs, tracing, limits and the edge settings.

use super::*;

/// The listeners clients reach: TLS, and plaintext for local use.
pub(crate) const PUBLIC_LISTENERS: [&str; 2] = ["https", "http"];

#[test]
fn the_admin_endpoint_listens_on_loopback_only() {
    let address = text(at(envoy(), "admin.address.socket_address.address", "admin"));
    assert_eq!(
        address, "127.0.0.1",
        "the admin endpoint can stop Envoy: loopback only"
    );
}

#[test]
fn public_listeners_follow_the_edge_best_practices() {
    let managers: Vec<&Value> = PUBLIC_LISTENERS
        .iter()
        .map(|n| hcm(listener(envoy(), n)))
        .collect();
    assert_eq!(
        managers[0], managers[1],
        "the plaintext listener must serve what the TLS one does"
    );
    for name in PUBLIC_LISTENERS {
        let what = format!("listener {name}");
        let l = listener(envoy(), name);
        assert!(
            l.get("per_connection_buffer_limit_bytes").is_some(),
            "{what}: per_connection_buffer_limit_bytes"
        );
        let m = hcm(l);
        for key in ["use_remote_address", "normalize_path", "merge_slashes"] {
            assert_eq!(
                at(m, key, &what).as_bool(),
                Some(true),
                "{what}: {key}: true"
            );
        }
        assert_eq!(
            port(at(m, "xff_num_trusted_hops", &what)),
            0,
            "{what}: xff_num_trusted_hops: 0"
        );
        let escaped = text(at(m, "path_with_escaped_slashes_action", &what));
        assert!(
            escaped == "REJECT_REQUEST" || escaped == "UNESCAPE_AND_REDIRECT",
            "{what}: path_with_escaped_slashes_action is {escaped}"
        );
        let common = at(m, "common_http_protocol_options", &what);
        let underscores = text(at(common, "headers_with_underscores_action", &what));
        assert_eq!(
            underscores, "REJECT_REQUEST",
            "{what}: headers_with_underscores_action"
        );
        assert!(
            seconds(at(common, "idle_timeout", &what)) > 0.0,
            "{what}: idle_timeout"
        );
        assert!(
            common.get("max_connection_duration").is_some()
                || common.get("max_requests_per_connection").is_some(),
            "{what}: connections need a lifetime limit"
        );
        let h2 = at(m, "http2_protocol_options", &what);
        for key in [
            "max_concurrent_streams",
            "initial_stream_window_size",
            "initial_connection_window_size",
        ] {
            assert!(
                h2.get(key).is_some(),
                "{what}: http2_protocol_options.{key}"
            );
        }
        for key in ["request_headers_timeout", "stream_idle_timeout"] {
            assert!(seconds(at(m, key, &what)) > 0.0, "{what}: {key}");
        }
    }
}

#[test]
fn public_listeners_log_trace_and_rate_limit() {
    for name in PUBLIC_LISTENERS {
        let what = format!("listener {name}");
        let m = hcm(listener(envoy(), name));
        let logs = list(at(m, "access_log", &what), &what);
        assert!(
            logs.iter().any(|l| l.get("name").map(text).as_deref()
                == Some("envoy.access_loggers.stdout")
                && l.get("typed_config")
                    .and_then(|c| c.get("log_format"))
                    .and_then(|f| f.get("json_format"))
                    .is_some()),
            "{what}: a JSON access log on stdout"
        );
        let tracer = text(at(m, "tracing.provider.name", &what));
        assert_eq!(
            tracer, "envoy.tracers.opentelemetry",
            "{what}: OTLP tracing"
        );
        let filters = each_text(m, "http_filters", "name", &what);
        assert!(
            filters
                .iter()
                .any(|f| f == "envoy.filters.http.local_ratelimit"),
            "{what}: local_ratelimit"
        );
        assert_eq!(
            filters.last().map(String::as_str),
            Some("envoy.filters.http.router"),
            "{what}: router last"
        );
    }
}

#[test]
fn the_front_door_terminates_tls_with_the_mounted_certificate() {
    let chain = &list(
        at(listener(envoy(), "https"), "filter_chains", "https"),
        "https",
    )[0];
    let socket = at(
        chain,
        "transport_socket.typed_config",
        "https transport socket",
    );
    assert_eq!(
        text(at(socket, "@type", "https")),
        "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
    );
    let certificates = list(
        at(socket, "common_tls_context.tls_certificates", "https"),
        "certificates",
    );
    assert!(
        !certificates.is_empty(),
        "the TLS listener needs a certificate"
    );
    for cert in certificates {
        for key in ["certificate_chain.filename", "private_key.filename"] {
            let file = text(at(cert, key, "certificate"));
            assert!(
                file.starts_with("/etc/envoy/tls/"),
                "{key} is {file}, not under the mounted /etc/envoy/tls/"
            );
        }
    }
}

#[test]
fn the_stats_listener_exposes_only_metrics_and_readiness() {
    for (listener, route) in all_routes(envoy())
        .into_iter()
        .filter(|(l, _)| l == "stats")
    {
        let path = text(at(route, "match.path", "stats route (exact paths only)"));
        assert!(
            path == "/stats/prometheus" || path == "/ready",
            "listener {listener} exposes {path}"
        );
        assert_eq!(route_cluster(route), "envoy_admin");
    }
}

// =========================================================================================
// docker-compose
// =========================================================================================

#[test]
fn grpc_clients_are_limited_per_client_address() {
    for name in PUBLIC_LISTENERS {
        let what = format!("listener {name}");
        let l = listener(envoy(), name);
        let limiter = list(at(hcm(l), "http_filters", &what), &what)
            .iter()
            .find(|f| {
                f.get("name").map(text).as_deref() == Some("envoy.filters.http.local_ratelimit")
            })
            .map(|f| at(f, "typed_config", &what))
            .unwrap();
        let per_address = list(at(limiter, "descriptors", &what), &what)
            .iter()
            .find(|d| {
                let entries = list(at(d, "entries", &what), &what);
                entries.len() == 1
                    && text(at(&entries[0], "key", &what)) == "remote_address"
                    && text(at(&entries[0], "value", &what)).is_empty()
            })
            .unwrap_or_else(|| panic!("{what}: a wildcard remote_address descriptor"));
        assert!(
            port(at(per_address, "token_bucket.max_tokens", &what)) > 0,
            "{what}: the per-client bucket"
        );
        assert!(
            port(at(limiter, "max_dynamic_descriptors", &what)) >= 1000,
            "{what}: room for many clients' buckets"
        );
        for host in list(at(hcm(l), "route_config.virtual_hosts", &what), &what) {
            for route in list(at(host, "routes", &what), &what) {
                if !is_grpc_route(route) {
                    continue;
                }
                let name = route_name(route);
                let actions: Vec<&Value> = route
                    .get("route")
                    .and_then(|r| r.get("rate_limits"))
                    .map(|r| list(r, &name))
                    .unwrap_or_default()
                    .iter()
                    .flat_map(|r| list(at(r, "actions", &name), &name))
                    .collect();
                assert!(
                    actions.iter().any(|a| a.get("remote_address").is_some()),
                    "gRPC route {name} needs `rate_limits: *per_client` (one bucket per client)"
                );
            }
        }
    }
    // The metric stream's client is the address Envoy saw, never one a client sends.
    let stream = route_for(
        front_door_routes(envoy()),
        &grpc_call("/weft.analytics.v1.AnalyticsService/StreamMetrics"),
    );
    let set = list(
        at(stream, "request_headers_to_add", "stream route"),
        "headers",
    )
    .iter()
    .find(|h| text(at(h, "header.key", "header")) == "x-weft-client-ip")
    .expect("the StreamMetrics route sets x-weft-client-ip");
    assert_eq!(
        text(at(set, "header.value", "header")),
        "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"
    );
    assert_eq!(
        text(at(set, "append_action", "header")),
        "OVERWRITE_IF_EXISTS_OR_ADD"
    );
}
