//! What each child of `weft up` is started with: every instance of every service in
//! the [`Plan`] with the flags that tie it to the others (the user service's URL, its
//! database, where its consumers start), then the gateway with every service's URLs.

use std::collections::HashMap;

use crate::children::{Kind, ServiceSpec};
use crate::cli::UpArgs;

use super::plan::{Plan, local};

/// The children in the order they start: the services as the plan lists them (the
/// user service first: the others need its token keys), then the gateway.
pub(super) fn specs(
    args: &UpArgs,
    plan: &Plan,
    databases: &HashMap<&'static str, String>,
) -> Vec<ServiceSpec> {
    let user_url = plan.urls("user");
    let mut specs = Vec::new();
    for (service, instances) in &plan.services {
        let mut flags = service_flags(service, &user_url, plan);
        if *service != "user" {
            flags.extend(consumer_flags(args));
        }
        if let Some(url) = databases.get(service) {
            flags.extend(["--database-url".to_owned(), url.clone()]);
        }
        for instance in instances {
            specs.push(ServiceSpec {
                service,
                name: instance.name.clone(),
                kind: Kind::Service,
                grpc: instance.grpc,
                admin: instance.admin,
                flags: flags.clone(),
            });
        }
    }
    specs.push(gateway(plan, user_url));
    specs
}

/// The flags that point `service` at the others.
fn service_flags(service: &str, user_url: &str, plan: &Plan) -> Vec<String> {
    match service {
        "order" => vec!["--user-service-url".to_owned(), user_url.to_owned()],
        "notification" => {
            let mut f = vec!["--user-service-url".to_owned(), user_url.to_owned()];
            // Verification links point at this mesh's gateway unless told otherwise.
            if std::env::var_os("WEFT_PUBLIC_URL").is_none() {
                f.extend([
                    "--public-url".to_owned(),
                    format!("http://{}", local(plan.gateway)),
                ]);
            }
            f
        }
        // Streams the gateway opens are counted against the client it names.
        "analytics" => vec![
            "--user-service-url".to_owned(),
            user_url.to_owned(),
            "--client-ip-header".to_owned(),
            "x-weft-client-ip".to_owned(),
        ],
        _ => Vec::new(),
    }
}

/// Where the consumers of a service that reads topics start, when `args` say.
fn consumer_flags(args: &UpArgs) -> Vec<String> {
    let mut flags = Vec::new();
    for (flag, value) in [
        ("--reset-offsets", args.reset_offsets.map(flag_value)),
        ("--from", args.from.map(flag_value)),
    ] {
        if let Some(value) = value {
            flags.extend([flag.to_owned(), value]);
        }
    }
    flags
}

/// The gateway, in front of every instance of every service.
fn gateway(plan: &Plan, user_url: String) -> ServiceSpec {
    ServiceSpec {
        service: "gateway",
        name: "gateway".to_owned(),
        kind: Kind::Gateway,
        grpc: plan.gateway,
        admin: plan.gateway_admin,
        flags: vec![
            "--user-service-url".to_owned(),
            user_url,
            "--order-service-url".to_owned(),
            plan.urls("order"),
            "--notification-service-url".to_owned(),
            plan.urls("notification"),
            "--analytics-service-url".to_owned(),
            plan.urls("analytics"),
        ],
    }
}

/// A value-enum's word on the command line.
fn flag_value(value: impl clap::ValueEnum) -> String {
    value
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default()
}
