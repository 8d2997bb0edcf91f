//! The gRPC face of the user service: requests are parsed into domain values at the
//! edge, work happens in one transaction with its outbox row, and every error becomes
//! a status through one `From` impl ([`crate::error`]), nowhere else. Contact
//! verification is in [`crate::verification`].

use std::collections::BTreeMap;
use std::sync::Arc;

use tonic::{Request, Response, Status};
use weft_auth::{Issuer, SigningKeys};
use weft_events::outbox::RelayWaker;
use weft_events::{Database, EventContext, Outbox};
use weft_proto::user::user_service_server::UserService;
use weft_proto::user::*;

use crate::IDENTITY;
use crate::access::{self, Action};
use crate::contact;
use crate::domain::{self, UserError, Violations};
use crate::password::Hasher;
use crate::store::{self, UserRecord};
use crate::views::to_proto;

/// The user service's handlers.
pub struct UserApi {
    /// The service database.
    pub db: Database,
    /// Wakes the outbox relay after a commit.
    pub relay: RelayWaker,
    /// Signs access tokens.
    pub issuer: Issuer,
    /// The signing key, for the JWKS.
    pub keys: Arc<SigningKeys>,
    /// The password hashing pool.
    pub hasher: Hasher,
    /// Login attempts per account before it is locked, and for how long.
    pub login: LoginPolicy,
    /// A hash verified for unknown accounts, so a login takes as long either way.
    pub dummy_hash: String,
}

/// How many login attempts an account gets, and for how long it is locked after.
#[derive(Debug, Clone, Copy)]
pub struct LoginPolicy {
    /// Attempts per window.
    pub max_attempts: i64,
    /// The window, and the lock.
    pub window: std::time::Duration,
}

fn context<T>(req: &Request<T>) -> EventContext {
    EventContext::from_correlation_header(
        req.metadata()
            .get("x-correlation-id")
            .and_then(|v| v.to_str().ok()),
    )
}

impl UserApi {
    async fn sign_up(
        &self,
        ctx: EventContext,
        req: SignUpRequest,
    ) -> Result<UserRecord, UserError> {
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
        v.finish(())?;

        let password_hash = self.hasher.hash(req.password).await?;
        let now = weft_events::db::now_micros();
        // Whatever the address, a sign-up is a customer: roles come from an operator.
        let roles = vec![weft_auth::Role::Customer.as_str().to_owned()];
        let user = UserRecord {
            user_id: uuid::Uuid::now_v7().to_string(),
            email,
            name,
            phone,
            source: source as i32,
            roles,
            metadata,
            password_hash,
            email_verified: false,
            phone_verified: false,
            created_at: now,
            updated_at: now,
        };
        let event = UserSignedUp {
            metadata: Some(ctx.metadata(IDENTITY.name, IDENTITY.version)),
            user_id: user.user_id.clone(),
            email: user.email.clone(),
            name: user.name.clone(),
            source: user.source,
            phone: user.phone.clone(),
            attributes: user.metadata.clone().into_iter().collect(),
        };
        let mut tx = self.db.begin().await?;
        store::insert(&mut tx, &user).await?;
        Outbox::enqueue(&mut tx, &event)
            .await
            .map_err(anyhow::Error::from)?;
        contact::request(
            &mut tx,
            &ctx,
            &user.user_id,
            ContactKind::Email,
            &user.email,
            now,
        )
        .await?;
        if !user.phone.is_empty() {
            contact::request(
                &mut tx,
                &ctx,
                &user.user_id,
                ContactKind::Phone,
                &user.phone,
                now,
            )
            .await?;
        }
        self.relay.commit(tx).await?;
        tracing::info!(user_id = %user.user_id, "user signed up");
        Ok(user)
    }

    async fn login(&self, req: LoginRequest) -> Result<LoginResponse, UserError> {
        let mut v = Violations::default();
        let email = domain::parse_email(&req.email, "email", &mut v);
        if req.password.is_empty() {
            v.add("password", "is required");
        } else if req.password.len() > 1024 {
            v.add("password", "is too long");
        }
        v.finish(())?;
        self.reserve_attempt(&email).await?;
        let user = store::by_email(&self.db, &email).await?;
        let hash = user
            .as_ref()
            .map_or_else(|| self.dummy_hash.clone(), |u| u.password_hash.clone());
        let ok = self.hasher.verify(req.password, hash).await?;
        let Some(user) = user.filter(|_| ok) else {
            return Err(UserError::BadCredentials);
        };
        sqlx::query("DELETE FROM login_attempts WHERE email = $1")
            .bind(email.clone())
            .execute(self.db.pool())
            .await?;
        let (token, ttl) = self
            .issuer
            .issue(&user.user_id, &user.roles)
            .map_err(anyhow::Error::from)?;
        Ok(LoginResponse {
            access_token: token,
            token_type: "Bearer".into(),
            expires_in: i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
            user_id: user.user_id,
        })
    }

    /// Counts a login attempt for `email` before its password is checked, so that
    /// parallel guesses cannot pass the limit; `Locked` once the window's attempts are
    /// used up. A success clears the count.
    async fn reserve_attempt(&self, email: &str) -> Result<(), UserError> {
        let now = weft_events::db::now_micros();
        let window = i64::try_from(self.login.window.as_micros()).unwrap_or(i64::MAX);
        let cutoff = now.saturating_sub(window);
        let mut tx = self.db.begin().await?;
        let row = sqlx::query(
            "INSERT INTO login_attempts (email, attempts, window_start) VALUES ($1, 1, $2) \
             ON CONFLICT (email) DO UPDATE SET \
             attempts = CASE WHEN login_attempts.window_start < $3 THEN 1 ELSE login_attempts.attempts + 1 END, \
             window_start = CASE WHEN login_attempts.window_start < $3 THEN excluded.window_start ELSE login_attempts.window_start END \
             RETURNING attempts, window_start",
        )
        .bind(email.to_owned())
        .bind(now)
        .bind(cutoff)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        use sqlx::Row as _;
        let attempts: i64 = row.try_get(0)?;
        let started: i64 = row.try_get(1)?;
        if attempts > self.login.max_attempts {
            let left = (started + window - now).max(0);
            return Err(UserError::Locked {
                retry_after: std::time::Duration::from_micros(left as u64),
            });
        }
        Ok(())
    }

    async fn update_user(
        &self,
        ctx: EventContext,
        caller: &weft_auth::Caller,
        req: UpdateUserRequest,
    ) -> Result<UserRecord, UserError> {
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
        access::check(caller, Action::Change, &patch.user_id)?;
        let mut tx = self.db.begin().await?;
        let Some(mut user) = store::by_id_in(&mut tx, &patch.user_id).await? else {
            return Err(UserError::NotFound);
        };
        let mut changed = Vec::new();
        for (i, path) in paths.iter().enumerate() {
            match path.as_str() {
                "name" => {
                    let name = domain::parse_name(&patch.name, "user.name", &mut v);
                    if name != user.name {
                        user.name = name;
                        changed.push("name");
                    }
                }
                "phone" => {
                    let phone = domain::parse_phone(&patch.phone, "user.phone", &mut v);
                    if phone != user.phone {
                        user.phone = phone;
                        user.phone_verified = false;
                        changed.push("phone");
                    }
                }
                "email" => {
                    let email = domain::parse_email(&patch.email, "user.email", &mut v);
                    if email != user.email {
                        user.email = email;
                        user.email_verified = false;
                        changed.push("email");
                    }
                }
                "metadata" => {
                    let metadata: BTreeMap<String, String> =
                        patch.metadata.clone().into_iter().collect();
                    domain::check_metadata(&metadata, "user.metadata", &mut v);
                    if metadata != user.metadata {
                        user.metadata = metadata;
                        changed.push("metadata");
                    }
                }
                other => v.add(
                    format!("update_mask.paths[{i}]"),
                    format!("{other:?} cannot be changed; use name, phone, email or metadata"),
                ),
            }
        }
        v.finish(())?;
        if changed.is_empty() {
            return Ok(user);
        }
        user.updated_at = weft_events::db::now_micros();
        store::update(&mut tx, &user).await?;
        let event = UserUpdated {
            metadata: Some(ctx.metadata(IDENTITY.name, IDENTITY.version)),
            user_id: user.user_id.clone(),
            changed_fields: changed.iter().map(|s| (*s).to_owned()).collect(),
            email: user.email.clone(),
            name: user.name.clone(),
            phone: user.phone.clone(),
        };
        Outbox::enqueue(&mut tx, &event)
            .await
            .map_err(anyhow::Error::from)?;
        // A new address is unverified until its owner proves it.
        if changed.contains(&"email") {
            contact::request(
                &mut tx,
                &ctx,
                &user.user_id,
                ContactKind::Email,
                &user.email,
                user.updated_at,
            )
            .await?;
        }
        if changed.contains(&"phone") && !user.phone.is_empty() {
            contact::request(
                &mut tx,
                &ctx,
                &user.user_id,
                ContactKind::Phone,
                &user.phone,
                user.updated_at,
            )
            .await?;
        }
        self.relay.commit(tx).await?;
        Ok(user)
    }
}

#[tonic::async_trait]
impl UserService for UserApi {
    async fn sign_up(
        &self,
        request: Request<SignUpRequest>,
    ) -> Result<Response<SignUpResponse>, Status> {
        let ctx = context(&request);
        let user = self.sign_up(ctx, request.into_inner()).await?;
        Ok(Response::new(SignUpResponse {
            user: Some(to_proto(&user)),
        }))
    }

    async fn login(
        &self,
        request: Request<LoginRequest>,
    ) -> Result<Response<LoginResponse>, Status> {
        self.login(request.into_inner())
            .await
            .map(Response::new)
            .map_err(Status::from)
    }

    async fn get_user(
        &self,
        request: Request<GetUserRequest>,
    ) -> Result<Response<GetUserResponse>, Status> {
        let caller = weft_auth::caller(&request)?;
        let id = request.into_inner().user_id;
        if let Some(problem) = weft_kit::text::Text::ID.problem(&id) {
            return Err(Status::from(UserError::invalid("user_id", &problem)));
        }
        access::check(&caller, Action::Read, &id)?;
        let user = store::by_id(&self.db, &id)
            .await?
            .ok_or_else(|| Status::from(UserError::NotFound))?;
        Ok(Response::new(GetUserResponse {
            user: Some(to_proto(&user)),
        }))
    }

    async fn update_user(
        &self,
        request: Request<UpdateUserRequest>,
    ) -> Result<Response<UpdateUserResponse>, Status> {
        let caller = weft_auth::caller(&request)?;
        let ctx = context(&request);
        let user = self.update_user(ctx, &caller, request.into_inner()).await?;
        Ok(Response::new(UpdateUserResponse {
            user: Some(to_proto(&user)),
        }))
    }

    async fn verify_email(
        &self,
        request: Request<VerifyEmailRequest>,
    ) -> Result<Response<VerifyEmailResponse>, Status> {
        let ctx = context(&request);
        let user = self.verify_email(ctx, &request.into_inner().token).await?;
        Ok(Response::new(VerifyEmailResponse {
            user: Some(to_proto(&user)),
        }))
    }

    async fn verify_phone(
        &self,
        request: Request<VerifyPhoneRequest>,
    ) -> Result<Response<VerifyPhoneResponse>, Status> {
        let caller = weft_auth::caller(&request)?;
        let ctx = context(&request);
        let user = self
            .verify_phone(ctx, &caller, request.into_inner())
            .await?;
        Ok(Response::new(VerifyPhoneResponse {
            user: Some(to_proto(&user)),
        }))
    }

    async fn resend_verification(
        &self,
        request: Request<ResendVerificationRequest>,
    ) -> Result<Response<ResendVerificationResponse>, Status> {
        let caller = weft_auth::caller(&request)?;
        let ctx = context(&request);
        self.resend_verification(ctx, &caller, request.into_inner())
            .await?;
        Ok(Response::new(ResendVerificationResponse {}))
    }

    async fn get_jwks(
        &self,
        _: Request<GetJwksRequest>,
    ) -> Result<Response<GetJwksResponse>, Status> {
        Ok(Response::new(GetJwksResponse {
            keys: vec![self.keys.jwk()],
        }))
    }
}
