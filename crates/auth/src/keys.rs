//! The Ed25519 signing key of the user service and its public JWK.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{
    DecodePrivateKey as _, EncodePrivateKey as _, spki::der::pem::LineEnding,
};
use jsonwebtoken::{DecodingKey, EncodingKey};
use weft_proto::user::Jwk;

use crate::error::AuthError;

/// A signing key with its key id.
pub struct SigningKeys {
    kid: String,
    signing: SigningKey,
    encoding: EncodingKey,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKeys {
    /// Loads the PEM key at `path`, or creates one there (mode 0600) if it is missing.
    pub fn load_or_create(path: &Path) -> Result<Self, AuthError> {
        let io = |source| AuthError::KeyFile {
            path: path.to_owned(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(pem) => {
                let signing = SigningKey::from_pkcs8_pem(&pem)
                    .map_err(|_| AuthError::BadKey(path.to_owned()))?;
                Self::from_key(signing, path)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut seed = [0u8; 32];
                rand::fill(&mut seed);
                let signing = SigningKey::from_bytes(&seed);
                let pem = signing
                    .to_pkcs8_pem(LineEnding::LF)
                    .map_err(|_| AuthError::BadKey(path.to_owned()))?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                write_private(path, pem.as_bytes()).map_err(io)?;
                tracing::info!(path = %path.display(), "generated a new token signing key");
                Self::from_key(signing, path)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// A fresh key that lives only in memory (tests).
    pub fn ephemeral() -> Result<Self, AuthError> {
        let mut seed = [0u8; 32];
        rand::fill(&mut seed);
        Self::from_key(SigningKey::from_bytes(&seed), Path::new("<memory>"))
    }

    fn from_key(signing: SigningKey, path: &Path) -> Result<Self, AuthError> {
        let der = signing
            .to_pkcs8_der()
            .map_err(|_| AuthError::BadKey(PathBuf::from(path)))?;
        let public = signing.verifying_key().to_bytes();
        Ok(Self {
            kid: URL_SAFE_NO_PAD.encode(&public[..12]),
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            signing,
        })
    }

    /// The key id carried in token headers.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub(crate) fn encoding(&self) -> &EncodingKey {
        &self.encoding
    }

    /// The public key as a JWK (RFC 8037 OKP).
    pub fn jwk(&self) -> Jwk {
        Jwk {
            kty: "OKP".into(),
            kid: self.kid.clone(),
            alg: "EdDSA".into(),
            r#use: "sig".into(),
            crv: "Ed25519".into(),
            x: URL_SAFE_NO_PAD.encode(self.signing.verifying_key().to_bytes()),
            y: String::new(),
        }
    }
}

/// The verification key of a JWK, if it is an Ed25519 signing key.
pub fn decoding_key(jwk: &Jwk) -> Result<DecodingKey, AuthError> {
    let bad = |reason: &str| AuthError::BadJwk {
        kid: jwk.kid.clone(),
        reason: reason.to_owned(),
    };
    if jwk.kty != "OKP" || jwk.crv != "Ed25519" {
        return Err(bad("not an Ed25519 key"));
    }
    if !jwk.r#use.is_empty() && jwk.r#use != "sig" {
        return Err(bad("not a signing key"));
    }
    let raw = URL_SAFE_NO_PAD
        .decode(&jwk.x)
        .map_err(|_| bad("x is not base64url"))?;
    if raw.len() != 32 {
        return Err(bad("x is not 32 bytes"));
    }
    DecodingKey::from_ed_components(&jwk.x).map_err(|e| bad(&e.to_string()))
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}
