//! Where `weft up` puts everything before it starts anything: each instance of each
//! service on the flags' ports (replica k `(k - 1) × --replica-port-step` above them),
//! the gateway on its own, and the list of listeners that must be free.

use std::net::SocketAddr;

use anyhow::{Context as _, bail};

use crate::cli::{BrokerMode, UpArgs};
use crate::ports;

/// Where each instance of each service listens, and where the gateway does.
pub(super) struct Plan {
    /// Each service by its `weft serve` name, with its instances, first one first.
    pub(super) services: Vec<(&'static str, Vec<Instance>)>,
    /// The gateway's HTTP address.
    pub(super) gateway: SocketAddr,
    /// The gateway's admin address.
    pub(super) gateway_admin: SocketAddr,
}

/// One instance of a service in the [`Plan`].
pub(super) struct Instance {
    /// The service's name for the first, `<service>-<k>` for replica k.
    pub(super) name: String,
    pub(super) grpc: SocketAddr,
    grpc_flag: &'static str,
    pub(super) admin: SocketAddr,
    admin_flag: &'static str,
}

/// A service's ports as the flags give them (its first instance's), the flags that
/// move them, and its own database URL if it has one.
struct Base<'a> {
    service: &'static str,
    grpc: u16,
    grpc_flag: &'static str,
    admin: u16,
    admin_flag: &'static str,
    own_database: &'a Option<String>,
}

impl Plan {
    /// The plan of `args`; an error when replicas would share a SQLite file or
    /// listen beyond port 65535.
    pub(super) fn new(args: &UpArgs) -> anyhow::Result<Self> {
        let bases = bases(args);
        if args.replicas > 1 {
            replicas_share_a_server(args, &bases)?;
        }
        let services = bases
            .iter()
            .map(|base| Ok((base.service, instances(args, base)?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            services,
            gateway: SocketAddr::new(args.host, args.gateway_port),
            gateway_admin: SocketAddr::new(args.host, args.gateway_admin_port),
        })
    }

    /// Every listener the mesh of `args` will open, with what it is for and the
    /// flag that moves it.
    pub(super) fn wanted_ports(&self, args: &UpArgs) -> Vec<ports::Wanted> {
        let mut wanted = Vec::new();
        if args.broker == BrokerMode::Embedded {
            wanted.push(ports::Wanted {
                what: "the embedded broker".to_owned(),
                flag: "--broker-port",
                addr: SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), args.broker_port),
            });
        }
        for (service, instances) in &self.services {
            for (k, instance) in instances.iter().enumerate() {
                let whose = if k == 0 {
                    format!("the {service} service")
                } else {
                    format!("replica {} of the {service} service", k + 1)
                };
                wanted.push(ports::Wanted {
                    what: whose.clone(),
                    flag: instance.grpc_flag,
                    addr: instance.grpc,
                });
                wanted.push(ports::Wanted {
                    what: format!("{whose}'s metrics"),
                    flag: instance.admin_flag,
                    addr: instance.admin,
                });
            }
        }
        wanted.push(ports::Wanted {
            what: "the gateway".to_owned(),
            flag: "--gateway-port",
            addr: self.gateway,
        });
        wanted.push(ports::Wanted {
            what: "the gateway's metrics".to_owned(),
            flag: "--gateway-admin-port",
            addr: self.gateway_admin,
        });
        wanted
    }

    /// The gRPC URLs of every instance of `service`, comma-separated.
    pub(super) fn urls(&self, service: &str) -> String {
        self.services
            .iter()
            .filter(|(s, _)| *s == service)
            .flat_map(|(_, instances)| {
                instances
                    .iter()
                    .map(|i| format!("http://{}", local(i.grpc)))
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// `addr` as a client reaches it: an unspecified host becomes loopback.
pub(super) fn local(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}

fn bases(args: &UpArgs) -> [Base<'_>; 4] {
    [
        Base {
            service: "user",
            grpc: args.user_port,
            grpc_flag: "--user-port",
            admin: args.user_admin_port,
            admin_flag: "--user-admin-port",
            own_database: &args.user_database_url,
        },
        Base {
            service: "order",
            grpc: args.order_port,
            grpc_flag: "--order-port",
            admin: args.order_admin_port,
            admin_flag: "--order-admin-port",
            own_database: &args.order_database_url,
        },
        Base {
            service: "notification",
            grpc: args.notification_port,
            grpc_flag: "--notification-port",
            admin: args.notification_admin_port,
            admin_flag: "--notification-admin-port",
            own_database: &args.notification_database_url,
        },
        Base {
            service: "analytics",
            grpc: args.analytics_port,
            grpc_flag: "--analytics-port",
            admin: args.analytics_admin_port,
            admin_flag: "--analytics-admin-port",
            own_database: &args.analytics_database_url,
        },
    ]
}

/// Replicas of a service share its database, so each service needs PostgreSQL.
fn replicas_share_a_server(args: &UpArgs, bases: &[Base<'_>]) -> anyhow::Result<()> {
    let on_sqlite: Vec<&str> = bases
        .iter()
        .filter(|b| b.own_database.is_none() && args.database_url.is_none())
        .map(|b| b.service)
        .collect();
    if !on_sqlite.is_empty() {
        bail!(
            "--replicas {} needs PostgreSQL for {}: the replicas of a service share its database, \
             and on SQLite that database is a file under this data dir that only processes on this \
             machine can open, each waiting for one lock to write; \
             give --database-url postgres://user@host:port/weft (or run one replica)",
            args.replicas,
            on_sqlite.join(", ")
        );
    }
    Ok(())
}

/// The `--replicas` instances of the service of `base`.
fn instances(args: &UpArgs, base: &Base<'_>) -> anyhow::Result<Vec<Instance>> {
    (1..=args.replicas)
        .map(|k| {
            Ok(Instance {
                name: if k == 1 {
                    base.service.to_owned()
                } else {
                    format!("{}-{k}", base.service)
                },
                grpc: SocketAddr::new(args.host, replica_port(args, base.grpc, k, base.grpc_flag)?),
                grpc_flag: base.grpc_flag,
                admin: SocketAddr::new(
                    args.host,
                    replica_port(args, base.admin, k, base.admin_flag)?,
                ),
                admin_flag: base.admin_flag,
            })
        })
        .collect()
}

/// The port of replica `k` of a listener whose first instance is on `base`.
fn replica_port(args: &UpArgs, base: u16, k: u8, flag: &str) -> anyhow::Result<u16> {
    u16::from(k - 1)
        .checked_mul(args.replica_port_step)
        .and_then(|offset| base.checked_add(offset))
        .with_context(|| {
            format!(
                "replica {k} would listen beyond port 65535 ({flag} {base}, --replica-port-step {}): choose lower ports or a smaller step",
                args.replica_port_step
            )
        })
}
