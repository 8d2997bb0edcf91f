//! Issuing access tokens.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, Header};
use serde::{Deserialize, Serialize};

use crate::error::AuthError;
use crate::keys::SigningKeys;

/// The claims of a weft access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Subject: the user id.
    pub sub: String,
    /// Expiry (seconds since the epoch).
    pub exp: u64,
    /// Issued at.
    pub iat: u64,
    /// Not before.
    pub nbf: u64,
    /// Token id.
    pub jti: String,
    /// Roles of the user (`admin`, …).
    #[serde(default)]
    pub roles: Vec<String>,
}

/// Who issues tokens for whom, and for how long.
#[derive(Debug, Clone)]
pub struct TokenConfig {
    /// `iss` of issued tokens, and the only one accepted.
    pub issuer: String,
    /// `aud` of issued tokens, and the only one accepted.
    pub audience: String,
    /// Lifetime of a token.
    pub ttl: Duration,
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            issuer: "weft-user".into(),
            audience: "weft".into(),
            ttl: Duration::from_secs(15 * 60),
        }
    }
}

/// Signs access tokens.
#[derive(Debug, Clone)]
pub struct Issuer {
    keys: Arc<SigningKeys>,
    config: TokenConfig,
}

impl Issuer {
    /// An issuer signing with `keys`.
    pub fn new(keys: Arc<SigningKeys>, config: TokenConfig) -> Self {
        Self { keys, config }
    }

    /// A token for `user_id` with `roles`; returns it with its lifetime.
    pub fn issue(&self, user_id: &str, roles: &[String]) -> Result<(String, Duration), AuthError> {
        let now = now_secs();
        let claims = Claims {
            iss: self.config.issuer.clone(),
            aud: self.config.audience.clone(),
            sub: user_id.to_owned(),
            exp: now + self.config.ttl.as_secs(),
            iat: now,
            nbf: now,
            jti: uuid::Uuid::now_v7().to_string(),
            roles: roles.to_vec(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.keys.kid().to_owned());
        let token = jsonwebtoken::encode(&header, &claims, self.keys.encoding())
            .map_err(AuthError::Sign)?;
        Ok((token, self.config.ttl))
    }

    /// The token settings.
    pub fn config(&self) -> &TokenConfig {
        &self.config
    }
}

pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
