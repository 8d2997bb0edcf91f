//! Verifying access tokens: the [`Verifier`] holds the issuer's public keys, the
//! [`interceptor`] turns a valid `authorization: Bearer …` header into a [`Caller`]
//! in the request's extensions, and handlers ask for it with [`caller`].

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Status};
use weft_proto::user::Jwk;
use weft_proto::user::user_service_client::UserServiceClient;

use crate::error::AuthError;
use crate::keys::decoding_key;
use crate::token::{Claims, TokenConfig};

/// The authenticated caller of an RPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user id (the token's subject).
    pub user_id: String,
    /// The user's roles.
    pub roles: Vec<String>,
}

impl Caller {
    /// Whether the caller holds `role`.
    pub fn has(&self, role: crate::roles::Role) -> bool {
        self.roles.iter().any(|r| r == role.as_str())
    }

    /// Whether the caller holds the `admin` role.
    pub fn is_admin(&self) -> bool {
        self.has(crate::roles::Role::Admin)
    }

    /// Whether the caller is staff (the `staff` or the `admin` role).
    pub fn is_staff(&self) -> bool {
        self.has(crate::roles::Role::Staff) || self.is_admin()
    }

    /// Whether `user_id` is the caller.
    pub fn is(&self, user_id: &str) -> bool {
        self.user_id == user_id
    }

    /// Whether the caller may read what belongs to `user_id`: their own, or anyone's
    /// for staff.
    pub fn may_read(&self, user_id: &str) -> bool {
        self.is(user_id) || self.is_staff()
    }
}

/// Tokens remembered as verified, at most (about a megabyte).
const CACHED: usize = 4096;

/// Verifies tokens against a set of public keys.
///
/// A token that verified is remembered, by its exact text, with its claims: the
/// signature check (an Ed25519 verification, the largest cost of an authenticated
/// call) is then skipped while the same token comes back, and only its time limits
/// are checked again. The memory is forgotten whenever the keys change, so a removed
/// key stops its tokens at once; only valid tokens are remembered, so a flood of
/// forged ones cannot fill it.
#[derive(Default)]
pub struct Verifier {
    keys: RwLock<HashMap<String, DecodingKey>>,
    validation: Option<Validation>,
    verified: std::sync::Mutex<HashMap<String, Claims>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.key_count())
            .finish()
    }
}

impl Verifier {
    /// A verifier for tokens of `config`'s issuer and audience, with no keys yet.
    pub fn new(config: &TokenConfig) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "sub", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        Self {
            keys: RwLock::new(HashMap::new()),
            validation: Some(validation),
            verified: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Replaces the keys with `jwks`; keys that are not Ed25519 signing keys are skipped.
    pub fn set_keys(&self, jwks: &[Jwk]) -> usize {
        let mut fresh = HashMap::new();
        for jwk in jwks {
            match decoding_key(jwk) {
                Ok(key) => {
                    fresh.insert(jwk.kid.clone(), key);
                }
                Err(e) => tracing::warn!(error = %e, "skipping JWK"),
            }
        }
        let n = fresh.len();
        if let Ok(mut keys) = self.keys.write() {
            let same = keys.len() == fresh.len() && fresh.keys().all(|k| keys.contains_key(k));
            *keys = fresh;
            if !same && let Ok(mut verified) = self.verified.lock() {
                verified.clear();
            }
        }
        n
    }

    /// How many keys the verifier holds; zero means every token is refused.
    pub fn key_count(&self) -> usize {
        self.keys.read().map_or(0, |k| k.len())
    }

    /// Verifies `token` and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let remembered = self
            .verified
            .lock()
            .ok()
            .and_then(|v| v.get(token).cloned());
        if let Some(claims) = remembered {
            return self.still_valid(claims);
        }
        let claims = self.verify_signed(token)?;
        if let Ok(mut verified) = self.verified.lock() {
            if verified.len() >= CACHED {
                verified.clear();
            }
            verified.insert(token.to_owned(), claims.clone());
        }
        Ok(claims)
    }

    /// The time checks of a remembered token, as `jsonwebtoken` makes them.
    fn still_valid(&self, claims: Claims) -> Result<Claims, AuthError> {
        let leeway = self.validation.as_ref().map_or(0, |v| v.leeway);
        let now = jsonwebtoken::get_current_timestamp();
        if claims.exp.saturating_add(leeway) < now {
            return Err(AuthError::Invalid("access token expired"));
        }
        if claims.nbf > now.saturating_add(leeway) {
            return Err(AuthError::Invalid("access token not valid yet"));
        }
        Ok(claims)
    }

    /// The full check: header, key, signature, issuer, audience and times.
    fn verify_signed(&self, token: &str) -> Result<Claims, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::Invalid("malformed access token"))?;
        if header.alg != Algorithm::EdDSA {
            return Err(AuthError::Invalid(
                "access token uses an unsupported algorithm",
            ));
        }
        let kid = header
            .kid
            .ok_or(AuthError::Invalid("access token has no key id"))?;
        let keys = self
            .keys
            .read()
            .map_err(|_| AuthError::Invalid("token keys unavailable"))?;
        let key = keys
            .get(&kid)
            .ok_or(AuthError::Invalid("access token signed by an unknown key"))?;
        let validation = self
            .validation
            .as_ref()
            .ok_or(AuthError::Invalid("verifier not configured"))?;
        jsonwebtoken::decode::<Claims>(token, key, validation)
            .map(|data| data.claims)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                AuthError::Invalid(match e.kind() {
                    ErrorKind::ExpiredSignature => "access token expired",
                    ErrorKind::ImmatureSignature => "access token not valid yet",
                    ErrorKind::InvalidSignature => "access token signature is invalid",
                    ErrorKind::InvalidIssuer => "access token from an unknown issuer",
                    ErrorKind::InvalidAudience => "access token for another audience",
                    ErrorKind::MissingRequiredClaim(_) => "access token lacks a required claim",
                    _ => "malformed access token",
                })
            })
    }

    /// Verifies an `authorization` header value (`Bearer <token>`).
    pub fn verify_bearer(&self, header: &str) -> Result<Caller, AuthError> {
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or(AuthError::Invalid("authorization must be `Bearer <token>`"))?;
        let claims = self.verify(token.trim())?;
        Ok(Caller {
            user_id: claims.sub,
            roles: claims.roles,
        })
    }
}

/// A tonic interceptor: a request with a valid bearer token carries its [`Caller`];
/// one with an invalid token is refused with `UNAUTHENTICATED`; one without a token
/// passes through without a caller (public RPCs), and [`caller`] refuses it where a
/// caller is required.
pub fn interceptor(
    verifier: Arc<Verifier>,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |mut req: Request<()>| {
        let Some(value) = req.metadata().get("authorization") else {
            return Ok(req);
        };
        let value = value
            .to_str()
            .map_err(|_| Status::unauthenticated("authorization header is not ASCII"))?;
        let caller = verifier
            .verify_bearer(value)
            .map_err(|e| Status::unauthenticated(e.to_string()))?;
        req.extensions_mut().insert(caller);
        Ok(req)
    }
}

/// `server` behind [`interceptor`] of `verifier`: each request carries its
/// [`Caller`] when its token is valid.
pub fn guarded<S>(
    server: S,
    verifier: &Arc<Verifier>,
) -> InterceptedService<S, impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone + use<S>>
{
    InterceptedService::new(server, interceptor(verifier.clone()))
}

/// The caller of `req`, or `UNAUTHENTICATED` when it has none.
pub fn caller<T>(req: &Request<T>) -> Result<Caller, Status> {
    req.extensions().get::<Caller>().cloned().ok_or_else(|| {
        Status::unauthenticated("this call needs an access token (authorization: Bearer …)")
    })
}

/// Keeps `verifier` loaded with the user service's JWKS at `endpoint`: fetches at once,
/// retries quickly until the first success, then refreshes every `every`, until
/// `stop` resolves.
pub async fn keep_fresh(
    verifier: Arc<Verifier>,
    endpoint: String,
    every: Duration,
    stop: impl std::future::Future<Output = ()> + Send,
) {
    tokio::pin!(stop);
    loop {
        let wait = match fetch(&endpoint).await {
            Ok(keys) => {
                let n = verifier.set_keys(&keys);
                tracing::debug!(keys = n, "token keys refreshed");
                every
            }
            Err(e) => {
                tracing::warn!(%endpoint, error = %e, "cannot fetch token keys; retrying");
                if verifier.key_count() == 0 {
                    Duration::from_millis(500)
                } else {
                    every.min(Duration::from_secs(10))
                }
            }
        };
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// The keys from the first of `endpoints` (comma-separated) that answers.
async fn fetch(endpoints: &str) -> Result<Vec<Jwk>, String> {
    let mut failures = Vec::new();
    for endpoint in endpoints
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        match fetch_one(endpoint).await {
            Ok(keys) => return Ok(keys),
            Err(e) => failures.push(format!("{endpoint}: {e}")),
        }
    }
    Err(if failures.is_empty() {
        "no user service address".to_owned()
    } else {
        failures.join("; ")
    })
}

async fn fetch_one(endpoint: &str) -> Result<Vec<Jwk>, String> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let response = UserServiceClient::new(channel)
        .get_jwks(weft_proto::user::GetJwksRequest {})
        .await
        .map_err(|e| e.to_string())?;
    Ok(response.into_inner().keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKeys;
    use crate::token::Issuer;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn setup(ttl: Duration) -> (Issuer, Verifier) {
        let keys = Arc::new(SigningKeys::ephemeral().unwrap_or_else(|e| panic!("{e}")));
        let config = TokenConfig {
            ttl,
            ..TokenConfig::default()
        };
        let verifier = Verifier::new(&config);
        verifier.set_keys(&[keys.jwk()]);
        (Issuer::new(keys, config), verifier)
    }

    fn token(issuer: &Issuer, roles: &[String]) -> String {
        issuer
            .issue("user-1", roles)
            .unwrap_or_else(|e| panic!("{e}"))
            .0
    }

    #[test]
    fn a_remembered_token_is_forgotten_when_the_keys_change_and_still_expires() {
        let (issuer, verifier) = setup(Duration::from_secs(60));
        let good = token(&issuer, &[]);
        assert!(verifier.verify(&good).is_ok());
        assert!(
            verifier.verify(&good).is_ok(),
            "the second time from memory"
        );
        // The same keys again (a refresh) keep the memory; new keys drop it.
        let keys = Arc::new(SigningKeys::ephemeral().unwrap_or_else(|e| panic!("{e}")));
        verifier.set_keys(&[keys.jwk()]);
        let other = Issuer::new(
            keys,
            TokenConfig {
                ttl: Duration::from_secs(60),
                ..TokenConfig::default()
            },
        );
        assert_eq!(
            verifier.verify(&good).map_err(|e| e.to_string()),
            Err("access token signed by an unknown key".to_owned())
        );
        // A remembered token's times are checked every time.
        let mut claims = verifier
            .verify(&token(&other, &[]))
            .unwrap_or_else(|e| panic!("{e}"));
        claims.exp = jsonwebtoken::get_current_timestamp() - 31;
        assert_eq!(
            verifier
                .still_valid(claims.clone())
                .map_err(|e| e.to_string()),
            Err("access token expired".to_owned())
        );
        claims.exp += 3600;
        claims.nbf = jsonwebtoken::get_current_timestamp() + 31;
        assert_eq!(
            verifier.still_valid(claims).map_err(|e| e.to_string()),
            Err("access token not valid yet".to_owned())
        );
    }

    #[test]
    fn a_fresh_token_verifies() {
        let (issuer, verifier) = setup(Duration::from_secs(60));
        let caller = verifier
            .verify_bearer(&format!("Bearer {}", token(&issuer, &["admin".into()])))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(caller.user_id, "user-1");
        assert!(caller.is_admin());
        assert!(caller.is_staff() && caller.may_read("someone-else"));
    }

    #[test]
    fn forged_expired_and_alg_none_tokens_are_refused() {
        let (issuer, verifier) = setup(Duration::from_secs(60));
        let good = token(&issuer, &[]);
        let parts: Vec<&str> = good.split('.').collect();

        // Forged: the payload changed (admin role added), signature kept.
        let payload = URL_SAFE_NO_PAD.decode(parts[1]).unwrap_or_default();
        let forged_payload =
            String::from_utf8_lossy(&payload).replace("\"roles\":[]", "\"roles\":[\"admin\"]");
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(forged_payload),
            parts[2]
        );
        assert_eq!(
            verifier.verify(&forged).map_err(|e| e.to_string()),
            Err("access token signature is invalid".to_owned())
        );

        // alg: none, no signature.
        let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let none = format!("{none_header}.{}.", parts[1]);
        assert!(verifier.verify(&none).is_err());

        // HS256 signed with the public key as secret (the classic confusion).
        let hs_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT","kid":"x"}"#);
        assert!(
            verifier
                .verify(&format!("{hs_header}.{}.{}", parts[1], parts[2]))
                .is_err()
        );

        // Another key entirely.
        let (other, _) = setup(Duration::from_secs(60));
        assert_eq!(
            verifier
                .verify(&token(&other, &[]))
                .map_err(|e| e.to_string()),
            Err("access token signed by an unknown key".to_owned())
        );

        // Expired an hour ago (well beyond the 30 s leeway), properly signed.
        let keys = SigningKeys::ephemeral().unwrap_or_else(|e| panic!("{e}"));
        let v = Verifier::new(&TokenConfig::default());
        v.set_keys(&[keys.jwk()]);
        let now = crate::token::now_secs();
        let sign = |exp: u64, aud: &str| {
            let claims = Claims {
                iss: "weft-user".into(),
                aud: aud.into(),
                sub: "u".into(),
                exp,
                iat: now - 7200,
                nbf: now - 7200,
                jti: "j".into(),
                roles: vec![],
            };
            let mut header = jsonwebtoken::Header::new(Algorithm::EdDSA);
            header.kid = Some(keys.kid().to_owned());
            jsonwebtoken::encode(&header, &claims, keys.encoding())
                .unwrap_or_else(|e| panic!("{e}"))
        };
        assert_eq!(
            v.verify(&sign(now - 3600, "weft"))
                .map_err(|e| e.to_string()),
            Err("access token expired".to_owned())
        );
        assert_eq!(
            v.verify(&sign(now + 3600, "someone-else"))
                .map_err(|e| e.to_string()),
            Err("access token for another audience".to_owned())
        );
        assert!(v.verify(&sign(now + 3600, "weft")).is_ok());

        // Garbage and wrong scheme.
        assert!(verifier.verify("not.a.token").is_err());
        assert!(verifier.verify_bearer(&format!("Basic {good}")).is_err());
    }

    #[test]
    fn without_keys_nothing_verifies() {
        let (issuer, _) = setup(Duration::from_secs(60));
        let empty = Verifier::new(&TokenConfig::default());
        assert!(empty.verify(&token(&issuer, &[])).is_err());
    }

    #[test]
    fn keys_persist_across_restarts() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("keys/token.pem");
        let a = SigningKeys::load_or_create(&path).unwrap_or_else(|e| panic!("{e}"));
        let b = SigningKeys::load_or_create(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.jwk(), b.jwk());
        std::fs::write(&path, "not a key").unwrap_or_else(|e| panic!("{e}"));
        assert!(SigningKeys::load_or_create(&path).is_err());
    }
}
