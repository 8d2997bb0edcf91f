//! The event catalogue: every weft event message with its CloudEvents type (the full
//! proto name), its topic and its key (the aggregate id, for per-entity ordering).

use weft_proto::common::EventMetadata;
use weft_proto::{notification, order, user};

/// Topic of user events.
pub const USER_EVENTS: &str = "user-events";
/// Topic of order events.
pub const ORDER_EVENTS: &str = "order-events";
/// Topic of notification events.
pub const NOTIFICATION_EVENTS: &str = "notification-events";
/// Every domain topic.
pub const TOPICS: [&str; 3] = [USER_EVENTS, ORDER_EVENTS, NOTIFICATION_EVENTS];

/// The dead-letter topic of `topic`.
pub fn dead_letter_topic(topic: &str) -> String {
    format!("{topic}.dlq")
}

/// A protobuf message that is a weft event.
pub trait DomainEvent: prost::Message + Default + Clone + Send + Sync + 'static {
    /// CloudEvents `type`: the full proto name, e.g. `weft.user.v1.UserSignedUp`.
    const TYPE: &'static str;
    /// Topic the event is published on.
    const TOPIC: &'static str;
    /// The envelope fields carried in the payload.
    fn metadata(&self) -> Option<&EventMetadata>;
    /// Mutable access to the envelope fields.
    fn metadata_mut(&mut self) -> &mut Option<EventMetadata>;
    /// The record key: the id of the aggregate the event is about.
    fn key(&self) -> &str;
}

macro_rules! domain_events {
    ($($pkg:ident => $topic:expr, keyed by $key:ident: [$($name:ident),* $(,)?];)*) => {
        $($(
            impl DomainEvent for $pkg::$name {
                const TYPE: &'static str =
                    concat!("weft.", stringify!($pkg), ".v1.", stringify!($name));
                const TOPIC: &'static str = $topic;
                fn metadata(&self) -> Option<&EventMetadata> {
                    self.metadata.as_ref()
                }
                fn metadata_mut(&mut self) -> &mut Option<EventMetadata> {
                    &mut self.metadata
                }
                fn key(&self) -> &str {
                    &self.$key
                }
            }
        )*)*
        /// Every event type of the catalogue with its topic.
        pub const EVENT_TYPES: &[(&str, &str)] = &[
            $($((<$pkg::$name as DomainEvent>::TYPE, $topic),)*)*
        ];
    };
}

domain_events! {
    user => USER_EVENTS, keyed by user_id: [
        UserSignedUp,
        UserUpdated,
        UserRolesChanged,
        ContactVerificationRequested,
        ContactVerified,
    ];
    order => ORDER_EVENTS, keyed by order_id: [
        OrderCreated,
        PaymentProcessed,
        PaymentFailed,
        OrderShipped,
        OrderDelivered,
        OrderCancelled,
    ];
    notification => NOTIFICATION_EVENTS, keyed by user_id: [EmailSent, SmsSent];
}

/// The topic of a catalogued event type, or `None` for a type weft does not know.
pub fn topic_of(event_type: &str) -> Option<&'static str> {
    EVENT_TYPES
        .iter()
        .find(|(t, _)| *t == event_type)
        .map(|(_, topic)| *topic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalogued_type_is_a_message_of_the_descriptor_set() {
        let pool = weft_proto::descriptor_pool();
        for (ty, _) in EVENT_TYPES {
            let message = pool.get_message_by_name(ty);
            assert!(message.is_some(), "{ty} is not in the descriptor set");
            let first = message.and_then(|m| m.get_field(1));
            assert_eq!(
                first.map(|f| f.kind().as_message().map(|m| m.full_name().to_owned())),
                Some(Some("weft.common.v1.EventMetadata".to_owned())),
                "{ty} must carry EventMetadata as field 1"
            );
        }
    }

    #[test]
    fn every_event_message_of_the_descriptor_set_is_catalogued() {
        let pool = weft_proto::descriptor_pool();
        for file in pool.files() {
            if !file.name().ends_with("_events.proto") {
                continue;
            }
            for message in file.messages() {
                assert!(
                    topic_of(message.full_name()).is_some(),
                    "{} is not catalogued",
                    message.full_name()
                );
            }
        }
    }

    #[test]
    fn types_are_full_proto_names() {
        assert_eq!(user::UserSignedUp::TYPE, "weft.user.v1.UserSignedUp");
        assert_eq!(order::OrderCreated::TOPIC, ORDER_EVENTS);
        assert_eq!(
            topic_of("weft.notification.v1.SmsSent"),
            Some(NOTIFICATION_EVENTS)
        );
        assert_eq!(topic_of("weft.user.v1.Nope"), None);
    }
}
