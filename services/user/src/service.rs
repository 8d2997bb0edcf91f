//! The gRPC face of the user service: requests are parsed into domain values at the
//! edge, work happens in one transaction with its outbox row, and every error becomes
//! a status in [`status`], nowhere else.

use std::collections::BTreeMap;
use std::sync::Arc;

use tonic::{Request, Response, Status};
use weft_auth::{Issuer, SigningKeys};
use weft_events::outbox::RelayWaker;
use weft_events::{Database, EventContext, Outbox};
use weft_proto::user::user_service_server::UserService;
use weft_proto::user::*;

use crate::domain::{self, UserError, Violations};
use crate::password::{self, LoginLimiter};
use crate::store::{self, UserRecord};

/// Version stamped on emitted events.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

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
    /// Failed-login limits.
    pub limiter: LoginLimiter,
    /// Emails that become admins at sign-up.
    pub admin_emails: Vec<String>,
    /// A hash verified for unknown accounts, so a login takes as long either way.
    pub dummy_hash: String,
}

/// The single mapping of [`UserError`] to a gRPC status.
pub fn status(e: UserError) -> Status {
    match e {
        UserError::Invalid(v) => weft_kit::status::invalid_argument(&v),
        UserError::EmailTaken => {
            Status::already_exists("a user with this email address already exists")
        }
        UserError::NotFound => Status::not_found("user not found"),
        UserError::BadCredentials => Status::unauthenticated("email or password is wrong"),
        UserError::Locked { retry_after } => {
            let mut details = tonic_types::ErrorDetails::new();
            details.set_retry_info(Some(retry_after));
            use tonic_types::StatusExt as _;
            Status::with_error_details(
                tonic::Code::ResourceExhausted,
                format!(
                    "too many failed logins for this account; try again in {} s",
                    retry_after.as_secs().max(1)
                ),
                details,
            )
        }
        UserError::Internal(err) => weft_kit::status::internal(err.as_ref()),
    }
}

fn timestamp(micros: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: i32::try_from(micros.rem_euclid(1_000_000) * 1000).unwrap_or(0),
    }
}

/// The API view of a stored user (never the hash).
pub fn to_proto(u: &UserRecord) -> User {
    User {
        user_id: u.user_id.clone(),
        email: u.email.clone(),
        name: u.name.clone(),
        phone: u.phone.clone(),
        source: u.source,
        roles: u.roles.clone(),
        metadata: u.metadata.clone().into_iter().collect(),
        create_time: Some(timestamp(u.created_at)),
        update_time: Some(timestamp(u.updated_at)),
    }
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

        let password_hash = password::hash(req.password).await?;
        let now = weft_events::db::now_micros();
        let roles = if self
            .admin_emails
            .iter()
            .any(|a| a.eq_ignore_ascii_case(&email))
        {
            vec!["admin".to_owned()]
        } else {
            Vec::new()
        };
        let user = UserRecord {
            user_id: uuid::Uuid::now_v7().to_string(),
            email,
            name,
            phone,
            source: source as i32,
            roles,
            metadata,
            password_hash,
            created_at: now,
            updated_at: now,
        };
        let event = UserSignedUp {
            metadata: Some(ctx.metadata("user", VERSION)),
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
        tx.commit().await?;
        self.relay.wake();
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
        self.limiter
            .check(&email)
            .map_err(|retry_after| UserError::Locked { retry_after })?;
        let user = store::by_email(&self.db, &email).await?;
        let hash = user
            .as_ref()
            .map_or_else(|| self.dummy_hash.clone(), |u| u.password_hash.clone());
        let ok = password::verify(req.password, hash).await?;
        let Some(user) = user.filter(|_| ok) else {
            self.limiter.failed(&email);
            return Err(UserError::BadCredentials);
        };
        self.limiter.succeeded(&email);
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
        if !caller.may_act_for(&patch.user_id) {
            return Err(UserError::NotFound);
        }
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
                        changed.push("phone");
                    }
                }
                "email" => {
                    let email = domain::parse_email(&patch.email, "user.email", &mut v);
                    if email != user.email {
                        user.email = email;
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
                    &format!("update_mask.paths[{i}]"),
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
            metadata: Some(ctx.metadata("user", VERSION)),
            user_id: user.user_id.clone(),
            changed_fields: changed.iter().map(|s| (*s).to_owned()).collect(),
            email: user.email.clone(),
            name: user.name.clone(),
            phone: user.phone.clone(),
        };
        Outbox::enqueue(&mut tx, &event)
            .await
            .map_err(anyhow::Error::from)?;
        tx.commit().await?;
        self.relay.wake();
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
        let user = self
            .sign_up(ctx, request.into_inner())
            .await
            .map_err(status)?;
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
            .map_err(status)
    }

    async fn get_user(
        &self,
        request: Request<GetUserRequest>,
    ) -> Result<Response<GetUserResponse>, Status> {
        let caller = weft_auth::caller(&request)?;
        let id = request.into_inner().user_id;
        if id.trim().is_empty() {
            return Err(status(UserError::invalid("user_id", "is required")));
        }
        if !caller.may_act_for(&id) {
            return Err(status(UserError::NotFound));
        }
        let user = store::by_id(&self.db, &id)
            .await
            .map_err(status)?
            .ok_or_else(|| status(UserError::NotFound))?;
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
        let user = self
            .update_user(ctx, &caller, request.into_inner())
            .await
            .map_err(status)?;
        Ok(Response::new(UpdateUserResponse {
            user: Some(to_proto(&user)),
        }))
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
