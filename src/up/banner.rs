//! What `weft up` prints once the mesh is healthy: where the broker, the topics and
//! each child are (with its metrics and log), the dashboard, the OpenAPI document,
//! the mail folder, a Prometheus scrape configuration it writes for this mesh, and a
//! first request to try.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Instant;

use weft_events::topics;

use crate::children::{Kind, ServiceSpec};
use crate::cli::BrokerMode;

use super::backbone::Backbone;
use super::plan::local;

/// The mesh as the banner describes it.
pub(super) struct Banner<'a> {
    pub(super) broker: BrokerMode,
    pub(super) backbone: &'a Backbone,
    pub(super) specs: &'a [ServiceSpec],
    pub(super) gateway: SocketAddr,
    pub(super) data_dir: &'a Path,
}

impl Banner<'_> {
    /// Prints the banner of a mesh whose start began at `started`.
    pub(super) fn print(&self, started: Instant) {
        println!();
        self.print_backbone();
        self.print_children();
        self.print_tools();
        println!();
        self.print_try();
        println!();
        println!(
            "weft is up in {} ms. Tail events with `weft tail user-events`. Ctrl-C stops.",
            started.elapsed().as_millis()
        );
    }

    fn print_backbone(&self) {
        let broker_line = match self.broker {
            BrokerMode::Embedded => "embedded broker (Kafka protocol)",
            BrokerMode::External => "Kafka",
            BrokerMode::Kafka => "Apache Kafka (local, scripts/kafka)",
        };
        println!("  {broker_line:<34} {}", self.backbone.bootstrap);
        let on_cluster: Vec<String> = topics::all_topics()
            .iter()
            .map(|t| self.backbone.kafka.topic(t))
            .collect();
        println!(
            "  topics                             {}",
            on_cluster.join(", ")
        );
    }

    fn print_children(&self) {
        for spec in self.specs {
            let (what, listen) = match spec.kind {
                Kind::Service => (format!("{} service", spec.name), "grpc"),
                Kind::Gateway => ("gateway (REST/JSON)".to_owned(), "http"),
            };
            println!(
                "  {what:<34} {listen} {}   metrics http://{}/metrics   log {}",
                local(spec.grpc),
                local(spec.admin),
                self.data_dir
                    .join(format!("logs/{}.log", spec.name))
                    .display()
            );
        }
    }

    /// The dashboard, the API's description, the mail, Prometheus and roles.
    fn print_tools(&self) {
        let gateway = local(self.gateway);
        println!("  {:<34} http://{gateway}/", "live dashboard");
        println!("  {:<34} http://{gateway}/openapi.json", "OpenAPI 3.1");
        if std::env::var_os("WEFT_SMTP_URL").is_none() {
            println!(
                "  {:<34} {}",
                "emails (mail files)",
                self.data_dir.join("mail").display()
            );
        }
        let scrape = self.data_dir.join("prometheus.yml");
        match std::fs::write(&scrape, prometheus_config(self.specs)) {
            Ok(()) => println!(
                "  {:<34} prometheus --config.file={}",
                "Prometheus scrape config",
                scrape.display()
            ),
            Err(e) => eprintln!("weft: writing {}: {e}", scrape.display()),
        }
        println!(
            "  {:<34} weft admin grant <email> staff --data-dir {}",
            "roles (operator only)",
            self.data_dir.display()
        );
    }

    fn print_try(&self) {
        println!(
            "  try: grpcurl -plaintext {} list",
            local(self.specs[0].grpc)
        );
        println!(
            "       curl -X POST http://{}/v1/users -d '{{\"email\":\"ada@example.com\",\"name\":\"Ada\",\"password\":\"correct horse battery\",\"source\":\"SIGNUP_SOURCE_WEB\"}}' -H 'content-type: application/json'",
            local(self.gateway)
        );
    }
}

/// A Prometheus configuration that scrapes every admin port of this mesh (`/metrics`)
/// every 5 s, each target labelled with its service and instance name.
fn prometheus_config(specs: &[ServiceSpec]) -> String {
    let mut out = String::from(
        "# Written by `weft up` for this mesh's admin ports; run\n\
         #   prometheus --config.file=<this file>\n\
         global:\n  scrape_interval: 5s\n  evaluation_interval: 5s\n\n\
         scrape_configs:\n  - job_name: weft\n    metrics_path: /metrics\n    static_configs:\n",
    );
    for spec in specs {
        out.push_str(&format!(
            "      - targets: [\"{}\"]\n        labels: {{ service: {}, instance_name: {} }}\n",
            local(spec.admin),
            spec.service,
            spec.name
        ));
    }
    out
}
