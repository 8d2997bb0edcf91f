//! docker-compose.yml and the weft command lines in it, parsed by the services' own flags.

use super::*;

/// docker-compose.yml, parsed once per test process.
pub(crate) fn compose() -> &'static Value {
    static COMPOSE_YAML: OnceLock<Value> = OnceLock::new();
    COMPOSE_YAML.get_or_init(|| parse(COMPOSE, &read(COMPOSE)))
}

pub(crate) fn compose_service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    at(compose, &format!("services.{name}"), COMPOSE)
}

pub(crate) fn compose_service_names(compose: &Value) -> BTreeSet<String> {
    at(compose, "services", COMPOSE)
        .as_mapping()
        .unwrap()
        .keys()
        .map(text)
        .collect()
}

/// The container ports a compose service declares (`expose`, and the container side
/// of `ports`).
pub(crate) fn compose_ports(service: &Value) -> BTreeSet<u16> {
    let mut ports = BTreeSet::new();
    for v in service.get("expose").map_or(&[][..], |e| list(e, "expose")) {
        ports.insert(port(v));
    }
    for v in service.get("ports").map_or(&[][..], |p| list(p, "ports")) {
        let spec = text(v);
        let container = spec.rsplit(':').next().unwrap();
        ports.insert(container.split('/').next().unwrap().parse().unwrap());
    }
    ports
}

/// Compose's interpolation of `${VAR:-default}`, `${VAR}` and `$$`, with every
/// variable unset: what `docker compose up` sees in a fresh shell.
pub(crate) fn interpolate(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = rest.strip_prefix('{') {
            let end = r
                .find('}')
                .unwrap_or_else(|| panic!("unclosed ${{ in {s:?}"));
            let inner = &r[..end];
            if let Some((_, default)) = inner.split_once(":-").or_else(|| inner.split_once('-')) {
                out.push_str(default);
            }
            rest = &r[end + 1..];
        } else {
            panic!("bare $ in {s:?}: write $$ for a literal dollar");
        }
    }
    out.push_str(rest);
    out
}

pub(crate) fn compose_env(service: &Value) -> BTreeMap<String, String> {
    match service.get("environment") {
        None => BTreeMap::new(),
        Some(Value::Mapping(m)) => m
            .iter()
            .map(|(k, v)| (text(k), interpolate(&text(v))))
            .collect(),
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|i| {
                let i = text(i);
                let (k, v) = i.split_once('=').unwrap_or((&i, ""));
                (k.to_owned(), interpolate(v))
            })
            .collect(),
        Some(other) => panic!("environment is neither a map nor a list: {other:?}"),
    }
}

pub(crate) fn compose_command(service: &Value) -> Vec<String> {
    list(at(service, "command", "service"), "command")
        .iter()
        .map(|a| interpolate(&text(a)))
        .collect()
}

// ---- the weft command lines -----------------------------------------------------------

/// What a weft process is told by its command line and environment.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) listen_port: u16,
    pub(crate) admin_port: u16,
    pub(crate) kafka_brokers: Option<String>,
    pub(crate) database_url: Option<String>,
    pub(crate) otlp_endpoint: Option<String>,
    pub(crate) user_service_url: Option<String>,
    /// Gateway only: upstream URL by full gRPC service name.
    pub(crate) upstreams: BTreeMap<String, String>,
    pub(crate) client_ip_header: Option<String>,
    /// Connections per client and the header timeout.
    pub(crate) conn: weft_kit::conn::ConnArgs,
}

/// Parses `weft <argv>` (which must be `serve <component> …`) with the component's own
/// clap definition, reading `env` where clap would read the environment, and never
/// the environment of this test.
pub(crate) fn settings(
    component: &str,
    argv: &[String],
    env: &BTreeMap<String, String>,
    what: &str,
) -> Settings {
    let cli = weft::cli::Cli::try_parse_from(
        std::iter::once("weft".to_owned()).chain(argv.iter().cloned()),
    )
    .unwrap_or_else(|e| panic!("{what}: `weft {}` does not parse: {e}", argv.join(" ")));
    let weft::cli::Command::Serve(serve) = cli.command else {
        panic!(
            "{what}: runs `weft {}`, not `weft serve {component}`",
            argv.join(" ")
        );
    };
    assert_eq!(
        format!("{:?}", serve.service).to_lowercase(),
        component,
        "{what}: serves the wrong component"
    );
    let flags = &serve.args;
    let bin = format!("weft-{component}");
    // The four services share these fields; all but the user service name the user
    // service (`jwks`), whose keys verify tokens.
    macro_rules! service {
        ($config:ty, $identity:expr $(, $jwks:ident)?) => {{
            let c: $config = parse_flags(&bin, flags, env, what);
            let user_service_url: Option<String> = None;
            $(let user_service_url = user_service_url.or(Some(c.$jwks.user_service_url.clone()));)?
            Settings {
                listen_port: c.common.grpc_addr($identity).port(),
                admin_port: c.common.admin_addr($identity).port(),
                kafka_brokers: Some(c.common.kafka.brokers.clone()),
                database_url: c.common.database_url.as_ref().map(|u| u.expose().clone()),
                otlp_endpoint: c.common.telemetry.otlp_endpoint.clone(),
                user_service_url,
                upstreams: BTreeMap::new(),
                client_ip_header: None,
                conn: c.common.server.conn.clone(),
            }
        }};
    }
    match component {
        "user" => service!(weft_user::Config, weft_user::IDENTITY),
        "order" => service!(weft_order::Config, weft_order::IDENTITY, jwks),
        "notification" => service!(weft_notification::Config, weft_notification::IDENTITY, jwks),
        "analytics" => service!(weft_analytics::Config, weft_analytics::IDENTITY, jwks),
        "gateway" => {
            let c: weft_gateway::Config = parse_flags(&bin, flags, env, what);
            Settings {
                listen_port: c.http_addr.port(),
                admin_port: c.admin_addr.port(),
                kafka_brokers: None,
                database_url: None,
                user_service_url: Some(c.jwks.user_service_url.clone()),
                upstreams: c.upstream_urls().into_iter().collect(),
                otlp_endpoint: c.telemetry.otlp_endpoint,
                client_ip_header: c.client_ip_header,
                conn: c.conn,
            }
        }
        other => panic!("{what}: no weft component {other}"),
    }
}

/// Parses `flags` as `C` would, but with clap's environment fallback applied to `env`
/// instead of the process environment: an environment value is used for a flag only
/// when the flag is not on the command line (clap's precedence).
pub(crate) fn parse_flags<C: Parser>(
    bin: &str,
    flags: &[String],
    env: &BTreeMap<String, String>,
    what: &str,
) -> C {
    let command = C::command();
    let mut argv = vec![bin.to_owned()];
    argv.extend(flags.iter().cloned());
    for arg in command.get_arguments() {
        let (Some(long), Some(var)) = (arg.get_long(), arg.get_env()) else {
            continue;
        };
        let given = flags
            .iter()
            .any(|f| f == &format!("--{long}") || f.starts_with(&format!("--{long}=")));
        let from_env = env.get(var.to_str().unwrap());
        if let (false, true, Some(value)) = (given, arg.get_action().takes_values(), from_env) {
            argv.push(format!("--{long}={value}"));
        }
    }
    let matches = command
        .mut_args(|a| a.env(None::<&'static str>))
        .try_get_matches_from(&argv)
        .unwrap_or_else(|e| panic!("{what}: `{}` does not parse: {e}", argv.join(" ")));
    C::from_arg_matches(&matches).unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Checks what every deployment of `component` must agree on, whatever runs it.
/// `resolves` says whether a host name is one the deployment can reach.
pub(crate) fn check_settings(
    c: &Component,
    s: &Settings,
    what: &str,
    resolves: &dyn Fn(&str) -> bool,
) {
    assert_eq!(
        s.listen_port, c.port,
        "{what}: {} listens on {}, but its port is {} (weft up's default)",
        c.name, s.listen_port, c.port
    );
    assert_eq!(
        s.admin_port, c.admin_port,
        "{what}: {} serves /metrics on {}, but its admin port is {}",
        c.name, s.admin_port, c.admin_port
    );
    let otlp = s
        .otlp_endpoint
        .as_deref()
        .unwrap_or_else(|| panic!("{what}: OTEL_EXPORTER_OTLP_ENDPOINT is not set"));
    let (host, port) = host_port(otlp);
    assert!(
        resolves(&host) && port == 4317,
        "{what}: traces go to {otlp}, not to an OTLP/gRPC collector it can reach (:4317)"
    );
    if c.grpc_service.is_some() {
        let brokers = s.kafka_brokers.as_deref().unwrap();
        for broker in brokers.split(',') {
            let (host, _) = host_port(broker);
            assert!(
                resolves(&host),
                "{what}: Kafka broker {broker} is not reachable by that name"
            );
        }
        assert!(
            !brokers.contains("localhost") && !brokers.contains("127.0.0.1"),
            "{what}: KAFKA_BROKERS is {brokers}, the embedded default"
        );
        assert!(
            s.database_url.is_some(),
            "{what}: {} has no DATABASE_URL, so it would keep SQLite in its container",
            c.name
        );
    }
    if let Some(url) = &s.user_service_url {
        let user = component("user");
        assert_eq!(
            host_port(url),
            (user.name.clone(), user.port),
            "{what}: the user service (token keys) is at {url}"
        );
    }
    if c.name == "gateway" {
        for other in components().iter().filter(|o| o.grpc_service.is_some()) {
            let full = other.grpc_service.unwrap();
            let url = s
                .upstreams
                .get(full)
                .unwrap_or_else(|| panic!("{what}: the gateway has no upstream for {full}"));
            assert_eq!(
                url,
                &format!("http://{}:{}", other.name, other.port),
                "{what}: the gateway sends {full} to {url}"
            );
        }
        assert_eq!(
            s.client_ip_header.as_deref(),
            Some(CLIENT_IP_HEADER),
            "{what}: behind Envoy the gateway must take the client from {CLIENT_IP_HEADER}, or every client shares one rate limit"
        );
        // Every connection to the gateway comes from Envoy: its pool must fit under
        // the gateway's cap per client, and it must let an idle connection go before
        // the gateway closes it (a request sent on a closing connection fails).
        let cluster = clusters(envoy())["gateway"];
        let pool = list(at(cluster, "circuit_breakers.thresholds", what), what)
            .iter()
            .map(|t| super::yaml::port(at(t, "max_connections", what)))
            .max()
            .unwrap_or_default();
        assert!(
            u32::from(pool) <= s.conn.max_connections_per_client,
            "{what}: Envoy may open {pool} connections to the gateway, over its --max-connections-per-client {}",
            s.conn.max_connections_per_client
        );
        let idle = cluster
            .get("typed_extension_protocol_options")
            .and_then(|o| o.get("envoy.extensions.upstreams.http.v3.HttpProtocolOptions"))
            .map(|o| seconds(at(o, "common_http_protocol_options.idle_timeout", what)))
            .unwrap_or_else(|| panic!("{what}: Envoy's gateway cluster sets no idle_timeout"));
        assert!(
            idle < s.conn.header_timeout.as_secs_f64(),
            "{what}: Envoy keeps idle connections to the gateway {idle} s, not under the gateway's --header-timeout {:?}",
            s.conn.header_timeout
        );
    }
}

/// The words of a provisioning script that name topics.
pub(crate) fn topics_in(script: &str) -> BTreeSet<String> {
    script
        .split(|c: char| c.is_whitespace() || c == ';' || c == '"')
        .filter(|w| w.ends_with("-events") || w.ends_with(".dlq"))
        .map(str::to_owned)
        .collect()
}

pub(crate) fn all_topics() -> BTreeSet<String> {
    weft_events::topics::all_topics().into_iter().collect()
}
