//! Topic administration: CreateTopics (partition count, replication factor and
//! configs checked, then created in the store), DeleteTopics (with the topic's
//! committed offsets) and CreatePartitions (a topic only grows). One node: a
//! replication factor other than 1 and replica assignments are refused.

use kafka_protocol::messages::{
    CreatePartitionsResponse, CreateTopicsResponse, DeleteTopicsResponse,
    create_partitions_response::CreatePartitionsTopicResult,
    create_topics_response::CreatableTopicResult, delete_topics_response::DeletableTopicResult,
};

use super::code;
use super::response::{Body, encode, s, topic_name};
use super::topic_config;
use crate::request::NewTopic;
use crate::shared::Shared;
use crate::store::{CreateError, GrowError, MAX_PARTITIONS, lock};

/// CreateTopics: each topic created (or, with `validate_only`, checked), or refused
/// with its reason.
pub(super) fn create_topics(
    shared: &Shared,
    topics: Vec<NewTopic>,
    validate_only: bool,
    version: i16,
) -> Body {
    let results = topics
        .into_iter()
        .map(|t| {
            let (error, message) = create(shared, &t, validate_only);
            CreatableTopicResult::default()
                .with_name(topic_name(&t.name))
                .with_error_code(error)
                .with_error_message((version >= 1 && error != code::NONE).then(|| s(message)))
        })
        .collect();
    encode(
        &CreateTopicsResponse::default().with_topics(results),
        version,
    )
}

/// Creates one topic (or checks that it can be): the error code and message to
/// answer with.
fn create(shared: &Shared, t: &NewTopic, validate_only: bool) -> (i16, String) {
    let partitions = if t.partitions == -1 {
        shared.default_partitions
    } else {
        t.partitions
    };
    let config = t
        .configs
        .iter()
        .try_for_each(|(k, v)| topic_config::check(k, v.as_deref()));
    if !matches!(t.replication, -1 | 1) {
        return (
            code::INVALID_REPLICATION_FACTOR,
            format!(
                "replication factor {} asked for; this broker is a single node (1)",
                t.replication
            ),
        );
    }
    if t.assignments > 0 {
        return (
            code::INVALID_REPLICA_ASSIGNMENT,
            "replica assignments are not supported by a single-node broker".to_owned(),
        );
    }
    if let Err(why) = config {
        return (code::INVALID_CONFIG, why);
    }
    match shared
        .store
        .create_topic(&t.name, partitions, validate_only)
    {
        Ok(()) => {
            if !validate_only {
                tracing::info!(topic = %t.name, partitions, "topic created");
            }
            (code::NONE, String::new())
        }
        Err(e) => refused(&t.name, e),
    }
}

/// The error code and message for a topic the store would not create.
fn refused(name: &str, e: CreateError) -> (i16, String) {
    match e {
        CreateError::Exists => (
            code::TOPIC_ALREADY_EXISTS,
            format!("topic {name} already exists"),
        ),
        CreateError::InvalidName(why) => (code::INVALID_TOPIC_EXCEPTION, why),
        CreateError::InvalidPartitions(n) => (
            code::INVALID_PARTITIONS,
            format!("{n} partitions asked for; 1 to {MAX_PARTITIONS} are allowed"),
        ),
        CreateError::Storage(e) => {
            tracing::error!(topic = %name, error = %e, "creating a topic failed");
            (
                code::UNKNOWN_SERVER_ERROR,
                "the broker could not write the topic".to_owned(),
            )
        }
    }
}

pub(super) fn delete_topics(shared: &Shared, names: Vec<String>, version: i16) -> Body {
    let results = names
        .into_iter()
        .map(|name| {
            let error = match shared.store.delete_topic(&name) {
                Ok(true) => {
                    if let Err(e) = lock(&shared.offsets).forget_topic(&name) {
                        tracing::warn!(topic = %name, error = %e, "forgetting a deleted topic's offsets failed");
                    }
                    tracing::info!(topic = %name, "topic deleted");
                    code::NONE
                }
                Ok(false) => code::UNKNOWN_TOPIC_OR_PARTITION,
                Err(e) => {
                    tracing::error!(topic = %name, error = %e, "deleting a topic failed");
                    code::UNKNOWN_SERVER_ERROR
                }
            };
            DeletableTopicResult::default()
                .with_name(Some(topic_name(&name)))
                .with_error_code(error)
        })
        .collect();
    encode(
        &DeleteTopicsResponse::default().with_responses(results),
        version,
    )
}

pub(super) fn create_partitions(
    shared: &Shared,
    topics: Vec<(String, i32, bool)>,
    validate_only: bool,
    version: i16,
) -> Body {
    let results = topics
        .into_iter()
        .map(|(name, count, assigned)| {
            let (error, message) = if assigned {
                (
                    code::INVALID_REPLICA_ASSIGNMENT,
                    "replica assignments are not supported by a single-node broker".to_owned(),
                )
            } else {
                match shared.store.add_partitions(&name, count, validate_only) {
                    Ok(before) => {
                        if !validate_only {
                            tracing::info!(topic = %name, before, partitions = count, "partitions added");
                        }
                        (code::NONE, String::new())
                    }
                    Err(GrowError::UnknownTopic) => (
                        code::UNKNOWN_TOPIC_OR_PARTITION,
                        format!("there is no topic {name}"),
                    ),
                    Err(GrowError::InvalidPartitions { asked, now }) => (
                        code::INVALID_PARTITIONS,
                        format!(
                            "topic {name} has {now} partition(s); {asked} asked for, and a topic only grows, to at most {}",
                            MAX_PARTITIONS
                        ),
                    ),
                    Err(GrowError::Storage(e)) => {
                        tracing::error!(topic = %name, error = %e, "adding partitions failed");
                        (
                            code::UNKNOWN_SERVER_ERROR,
                            "the broker could not write the new partitions".to_owned(),
                        )
                    }
                }
            };
            CreatePartitionsTopicResult::default()
                .with_name(topic_name(&name))
                .with_error_code(error)
                .with_error_message((error != code::NONE).then(|| s(message)))
        })
        .collect();
    encode(
        &CreatePartitionsResponse::default().with_results(results),
        version,
    )
}
