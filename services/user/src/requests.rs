//! Requests parsed at the boundary: each RPC's message becomes the domain's values,
//! or one `INVALID_ARGUMENT` naming every field that is wrong.

use std::collections::BTreeMap;

use weft_proto::user::{LoginRequest, SignUpRequest, SignupSource, UpdateUserRequest};

use crate::domain::{self, UserError, Violations};
use crate::store::UserRecord;

/// A `SignUp` whose every field passed its checks.
#[derive(Debug)]
pub struct NewUser {
    /// Lower-cased email.
    pub email: String,
    /// Display name.
    pub name: String,
    /// E.164 phone or empty.
    pub phone: String,
    /// The password, to be hashed.
    pub password: String,
    /// Where the user signed up.
    pub source: SignupSource,
    /// Attributes.
    pub metadata: BTreeMap<String, String>,
}

impl TryFrom<SignUpRequest> for NewUser {
    type Error = UserError;

    fn try_from(req: SignUpRequest) -> Result<Self, UserError> {
        let mut v = Violations::default();
        let email = domain::parse_email(&req.email, "email", &mut v);
        let name = domain::parse_name(&req.name, "name", &mut v);
        let phone = domain::parse_phone(&req.phone, "phone", &mut v);
        domain::check_password(&req.password, &email, "password", &mut v);
        let source = match SignupSource::try_from(req.source) {
            Ok(SignupSource::Unspecified) | Err(_) => {
                v.add("source", "must be one of WEB, MOBILE, API, SOCIAL");
                SignupSource::Unspecified
            }
            Ok(s) => s,
        };
        let metadata: BTreeMap<String, String> = req.metadata.into_iter().collect();
        domain::check_metadata(&metadata, "metadata", &mut v);
        v.finish(Self {
            email,
            name,
            phone,
            password: req.password,
            source,
            metadata,
        })
    }
}

/// A `Login`: an email address and a password of a sane length.
#[derive(Debug)]
pub struct Credentials {
    /// Lower-cased email.
    pub email: String,
    /// The password, to be verified.
    pub password: String,
}

impl TryFrom<LoginRequest> for Credentials {
    type Error = UserError;

    fn try_from(req: LoginRequest) -> Result<Self, UserError> {
        let mut v = Violations::default();
        let email = domain::parse_email(&req.email, "email", &mut v);
        if req.password.is_empty() {
            v.add("password", "is required");
        } else if req.password.len() > 1024 {
            v.add("password", "is too long");
        }
        v.finish(Self {
            email,
            password: req.password,
        })
    }
}

/// One field an `UpdateUser` sets, its new value checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldChange {
    /// `name`.
    Name(String),
    /// `phone`: a new number is unverified.
    Phone(String),
    /// `email`: a new address is unverified.
    Email(String),
    /// `metadata`, replaced whole.
    Metadata(BTreeMap<String, String>),
}

impl FieldChange {
    /// Sets the field on `user`; its name when that changed the user.
    pub fn apply(self, user: &mut UserRecord) -> Option<&'static str> {
        match self {
            Self::Name(name) if name != user.name => {
                user.name = name;
                Some("name")
            }
            Self::Phone(phone) if phone != user.phone => {
                user.phone = phone;
                user.phone_verified = false;
                Some("phone")
            }
            Self::Email(email) if email != user.email => {
                user.email = email;
                user.email_verified = false;
                Some("email")
            }
            Self::Metadata(metadata) if metadata != user.metadata => {
                user.metadata = metadata;
                Some("metadata")
            }
            _ => None,
        }
    }
}

/// An `UpdateUser`: whose record, and the fields its mask names, in its order.
#[derive(Debug)]
pub struct UserPatch {
    /// The user, a well-formed id.
    pub user_id: String,
    /// The fields to set.
    pub changes: Vec<FieldChange>,
}

impl TryFrom<UpdateUserRequest> for UserPatch {
    type Error = UserError;

    fn try_from(req: UpdateUserRequest) -> Result<Self, UserError> {
        let mut v = Violations::default();
        let Some(patch) = req.user else {
            return Err(UserError::invalid("user", "is required"));
        };
        let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
        if paths.is_empty() {
            v.add(
                "update_mask",
                "must name at least one field: name, phone, email, metadata",
            );
        }
        if let Some(problem) = weft_kit::text::Text::ID.problem(&patch.user_id) {
            return Err(UserError::invalid("user.user_id", &problem));
        }
        let mut changes = Vec::with_capacity(paths.len());
        for (i, path) in paths.iter().enumerate() {
            changes.push(match path.as_str() {
                "name" => FieldChange::Name(domain::parse_name(&patch.name, "user.name", &mut v)),
                "phone" => {
                    FieldChange::Phone(domain::parse_phone(&patch.phone, "user.phone", &mut v))
                }
                "email" => {
                    FieldChange::Email(domain::parse_email(&patch.email, "user.email", &mut v))
                }
                "metadata" => {
                    let metadata: BTreeMap<String, String> =
                        patch.metadata.clone().into_iter().collect();
                    domain::check_metadata(&metadata, "user.metadata", &mut v);
                    FieldChange::Metadata(metadata)
                }
                other => {
                    v.add(
                        format!("update_mask.paths[{i}]"),
                        format!("{other:?} cannot be changed; use name, phone, email or metadata"),
                    );
                    continue;
                }
            });
        }
        v.finish(Self {
            user_id: patch.user_id,
            changes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> UserRecord {
        UserRecord {
            user_id: "u-1".into(),
            email: "ada@example.com".into(),
            name: "Ada".into(),
            phone: "+15550100".into(),
            source: 1,
            roles: vec!["customer".into()],
            metadata: BTreeMap::new(),
            password_hash: String::new(),
            email_verified: true,
            phone_verified: true,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn a_change_names_its_field_only_when_it_changes_the_user() {
        let mut u = user();
        assert_eq!(FieldChange::Name("Ada".into()).apply(&mut u), None);
        assert_eq!(
            FieldChange::Email("ada@example.com".into()).apply(&mut u),
            None
        );
        assert!(u.email_verified && u.phone_verified);
        assert_eq!(
            FieldChange::Name("Ada L.".into()).apply(&mut u),
            Some("name")
        );
        assert_eq!(u.name, "Ada L.");
        assert_eq!(
            FieldChange::Email("lovelace@example.com".into()).apply(&mut u),
            Some("email")
        );
        assert!(!u.email_verified, "a new address is unverified");
        assert_eq!(
            FieldChange::Phone(String::new()).apply(&mut u),
            Some("phone")
        );
        assert!(!u.phone_verified, "a new number is unverified");
        let meta = BTreeMap::from([("plan".to_owned(), "pro".to_owned())]);
        assert_eq!(
            FieldChange::Metadata(meta.clone()).apply(&mut u),
            Some("metadata")
        );
        assert_eq!(FieldChange::Metadata(meta).apply(&mut u), None);
    }

    #[test]
    fn a_patch_names_every_bad_field_and_unknown_path() {
        let req = UpdateUserRequest {
            user: Some(weft_proto::user::User {
                user_id: "u-1".into(),
                email: "not an address".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["email".into(), "roles".into()],
            }),
        };
        let Err(UserError::Invalid(v)) = UserPatch::try_from(req) else {
            panic!("a bad patch must be invalid");
        };
        let fields: Vec<_> = v.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["user.email", "update_mask.paths[1]"]);
    }
}
