//! The Kubernetes manifests against compose.

use super::*;

/// Every document of every manifest kustomization.yaml lists, which must be every
/// manifest in the directory; read once per test process.
pub(crate) fn kube() -> &'static [Value] {
    static MANIFESTS: OnceLock<Vec<Value>> = OnceLock::new();
    MANIFESTS.get_or_init(read_manifests)
}

fn read_manifests() -> Vec<Value> {
    let kustomization = parse(
        "kustomization.yaml",
        &read(&format!("{K8S}/kustomization.yaml")),
    );
    let listed: BTreeSet<String> = list(
        at(&kustomization, "resources", "kustomization"),
        "resources",
    )
    .iter()
    .map(text)
    .collect();
    let present: BTreeSet<String> = std::fs::read_dir(Path::new(ROOT).join(K8S))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|f| f.ends_with(".yaml") && f != "kustomization.yaml")
        .collect();
    assert_eq!(
        listed, present,
        "{K8S}/kustomization.yaml must list every manifest of the directory"
    );
    listed
        .iter()
        .flat_map(|f| documents(&format!("{K8S}/{f}")))
        .collect()
}

pub(crate) fn kube_object<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| {
            d.get("kind").map(text).as_deref() == Some(kind)
                && d.get("metadata")
                    .and_then(|m| m.get("name"))
                    .map(text)
                    .as_deref()
                    == Some(name)
        })
        .unwrap_or_else(|| panic!("{K8S}: no {kind} named {name}"))
}

/// The single container of a Deployment.
pub(crate) fn kube_container<'a>(deployment: &'a Value, what: &str) -> &'a Value {
    let containers = list(at(deployment, "spec.template.spec.containers", what), what);
    assert_eq!(containers.len(), 1, "{what}: one container");
    &containers[0]
}

pub(crate) fn container_ports(container: &Value, what: &str) -> BTreeMap<String, u16> {
    list(at(container, "ports", what), what)
        .iter()
        .map(|p| {
            (
                p.get("name").map(text).unwrap_or_default(),
                port(at(p, "containerPort", what)),
            )
        })
        .collect()
}

/// A port by number or by the container port's name.
pub(crate) fn resolve_port(v: &Value, ports: &BTreeMap<String, u16>, what: &str) -> u16 {
    match v {
        Value::Number(_) => port(v),
        _ => *ports
            .get(&text(v))
            .unwrap_or_else(|| panic!("{what}: no container port named {}", text(v))),
    }
}

/// A container's environment as the process sees it: its ConfigMaps (envFrom), then
/// `env` (values; Secret references stand in as `secret:<name>/<key>`; optional
/// ones are left out, as if the Secret were absent).
pub(crate) fn kube_env(docs: &[Value], container: &Value, what: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for from in container.get("envFrom").map_or(&[][..], |e| list(e, what)) {
        let name = text(at(from, "configMapRef.name", what));
        let data = at(kube_object(docs, "ConfigMap", &name), "data", &name);
        for (k, v) in data.as_mapping().unwrap() {
            env.insert(text(k), text(v));
        }
    }
    for var in container.get("env").map_or(&[][..], |e| list(e, what)) {
        let name = text(at(var, "name", what));
        if let Some(value) = var.get("value") {
            env.insert(name, text(value));
        } else {
            let secret = at(var, "valueFrom.secretKeyRef", &name);
            if secret.get("optional").and_then(Value::as_bool) != Some(true) {
                let reference = format!(
                    "secret:{}/{}",
                    text(at(secret, "name", &name)),
                    text(at(secret, "key", &name))
                );
                env.insert(name, reference);
            }
        }
    }
    env
}

pub(crate) fn kube_args(container: &Value, what: &str) -> Vec<String> {
    list(at(container, "args", what), what)
        .iter()
        .map(text)
        .collect()
}

// =========================================================================================
// Envoy
// =========================================================================================

pub(crate) fn kube_service_names(docs: &[Value]) -> BTreeSet<String> {
    docs.iter()
        .filter(|d| d.get("kind").map(text).as_deref() == Some("Service"))
        .map(|d| text(at(d, "metadata.name", "Service")))
        .collect()
}

#[test]
fn kubernetes_runs_every_component_with_the_settings_compose_uses() {
    let services = kube_service_names(kube());
    let resolves = |host: &str| services.contains(host);
    for c in components() {
        let what = format!("{K8S} {}", c.name);
        let container = kube_container(kube_object(kube(), "Deployment", &c.name), &what);
        let env = kube_env(kube(), container, &what);
        let s = settings(&c.name, &kube_args(container, &what), &env, &what);
        check_settings(&c, &s, &what, &resolves);
        if c.grpc_service.is_some() {
            assert_eq!(
                env.get("DATABASE_URL"),
                Some(&format!("secret:weft-database/{}", c.name)),
                "{what}: DATABASE_URL must come from Secret weft-database, key {}",
                c.name
            );
        }
        assert!(
            at(container, "resources.requests", &what).is_mapping(),
            "{what}: resource requests"
        );
        assert!(
            at(container, "resources.limits.memory", &what).is_string(),
            "{what}: a memory limit"
        );
    }
}

#[test]
fn kubernetes_services_have_compose_names_and_ports() {
    for c in components() {
        let what = format!("{K8S} {}", c.name);
        let deployment = kube_object(kube(), "Deployment", &c.name);
        let ports = container_ports(kube_container(deployment, &what), &what);
        let expected = BTreeSet::from([c.port, c.admin_port]);
        assert_eq!(
            ports.values().copied().collect::<BTreeSet<_>>(),
            expected,
            "{what}: container ports"
        );
        let service = kube_object(kube(), "Service", &c.name);
        let selector = at(service, "spec.selector", &what);
        assert_selects("Service", selector, deployment, &what);
        let mut service_ports = BTreeSet::new();
        for p in list(at(service, "spec.ports", &what), &what) {
            let number = port(at(p, "port", &what));
            let target = resolve_port(
                p.get("targetPort").unwrap_or(at(p, "port", &what)),
                &ports,
                &what,
            );
            assert_eq!(
                number, target,
                "{what}: others address {}:{number}, so the Service port must be the container port",
                c.name
            );
            service_ports.insert(number);
        }
        let in_compose = compose_ports(compose_service(compose(), &c.name));
        assert_eq!(
            service_ports, in_compose,
            "{what}: the Service's ports must be compose's"
        );
    }
}

#[test]
fn kubernetes_probes_ask_the_health_endpoints() {
    for c in components() {
        let what = format!("{K8S} {}", c.name);
        let container = kube_container(kube_object(kube(), "Deployment", &c.name), &what);
        let ports = container_ports(container, &what);
        let http_probe = |probe: &str, path: &str| {
            let get = at(container, &format!("{probe}.httpGet"), &what);
            assert_eq!(
                text(at(get, "path", &what)),
                path,
                "{what}: {probe} asks {path}"
            );
            let on = resolve_port(at(get, "port", &what), &ports, &what);
            assert_eq!(
                on, c.admin_port,
                "{what}: {path} is on the admin port {}",
                c.admin_port
            );
        };
        if c.grpc_service.is_some() {
            let on = port(at(container, "readinessProbe.grpc.port", &what));
            assert_eq!(
                on, c.port,
                "{what}: readiness is grpc.health.v1 on {}",
                c.port
            );
        } else {
            http_probe("readinessProbe", "/readyz");
        }
        http_probe("livenessProbe", "/healthz");
    }
}

/// Every component runs as two replicas or more, replaced one pod at a time and kept
/// above one pod by a PodDisruptionBudget: the services share their consumer groups,
/// relay lease and delivery claims, so more than one is safe.
#[test]
fn kubernetes_runs_every_component_twice_replaced_one_pod_at_a_time() {
    for c in components() {
        let what = format!("{K8S} {}", c.name);
        let deployment = kube_object(kube(), "Deployment", &c.name);
        let replicas = at(deployment, "spec.replicas", &what).as_u64().unwrap();
        assert!(replicas >= 2, "{what}: {replicas} replica(s)");
        assert_eq!(
            text(at(deployment, "spec.strategy.type", &what)),
            "RollingUpdate",
            "{what}"
        );
        assert_eq!(
            at(
                deployment,
                "spec.strategy.rollingUpdate.maxUnavailable",
                &what
            )
            .as_u64(),
            Some(0),
            "{what}: no pod stops before its replacement is ready"
        );
        let budget = kube_object(kube(), "PodDisruptionBudget", &c.name);
        assert_eq!(
            at(budget, "spec.minAvailable", &what).as_u64(),
            Some(1),
            "{what}: a PodDisruptionBudget keeps one pod"
        );
        let selector = at(budget, "spec.selector.matchLabels", &what);
        assert_selects("PodDisruptionBudget", selector, deployment, &what);
    }
}

#[test]
fn kubernetes_names_kafka_and_the_collector_and_provisions_the_topics() {
    let services = kube_service_names(kube());
    // The names in weft-env are Services of the namespace (ExternalName to yours).
    let env = at(
        kube_object(kube(), "ConfigMap", "weft-env"),
        "data",
        "weft-env",
    );
    for key in ["KAFKA_BROKERS", "OTEL_EXPORTER_OTLP_ENDPOINT"] {
        let url = text(at(env, key, "weft-env"));
        let (host, _) = host_port(&url);
        assert!(
            services.contains(&host),
            "{K8S}: {key} names {host}, which is no Service"
        );
    }
    let job = kube_object(kube(), "Job", "kafka-topics");
    let script = kube_args(kube_container_of_job(job), "kafka-topics").join(" ");
    assert_eq!(
        topics_in(&script),
        all_topics(),
        "the kafka-topics Job must create exactly weft's topics"
    );
}

pub(crate) fn kube_container_of_job(job: &Value) -> &Value {
    let containers = list(at(job, "spec.template.spec.containers", "Job"), "Job");
    &containers[0]
}

/// The pods of `deployment` carry every label of `selector`, by which a `selecting`
/// object (a Service, a PodDisruptionBudget) finds them.
pub(crate) fn assert_selects(selecting: &str, selector: &Value, deployment: &Value, what: &str) {
    let labels = at(deployment, "spec.template.metadata.labels", what);
    for (k, v) in selector.as_mapping().unwrap() {
        assert_eq!(
            labels.get(text(k).as_str()),
            Some(v),
            "{what}: the {selecting} selects {k:?}={v:?}, which its pods do not carry"
        );
    }
}

#[test]
fn kubernetes_envoy_matches_its_config_and_compose() {
    let what = format!("{K8S} envoy");
    let deployment = kube_object(kube(), "Deployment", "envoy");
    let container = kube_container(deployment, &what);
    let ports = container_ports(container, &what);
    let listening: BTreeSet<u16> = listeners(envoy()).iter().map(listener_port).collect();
    assert_eq!(
        ports.values().copied().collect::<BTreeSet<_>>(),
        listening,
        "{what}: container ports must be envoy.yaml's listeners"
    );
    let compose_envoy = compose_service(compose(), "envoy");
    let service = kube_object(kube(), "Service", "envoy");
    let selector = at(service, "spec.selector", &what);
    assert_selects("Service", selector, deployment, &what);
    let compose_ports = compose_ports(compose_envoy);
    for p in list(at(service, "spec.ports", &what), &what) {
        let target = resolve_port(
            p.get("targetPort").unwrap_or(at(p, "port", &what)),
            &ports,
            &what,
        );
        assert!(
            compose_ports.contains(&target),
            "{what}: Service targets {target}, which compose's envoy does not use"
        );
        assert_eq!(
            target,
            listener_port(listener(envoy(), "https")),
            "{what}: the Service exposes the TLS listener only"
        );
    }
    let readiness = at(container, "readinessProbe.httpGet", &what);
    assert_eq!(text(at(readiness, "path", &what)), "/ready");
    assert_eq!(
        resolve_port(at(readiness, "port", &what), &ports, &what),
        listener_port(listener(envoy(), "stats")),
        "{what}: readiness asks /ready on the stats listener (the admin port is loopback)"
    );
}

#[test]
fn kubernetes_envoy_runs_this_config_and_certificate() {
    let what = format!("{K8S} envoy");
    let container = kube_container(kube_object(kube(), "Deployment", "envoy"), &what);
    let args: Vec<String> = list(at(container, "args", &what), &what)
        .iter()
        .map(text)
        .collect();
    let config = args
        .windows(2)
        .find(|w| w[0] == "-c")
        .map(|w| w[1].as_str());
    assert_eq!(
        config,
        Some("/etc/envoy/envoy.yaml"),
        "{what}: envoy -c /etc/envoy/envoy.yaml"
    );
    let mounts: BTreeSet<String> = each_text(container, "volumeMounts", "mountPath", &what)
        .into_iter()
        .collect();
    assert!(
        mounts.contains("/etc/envoy/envoy.yaml"),
        "{what}: envoy.yaml is not mounted"
    );
    assert!(
        mounts.contains("/etc/envoy/tls"),
        "{what}: the TLS Secret is not mounted at /etc/envoy/tls"
    );
}

#[test]
fn kubernetes_uses_the_images_compose_uses() {
    let image = |v: &Value, what: &str| text(at(v, "image", what));
    let envoy = kube_container(kube_object(kube(), "Deployment", "envoy"), "envoy");
    let compose_envoy = compose_service(compose(), "envoy");
    assert_eq!(
        image(envoy, "envoy"),
        image(compose_envoy, "compose envoy"),
        "the same Envoy as compose"
    );
    let job = kube_container_of_job(kube_object(kube(), "Job", "kafka-topics"));
    let kafka = compose_service(compose(), "kafka");
    assert_eq!(
        image(job, "kafka-topics"),
        image(kafka, "compose kafka"),
        "the Kafka tools of compose's broker"
    );
}

// =========================================================================================
// The image
// =========================================================================================

#[test]
fn the_image_builds_weft_with_the_workspace_toolchain_and_runs_it() {
    let dockerfile = read("Dockerfile");
    let manifest = read("Cargo.toml");
    let rust_version = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("rust-version = "))
        .map(|v| v.trim_matches('"'))
        .expect("the workspace declares a rust-version");
    assert!(
        dockerfile.contains(&format!("ARG RUST_VERSION={rust_version}\n"))
            && dockerfile.contains("FROM rust:${RUST_VERSION}"),
        "the Dockerfile must build with Rust {rust_version}, the workspace's rust-version"
    );
    assert!(
        dockerfile.contains("-p weft --bin weft"),
        "the Dockerfile must build the weft binary"
    );
    assert!(
        dockerfile.contains("ENTRYPOINT [\"weft\"]"),
        "every container runs `weft serve <name>`: the entrypoint is weft"
    );
    // Every weft container runs the image the Dockerfile builds.
    let kustomization = parse(
        "kustomization.yaml",
        &read(&format!("{K8S}/kustomization.yaml")),
    );
    let images = list(at(&kustomization, "images", "kustomization"), "images");
    for c in components() {
        let service = compose_service(compose(), &c.name);
        assert!(
            service.get("build").is_some(),
            "{COMPOSE} {} is built from the Dockerfile",
            c.name
        );
        let what = format!("{K8S} {}", c.name);
        let container = kube_container(kube_object(kube(), "Deployment", &c.name), &what);
        let image = text(at(container, "image", &what));
        assert!(
            images
                .iter()
                .any(|i| i.get("name").map(text) == Some(image.clone())),
            "{what}: image {image} is not the one kustomization.yaml sets (images: name: weft)"
        );
    }
}
