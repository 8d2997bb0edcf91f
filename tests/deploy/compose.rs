//! docker-compose.yml against the launcher, the topics and Prometheus.

use super::*;
use crate::kube::{kube, kube_container, kube_env, kube_object};

#[test]
fn compose_runs_every_component_on_its_ports() {
    let services = compose_service_names(compose());
    for name in [
        "user",
        "order",
        "notification",
        "analytics",
        "gateway",
        "envoy",
        "kafka",
        "postgres",
        "otel-collector",
    ] {
        assert!(services.contains(name), "{COMPOSE} has no service {name}");
    }
    let resolves = |host: &str| services.contains(host);
    let mut databases = BTreeSet::new();
    for c in components() {
        let what = format!("{COMPOSE} service {}", c.name);
        let service = compose_service(compose(), &c.name);
        let s = settings(
            &c.name,
            &compose_command(service),
            &compose_env(service),
            &what,
        );
        check_settings(&c, &s, &what, &resolves);
        if let Some(url) = &s.database_url {
            let (host, _) = host_port(url);
            assert!(resolves(&host), "{what}: DATABASE_URL names host {host}");
            databases.insert(url.rsplit('/').next().unwrap().to_owned());
        }
        assert_eq!(
            compose_ports(service),
            BTreeSet::from([c.port, c.admin_port]),
            "{what}: declares ports other than its own"
        );
        let check = list(at(service, "healthcheck.test", &what), &what)
            .iter()
            .map(text)
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            check.contains(&format!(":{}/readyz", c.admin_port)),
            "{what}: the healthcheck should ask /readyz on the admin port {}, not `{check}`",
            c.admin_port
        );
    }
    assert_eq!(
        databases.len(),
        4,
        "each service needs a database of its own, found {databases:?}"
    );
    let init = text(at(
        compose(),
        "configs.postgres-init.content",
        "postgres-init",
    ));
    for db in &databases {
        assert!(
            init.contains(&format!("CREATE DATABASE {db};")),
            "the PostgreSQL init script does not create {db}"
        );
    }
}

#[test]
fn compose_kafka_never_creates_topics_itself_and_every_topic_is_provisioned() {
    let kafka = compose_env(compose_service(compose(), "kafka"));
    assert_eq!(
        kafka
            .get("KAFKA_AUTO_CREATE_TOPICS_ENABLE")
            .map(String::as_str),
        Some("false"),
        "{COMPOSE}: Kafka must not auto-create topics (weft provisions them explicitly)"
    );
    assert!(
        kafka["KAFKA_ADVERTISED_LISTENERS"].contains("kafka:9092"),
        "Kafka must advertise kafka:9092 to the other containers"
    );
    let init = compose_service(compose(), "kafka-init");
    let script = compose_command(init).join(" ");
    assert_eq!(
        topics_in(&script),
        all_topics(),
        "kafka-init must create exactly weft's topics"
    );
}

#[test]
fn compose_starts_things_in_order() {
    for name in compose_service_names(compose()) {
        let service = compose_service(compose(), &name);
        let Some(Value::Mapping(deps)) = service.get("depends_on") else {
            continue;
        };
        for (dep, how) in deps {
            let dep = text(dep);
            let target = compose_service(compose(), &dep);
            match text(at(how, "condition", &name)).as_str() {
                "service_healthy" => assert!(
                    target.get("healthcheck").is_some(),
                    "{name} waits for {dep} to be healthy, but {dep} has no healthcheck"
                ),
                "service_completed_successfully" => assert_eq!(
                    target.get("restart").map(text).as_deref(),
                    Some("no"),
                    "{name} waits for {dep} to finish, so {dep} must not restart"
                ),
                _ => {}
            }
        }
    }
    for c in components() {
        let deps = at(compose_service(compose(), &c.name), "depends_on", &c.name);
        if c.grpc_service.is_some() {
            assert!(
                deps.get("kafka-init").is_some(),
                "{} must start after the topics exist",
                c.name
            );
            assert!(
                deps.get("postgres").is_some(),
                "{} must start after its database",
                c.name
            );
        } else {
            for other in components().iter().filter(|o| o.grpc_service.is_some()) {
                assert!(
                    deps.get(other.name.as_str()).is_some(),
                    "the gateway must wait for {}",
                    other.name
                );
            }
        }
    }
}

#[test]
fn compose_envoy_mounts_this_config_and_publishes_its_listeners() {
    let service = compose_service(compose(), "envoy");
    let mounts: Vec<String> = list(at(service, "volumes", "envoy"), "volumes")
        .iter()
        .map(text)
        .collect();
    assert!(
        mounts
            .iter()
            .any(|m| m.starts_with("./envoy/envoy.yaml:/etc/envoy/envoy.yaml")),
        "compose envoy must mount ./envoy/envoy.yaml at /etc/envoy/envoy.yaml, found {mounts:?}"
    );
    assert!(
        mounts
            .iter()
            .any(|m| m.split(':').nth(1) == Some("/etc/envoy/tls")),
        "compose envoy must mount its certificate at /etc/envoy/tls, found {mounts:?}"
    );
    let declared = compose_ports(service);
    for l in listeners(envoy()) {
        let p = listener_port(l);
        assert!(
            declared.contains(&p),
            "envoy listens on {p}, which compose does not expose or publish"
        );
    }
    let published: Vec<String> = list(at(service, "ports", "envoy"), "ports")
        .iter()
        .map(text)
        .collect();
    for name in ["https", "http"] {
        let p = listener_port(listener(envoy(), name));
        assert!(
            published.iter().any(|s| s.ends_with(&format!(":{p}"))),
            "the {name} listener (:{p}) must be published"
        );
    }
}

#[test]
fn prometheus_scrapes_every_admin_port() {
    let prometheus = parse("prometheus.yml", &read("deploy/prometheus/prometheus.yml"));
    let targets: BTreeSet<String> = list(
        at(&prometheus, "scrape_configs", "prometheus"),
        "scrape_configs",
    )
    .iter()
    .flat_map(|job| list(at(job, "static_configs", "job"), "static_configs"))
    .flat_map(|sc| list(at(sc, "targets", "static config"), "targets"))
    .map(text)
    .collect();
    for c in components() {
        let target = format!("{}:{}", c.name, c.admin_port);
        assert!(
            targets.contains(&target),
            "Prometheus does not scrape {target}"
        );
    }
    let stats = listener_port(listener(envoy(), "stats"));
    assert!(
        targets.contains(&format!("envoy:{stats}")),
        "Prometheus does not scrape Envoy's stats listener"
    );
}

// =========================================================================================
// Kubernetes
// =========================================================================================

#[test]
fn no_deployment_names_an_administrator_and_streams_are_counted_per_client() {
    for c in components() {
        let compose_env = compose_env(compose_service(compose(), &c.name));
        let what = format!("{K8S} {}", c.name);
        let container = kube_container(kube_object(kube(), "Deployment", &c.name), &what);
        let kube_env = kube_env(kube(), container, &what);
        for env in [&compose_env, &kube_env] {
            assert!(
                !env.keys().any(|k| k.contains("ADMIN_EMAIL")),
                "{}: no address may be made an administrator by configuration",
                c.name
            );
            if c.name == "analytics" {
                assert_eq!(
                    env.get("WEFT_CLIENT_IP_HEADER").map(String::as_str),
                    Some("x-weft-client-ip"),
                    "analytics counts metric streams per client by the address Envoy and the gateway name"
                );
            }
        }
    }
}
