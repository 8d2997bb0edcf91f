//! Explicit topic provisioning: weft never relies on broker auto-creation. Creating a
//! topic that exists is success, so provisioning runs at every start-up.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::catalog::{TOPICS, dead_letter_topic};
use crate::error::EventsError;
use crate::kafka::KafkaArgs;

/// Every topic weft uses: the domain topics and their dead-letter topics.
pub fn all_topics() -> Vec<String> {
    TOPICS
        .iter()
        .flat_map(|t| [(*t).to_owned(), dead_letter_topic(t)])
        .collect()
}

/// Creates `topics` (weft's names; the cluster's carry `--kafka-prefix`) that do not
/// exist yet, with `--topic-partitions`, `--topic-replication` and
/// `--topic-min-insync-replicas`. Returns the ones it created.
pub async fn provision(kafka: &KafkaArgs, topics: &[String]) -> Result<Vec<String>, EventsError> {
    crate::kafka::reach(kafka).await?;
    let admin: AdminClient<DefaultClientContext> = kafka.client("weft-provisioner").create()?;
    let names: Vec<String> = topics.iter().map(|t| kafka.topic(t)).collect();
    let min_insync = kafka.topic_min_insync_replicas.map(|n| n.to_string());
    let new: Vec<NewTopic<'_>> = names
        .iter()
        .map(|t| {
            let topic = NewTopic::new(
                t,
                kafka.topic_partitions,
                TopicReplication::Fixed(kafka.topic_replication),
            );
            match &min_insync {
                Some(n) => topic.set("min.insync.replicas", n),
                None => topic,
            }
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin.create_topics(new.iter(), &options).await?;
    let mut created = Vec::new();
    for result in results {
        match result {
            Ok(topic) => created.push(topic),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(EventsError::Provision {
                    topic,
                    reason: code.to_string(),
                });
            }
        }
    }
    if !created.is_empty() {
        tracing::info!(?created, "topics created");
    }
    Ok(created)
}
