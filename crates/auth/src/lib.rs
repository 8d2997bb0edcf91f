//! weft-auth: who is calling.
//!
//! The user service holds an Ed25519 signing key (generated on first start, kept as a
//! PKCS#8 PEM file under the data dir, or given by config), issues short-lived JWTs
//! (`EdDSA`) with issuer, audience, subject = user id and expiry, and publishes the
//! public keys as a JWKS. Every service verifies tokens with a [`Verifier`] that holds
//! those public keys, refreshed from the user service; a token that does not verify is
//! refused (`UNAUTHENTICATED`), and without keys nothing verifies: fail closed.

pub mod error;
pub mod jwks;
pub mod keys;
pub mod roles;
pub mod token;
pub mod verify;

pub use error::AuthError;
pub use jwks::{JwksArgs, keys_probe};
pub use keys::SigningKeys;
pub use roles::Role;
pub use token::{Claims, Issuer, TokenConfig};
pub use verify::{Caller, Verifier, caller, guarded, interceptor, keep_fresh};
