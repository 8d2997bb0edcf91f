//! weft-auth: who is calling.
//!
//! The user service holds an Ed25519 signing key (generated on first start, kept as a
//! PKCS#8 PEM file under the data dir, or given by config), issues short-lived JWTs
//! (`EdDSA`) with issuer, audience, subject = user id and expiry, and publishes the
//! public keys as a JWKS. Every service verifies tokens with a [`Verifier`] that holds
//! those public keys, refreshed from the user service; a token that does not verify is
//! refused (`UNAUTHENTICATED`), and without keys nothing verifies: fail closed.

pub mod jwks;
pub mod keys;
pub mod roles;
pub mod token;
pub mod verify;

pub use jwks::{JwksArgs, keys_probe};
pub use keys::SigningKeys;
pub use roles::Role;
pub use token::{Claims, Issuer, TokenConfig};
pub use verify::{Caller, Verifier, caller, guarded, interceptor, keep_fresh};

/// Errors of token handling.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The key file could not be read or written.
    #[error("signing key file {path}: {source}")]
    KeyFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key file does not hold an Ed25519 PKCS#8 key.
    #[error("signing key file {0} does not hold an Ed25519 PKCS#8 PEM key")]
    BadKey(std::path::PathBuf),
    /// A JWK could not be used.
    #[error("unusable JWK {kid:?}: {reason}")]
    BadJwk {
        /// Its key id.
        kid: String,
        /// Why.
        reason: String,
    },
    /// Signing failed.
    #[error("cannot sign a token: {0}")]
    Sign(jsonwebtoken::errors::Error),
    /// The token was refused; the text is safe to show to the caller.
    #[error("{0}")]
    Invalid(&'static str),
}
