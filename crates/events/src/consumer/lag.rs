//! Consumer lag from librdkafka's statistics, published as the `consumer_lag` gauge.

use rdkafka::consumer::ConsumerContext;
use rdkafka::{ClientContext, Statistics};

/// The client context of every weft consumer: reports lag per partition.
pub struct LagReporter {
    /// The consumer group, a label of the gauge.
    pub group: String,
}

impl ClientContext for LagReporter {
    fn stats(&self, statistics: Statistics) {
        for (topic, t) in statistics.topics {
            for (partition, p) in t.partitions {
                if partition >= 0 && p.consumer_lag >= 0 {
                    metrics::gauge!(
                        "consumer_lag",
                        "group" => self.group.clone(),
                        "topic" => topic.clone(),
                        "partition" => partition.to_string()
                    )
                    .set(p.consumer_lag as f64);
                }
            }
        }
    }
}

impl ConsumerContext for LagReporter {}
