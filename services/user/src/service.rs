//! The gRPC face of the user service: requests are parsed into domain values at the
//! edge, work happens in one transaction with its outbox row, and every error becomes
//! a status through one `From` impl ([`crate::error`]), nowhere else. Contact
//! verification is in [`crate::verification`].

use std::sync::Arc;

use tonic::{Request, Response, Status};
use weft_auth::{Issuer, SigningKeys};
use weft_events::outbox::RelayWaker;
use weft_events::{Database, EventContext, Outbox};
use weft_proto::user::user_service_server::UserService;
use weft_proto::user::*;

use crate::access::{self, Action};
use crate::contact;
use crate::domain::UserError;
use crate::events;
use crate::password::Hasher;
use crate::requests::{Credentials, NewUser, UserPatch};
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

impl UserApi {
    /// Stores a new customer with its `UserSignedUp` and starts the verification of
    /// its contacts, in one transaction.
    async fn sign_up(&self, ctx: EventContext, new: NewUser) -> Result<UserRecord, UserError> {
        let password_hash = self.hasher.hash(new.password).await?;
        let now = weft_events::db::now_micros();
        // Whatever the address, a sign-up is a customer: roles come from an operator.
        let roles = vec![weft_auth::Role::Customer.as_str().to_owned()];
        let user = UserRecord {
            user_id: uuid::Uuid::now_v7().to_string(),
            email: new.email,
            name: new.name,
            phone: new.phone,
            source: new.source as i32,
            roles,
            metadata: new.metadata,
            password_hash,
            email_verified: false,
            phone_verified: false,
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.db.begin().await?;
        store::insert(&mut tx, &user).await?;
        Outbox::enqueue(&mut tx, &events::signed_up(&user, &ctx))
            .await
            .map_err(anyhow::Error::from)?;
        contact::request_unverified(&mut tx, &ctx, &user, true, true).await?;
        self.relay.commit(tx).await?;
        tracing::info!(user_id = %user.user_id, "user signed up");
        Ok(user)
    }

    /// An access token for `credentials`, within the login limit.
    async fn login(&self, credentials: Credentials) -> Result<LoginResponse, UserError> {
        let Credentials { email, password } = credentials;
        self.reserve_attempt(&email).await?;
        let user = store::by_email(&self.db, &email).await?;
        let hash = user
            .as_ref()
            .map_or_else(|| self.dummy_hash.clone(), |u| u.password_hash.clone());
        let ok = self.hasher.verify(password, hash).await?;
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

    /// Applies `patch` for `caller` with its `UserUpdated`, and starts the
    /// verification of a new email address or phone number.
    async fn update_user(
        &self,
        ctx: EventContext,
        caller: &weft_auth::Caller,
        patch: UserPatch,
    ) -> Result<UserRecord, UserError> {
        access::check(caller, Action::Change, &patch.user_id)?;
        let mut tx = self.db.begin().await?;
        let Some(mut user) = store::by_id_in(&mut tx, &patch.user_id).await? else {
            return Err(UserError::NotFound);
        };
        let mut changed = Vec::new();
        for change in patch.changes {
            if let Some(field) = change.apply(&mut user) {
                changed.push(field);
            }
        }
        if changed.is_empty() {
            return Ok(user);
        }
        user.updated_at = weft_events::db::now_micros();
        store::update(&mut tx, &user).await?;
        Outbox::enqueue(&mut tx, &events::updated(&user, &changed, &ctx))
            .await
            .map_err(anyhow::Error::from)?;
        // A new address is unverified until its owner proves it.
        let (email, phone) = (changed.contains(&"email"), changed.contains(&"phone"));
        contact::request_unverified(&mut tx, &ctx, &user, email, phone).await?;
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
        let ctx = EventContext::of_request(&request);
        let new = NewUser::try_from(request.into_inner())?;
        let user = self.sign_up(ctx, new).await?;
        Ok(Response::new(SignUpResponse {
            user: Some(to_proto(&user)),
        }))
    }

    async fn login(
        &self,
        request: Request<LoginRequest>,
    ) -> Result<Response<LoginResponse>, Status> {
        let credentials = Credentials::try_from(request.into_inner())?;
        Ok(Response::new(self.login(credentials).await?))
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
        let ctx = EventContext::of_request(&request);
        let patch = UserPatch::try_from(request.into_inner())?;
        let user = self.update_user(ctx, &caller, patch).await?;
        Ok(Response::new(UpdateUserResponse {
            user: Some(to_proto(&user)),
        }))
    }

    async fn verify_email(
        &self,
        request: Request<VerifyEmailRequest>,
    ) -> Result<Response<VerifyEmailResponse>, Status> {
        let ctx = EventContext::of_request(&request);
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
        let ctx = EventContext::of_request(&request);
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
        let ctx = EventContext::of_request(&request);
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
