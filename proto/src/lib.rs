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

/// Generated weft packages, nested as their proto packages are below `weft.`
/// (`packages::order::v1` is `weft.order.v1`). Named apart from the `weft` crate, so
/// no path into the contracts reads as a path into the launcher.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod packages {
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

pub use packages::analytics::v1 as analytics;
pub use packages::common::v1 as common;
pub use packages::notification::v1 as notification;
pub use packages::order::v1 as order;
pub use packages::user::v1 as user;

/// Full names of the gRPC services weft defines, in port order.
pub const SERVICES: [&str; 4] = [
    "weft.user.v1.UserService",
    "weft.order.v1.OrderService",
    "weft.notification.v1.NotificationService",
    "weft.analytics.v1.AnalyticsService",
];

impl common::Money {
    /// The amount as an exact decimal with at least two fraction digits and no
    /// trailing zeros beyond them, e.g. `109.97`, `0.00`, `-1.5` → `-1.50`,
    /// `0.125` → `0.125`. No floating point is involved.
    pub fn decimal(&self) -> String {
        let negative = self.units < 0 || self.nanos < 0;
        let units = self.units.unsigned_abs();
        let nanos = self.nanos.unsigned_abs();
        let mut fraction = format!("{nanos:09}");
        while fraction.len() > 2 && fraction.ends_with('0') {
            fraction.pop();
        }
        let sign = if negative { "-" } else { "" };
        format!("{sign}{units}.{fraction}")
    }
}

impl std::fmt::Display for common::Money {
    /// `109.97 USD`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.decimal(), self.currency_code)
    }
}

#[cfg(test)]
mod money_tests {
    use super::common::Money;

    fn money(units: i64, nanos: i32) -> Money {
        Money {
            currency_code: "USD".into(),
            units,
            nanos,
        }
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(money(109, 970_000_000).to_string(), "109.97 USD");
        assert_eq!(money(0, 0).decimal(), "0.00");
        assert_eq!(money(-1, -500_000_000).decimal(), "-1.50");
        assert_eq!(money(0, -10_000_000).decimal(), "-0.01");
        assert_eq!(money(0, 125_000_000).decimal(), "0.125");
        assert_eq!(
            money(i64::MAX, 999_999_999).decimal(),
            "9223372036854775807.999999999"
        );
    }
}
