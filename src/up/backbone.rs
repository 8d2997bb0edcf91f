//! The broker of the mesh `weft up` runs: the embedded one (a child like the
//! services), a local Apache Kafka cluster (stopped when the [`Backbone`] is dropped)
//! or an external Kafka; the Kafka settings every child gets; and the topics,
//! provisioned explicitly once the broker answers.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use weft_events::kafka::KafkaArgs;
use weft_events::topics;

use crate::broker::EmbeddedBroker;
use crate::cli::{BrokerMode, UpArgs};
use crate::local_kafka::LocalKafka;

use super::console::print_step;
use super::running::Running;

/// The broker the mesh runs on and how its clients reach it.
pub(super) struct Backbone {
    /// The embedded broker, when `weft up` runs it.
    pub(super) embedded: Option<EmbeddedBroker>,
    /// The local Apache Kafka cluster, held so it stops when `weft up` ends.
    _local_kafka: Option<LocalKafka>,
    /// `bootstrap.servers` of the broker.
    pub(super) bootstrap: String,
    /// The Kafka settings of the mesh: client, partitions, replication.
    pub(super) kafka: KafkaArgs,
}

impl Backbone {
    /// Starts the broker `args` choose (the embedded one joins `running`) and waits
    /// until it accepts connections.
    pub(super) async fn start(
        args: &UpArgs,
        data_dir: &Path,
        running: &mut Running,
    ) -> anyhow::Result<Self> {
        let (embedded, local_kafka, bootstrap) = match args.broker {
            BrokerMode::Embedded => {
                let broker = EmbeddedBroker::new(data_dir, args.broker_port);
                let bootstrap = start_embedded(&broker, running).await?;
                (Some(broker), None, bootstrap)
            }
            BrokerMode::Kafka => {
                let cluster = LocalKafka::new(data_dir, args.kafka_nodes, args.kafka_port)?;
                let bootstrap = start_local_kafka(&cluster, args, data_dir).await?;
                (None, Some(cluster), bootstrap)
            }
            BrokerMode::External => (None, None, args.kafka_brokers.clone().unwrap_or_default()),
        };
        Ok(Self {
            embedded,
            _local_kafka: local_kafka,
            kafka: kafka_args(args, bootstrap.clone()),
            bootstrap,
        })
    }

    /// Creates every topic that does not exist yet, stopping `running` if that fails.
    pub(super) async fn provision(&self, running: &mut Running) -> anyhow::Result<()> {
        let t = Instant::now();
        print_step(&format!(
            "provisioning {} topics",
            topics::all_topics().len()
        ));
        let created = running
            .or_stop(provision_with_retry(&self.kafka).await)
            .await?;
        println!("ok ({} new, {} ms)", created.len(), t.elapsed().as_millis());
        Ok(())
    }
}

async fn start_embedded(broker: &EmbeddedBroker, running: &mut Running) -> anyhow::Result<String> {
    let t = Instant::now();
    print_step(&format!(
        "starting the embedded broker on {} (data in {})",
        broker.listen,
        broker.data_dir.display()
    ));
    let child = broker.start().await?;
    println!("ok ({} ms)", t.elapsed().as_millis());
    running.push("broker", child);
    Ok(broker.bootstrap())
}

async fn start_local_kafka(
    cluster: &LocalKafka,
    args: &UpArgs,
    data_dir: &Path,
) -> anyhow::Result<String> {
    let t = Instant::now();
    print_step(&format!(
        "starting Apache Kafka ({} node{}, data in {})",
        args.kafka_nodes,
        if args.kafka_nodes == 1 { "" } else { "s" },
        data_dir.join("kafka").display()
    ));
    let brokers = cluster.start().await?;
    println!("ok ({} ms)", t.elapsed().as_millis());
    Ok(brokers)
}

/// The Kafka settings of `args` on `bootstrap`: a local cluster's topics are
/// replicated to each node (and need two in sync from three nodes on), others' once.
fn kafka_args(args: &UpArgs, bootstrap: String) -> KafkaArgs {
    let mut kafka = KafkaArgs::new(bootstrap);
    kafka.topic_partitions = args.topic_partitions;
    kafka.client = args.kafka_client.clone();
    let local_nodes = i32::from(args.kafka_nodes);
    kafka.topic_replication = args.topic_replication.unwrap_or(match args.broker {
        BrokerMode::Kafka => local_nodes,
        BrokerMode::Embedded | BrokerMode::External => 1,
    });
    kafka.topic_min_insync_replicas = args
        .topic_min_insync_replicas
        .or((args.broker == BrokerMode::Kafka && local_nodes >= 3).then_some(2));
    kafka
}

async fn provision_with_retry(kafka: &KafkaArgs) -> anyhow::Result<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut attempt = 0u32;
    loop {
        match topics::provision(kafka, &topics::all_topics()).await {
            Ok(created) => return Ok(created),
            // Refused credentials or TLS, or settings librdkafka refuses: waiting
            // cannot help.
            Err(
                e @ (weft_events::EventsError::Refused { .. }
                | weft_events::EventsError::Kafka(rdkafka::error::KafkaError::ClientConfig(..))),
            ) => return Err(e).context("creating topics"),
            Err(e) if Instant::now() < deadline => {
                attempt += 1;
                tracing::debug!(error = %e, attempt, "broker not ready for topic creation yet");
                tokio::time::sleep(
                    weft_events::consumer::backoff(attempt).min(Duration::from_secs(2)),
                )
                .await;
            }
            Err(e) => return Err(e).context("creating topics"),
        }
    }
}
