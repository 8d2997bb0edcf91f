//! The truth the files must match: the launcher's ports and the contracts.

use super::*;

/// A weft process: its name (compose service, Kubernetes Service and Envoy cluster
/// alike) and the ports `weft up` gives it.
#[derive(Debug, Clone)]
pub(crate) struct Component {
    pub(crate) name: String,
    /// Full name of its gRPC service; none for the gateway.
    pub(crate) grpc_service: Option<&'static str>,
    /// gRPC port, or the gateway's HTTP port.
    pub(crate) port: u16,
    pub(crate) admin_port: u16,
}

/// The four services of `weft_proto::SERVICES` (named by their package, e.g.
/// `weft.user.v1` → `user`) and the gateway.
pub(crate) fn components() -> Vec<Component> {
    let mut all: Vec<Component> = weft_proto::SERVICES
        .iter()
        .map(|full| {
            let name = full.split('.').nth(1).unwrap().to_owned();
            Component {
                port: launcher_default(&format!("{name}_port")),
                admin_port: launcher_default(&format!("{name}_admin_port")),
                grpc_service: Some(full),
                name,
            }
        })
        .collect();
    all.push(Component {
        name: "gateway".into(),
        grpc_service: None,
        port: launcher_default("gateway_port"),
        admin_port: launcher_default("gateway_admin_port"),
    });
    all
}

pub(crate) fn component(name: &str) -> Component {
    components()
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no weft component {name}"))
}

/// A default of `weft up`, from clap's definition of the flag. Parsing `weft up` would
/// also read `WEFT_USER_PORT` and friends from whoever runs this test.
pub(crate) fn launcher_default(id: &str) -> u16 {
    let cli = <weft::cli::Cli as CommandFactory>::command();
    let up = cli.find_subcommand("up").expect("weft has an `up` command");
    let arg = up
        .get_arguments()
        .find(|a| a.get_id() == id)
        .unwrap_or_else(|| panic!("`weft up` has no {id} flag"));
    let [value] = arg.get_default_values() else {
        panic!("`weft up` flag {id} has no single default");
    };
    value.to_str().unwrap().parse().unwrap()
}

/// Every gRPC service weft defines: `SERVICES`, and whatever else of package `weft.*`
/// the descriptor set holds (so a new service cannot be forgotten).
pub(crate) fn weft_grpc_services() -> Vec<prost_reflect::ServiceDescriptor> {
    let pool = weft_proto::descriptor_pool();
    let services: Vec<_> = pool
        .services()
        .filter(|s| s.package_name().starts_with("weft."))
        .collect();
    for full in weft_proto::SERVICES {
        assert!(
            services.iter().any(|s| s.full_name() == full),
            "{full} of weft_proto::SERVICES is not in the descriptor set"
        );
    }
    services
}

/// The component that serves a gRPC service: the one of its package.
pub(crate) fn cluster_of(service: &prost_reflect::ServiceDescriptor) -> String {
    let name = service.package_name().split('.').nth(1).unwrap().to_owned();
    assert!(
        components()
            .iter()
            .any(|c| c.name == name && c.grpc_service.is_some()),
        "{} is of package {}, but no weft process named {name} serves it (SERVICES and the launcher's ports know user, order, notification, analytics)",
        service.full_name(),
        service.package_name()
    );
    name
}

/// RPCs bound to a GET by `google.api.http`: the safe, read-only ones.
pub(crate) fn read_only_rpcs() -> BTreeSet<String> {
    weft_proto::routes::route_table(weft_proto::descriptor_pool())
        .unwrap()
        .into_iter()
        .filter(|r| r.http_method == "GET")
        .map(|r| r.rpc)
        .collect()
}
