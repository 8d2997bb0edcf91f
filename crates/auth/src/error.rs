//! What goes wrong with signing keys and tokens.

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
