//! The roles of weft and what they may do in general; each service's `access`
//! module applies them to its own actions.
//!
//! | role | who | may |
//! |---|---|---|
//! | `customer` | everyone who signs up | act on what is their own |
//! | `staff` | granted by an operator | also read everyone's data, ship and deliver orders, change the catalogue, rebuild projections |
//! | `admin` | granted by an operator | all of staff's, and change other users |
//!
//! Roles are granted and revoked only by an operator on the machine that holds the
//! user service's database (`weft admin grant|revoke`); a sign-up never gets more
//! than `customer`, whatever its address.

use std::fmt;
use std::str::FromStr;

/// A role a user can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// The default.
    Customer,
    /// Operations staff.
    Staff,
    /// Administrators.
    Admin,
}

impl Role {
    /// Every role, least privileged first.
    pub const ALL: [Role; 3] = [Role::Customer, Role::Staff, Role::Admin];

    /// The name in tokens and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Staff => "staff",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not a role; use customer, staff or admin"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_strangers_are_refused() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert!("root".parse::<Role>().is_err());
        assert!("Admin".parse::<Role>().is_err());
    }
}
