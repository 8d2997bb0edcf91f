//! The weft contracts in Rust: prost messages and tonic stubs generated at build time
//! from the `.proto` files beside this crate, the encoded descriptor set they came
//! from, and the REST route table read from their `google.api.http` rules.
//!
//! Nothing here is written by hand except the module tree and the route reader:
//! `build.rs` regenerates everything from `proto/` on every change, so the generated
//! code cannot drift from the contracts.

pub mod routes;

use std::sync::LazyLock;

use prost_reflect::DescriptorPool;

/// The encoded `FileDescriptorSet` of every weft proto and its imports, with custom
/// options (`google.api.http`) kept. Feeds server reflection, the gateway and tooling.
pub const DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/weft_descriptor.binpb"));

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    DescriptorPool::decode(DESCRIPTOR_SET).expect("the descriptor set built by build.rs decodes")
});

/// The descriptor pool of [`DESCRIPTOR_SET`], decoded once.
pub fn descriptor_pool() -> &'static DescriptorPool {
    &POOL
}

/// Generated `google.api` types (`HttpRule`, ...).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod google {
    /// The `google.api` package.
    pub mod api {
        include!(concat!(env!("OUT_DIR"), "/google.api.rs"));
    }
}

/// Generated weft packages, nested as their proto packages are.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod weft {
    /// `weft.common`.
    pub mod common {
        /// `weft.common.v1`: event metadata and money.
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/weft.common.v1.rs"));
        }
    }
    /// `weft.user`.
    pub mod user {
        /// `weft.user.v1`: the user service and its events.
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/weft.user.v1.rs"));
        }
    }
    /// `weft.order`.
    pub mod order {
        /// `weft.order.v1`: the order service and its events.
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/weft.order.v1.rs"));
        }
    }
    /// `weft.notification`.
    pub mod notification {
        /// `weft.notification.v1`: the notification service and its events.
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/weft.notification.v1.rs"));
        }
    }
    /// `weft.analytics`.
    pub mod analytics {
        /// `weft.analytics.v1`: the analytics service.
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/weft.analytics.v1.rs"));
        }
    }
}

pub use weft::analytics::v1 as analytics;
pub use weft::common::v1 as common;
pub use weft::notification::v1 as notification;
pub use weft::order::v1 as order;
pub use weft::user::v1 as user;

/// Full names of the gRPC services weft defines, in port order.
pub const SERVICES: [&str; 4] = [
    "weft.user.v1.UserService",
    "weft.order.v1.OrderService",
    "weft.notification.v1.NotificationService",
    "weft.analytics.v1.AnalyticsService",
];
