//! The user service through a real socket: sign-up, login, tokens, reads, updates,
//! events on the broker, and bad input of every kind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use prost::Message as _;
use rdkafka::Message as _;
use support::*;
use tonic::Code;
use weft_proto::user::*;
use weft_testkit::Caller::*;
use weft_testkit::{header, on_each_db};

on_each_db!(sign_up_login_read_update);

async fn sign_up_login_read_update(db: Db) {
    let (app, mut client) = spawn_app_and_client(db).await;

    // Sign up with the caller's correlation id.
    let mut req = tonic::Request::new(signup_request("Ada@Example.com"));
    req.metadata_mut()
        .insert("x-correlation-id", "corr-123".parse().unwrap());
    let user = client
        .sign_up(req)
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(user.email, "ada@example.com", "emails are normalised");
    assert_eq!(user.source, SignupSource::Web as i32);
    assert!(user.create_time.is_some());

    // One UserSignedUp on user-events, keyed by the user, correlation kept.
    let records = app.events_of("UserSignedUp", 1);
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(header(r, "ce_type"), Some("weft.user.v1.UserSignedUp"));
    assert_eq!(header(r, "ce_correlationid"), Some("corr-123"));
    assert_eq!(r.key(), Some(user.user_id.as_bytes()));
    let event = UserSignedUp::decode(r.payload().unwrap()).unwrap();
    assert_eq!(event.email, "ada@example.com");
    assert_eq!(
        event.attributes.get("campaign").map(String::as_str),
        Some("launch")
    );
    assert!(
        !format!("{event:?}").contains("analytical"),
        "no password in the event"
    );

    // Log in; the token verifies against the published JWKS.
    let login = client
        .login(login_request("ADA@example.com", "analytical engine 1843"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(login.token_type, "Bearer");
    assert_eq!(login.user_id, user.user_id);
    assert!(login.expires_in > 0 && login.expires_in <= 15 * 60);
    let jwks = client
        .get_jwks(GetJwksRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(jwks.keys.len(), 1);
    assert_eq!(
        (jwks.keys[0].kty.as_str(), jwks.keys[0].crv.as_str()),
        ("OKP", "Ed25519")
    );
    let verifier = weft_auth::Verifier::new(&weft_auth::TokenConfig::default());
    verifier.set_keys(&jwks.keys);
    assert_eq!(
        verifier.verify(&login.access_token).unwrap().sub,
        user.user_id
    );

    // Read yourself; update your name with a field mask → UserUpdated.
    let as_ada = Auth::bearer(&login.access_token);
    let me = Rpc::get_user(&user.user_id)
        .send(&mut client, as_ada)
        .await
        .unwrap();
    assert_eq!(me.name, "Ada Lovelace");
    let renamed = User {
        user_id: user.user_id.clone(),
        name: "Ada King".into(),
        phone: "+999".into(), // not in the mask: ignored
        ..Default::default()
    };
    let rename = update_request(renamed, &["name"]);
    let updated = Rpc::UpdateUser(rename)
        .send(&mut client, as_ada)
        .await
        .unwrap();
    assert_eq!(updated.name, "Ada King");
    assert_eq!(updated.phone, "+14155550123");
    let records = app.events_of("UserUpdated", 1);
    let upd = UserUpdated::decode(records[0].payload().unwrap()).unwrap();
    assert_eq!(upd.changed_fields, ["name"]);
    assert_eq!(upd.name, "Ada King");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_email_is_already_exists_and_leaves_no_trace() {
    let (app, mut client) = spawn_app_and_client(Db::Sqlite).await;
    sign_up(&mut client, "dup@example.com").await;
    let err = client
        .sign_up(signup_request("DUP@example.com"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert_eq!(user_count(&app.database_url).await, 1);
    // A sign-up writes three events (UserSignedUp and the email's and phone's
    // verifications); the failed one wrote none.
    assert_eq!(outbox_count(&app.database_url).await, 3);
    let other = sign_up(&mut client, "other@example.com").await;
    assert_eq!(outbox_count(&app.database_url).await, 6);
    let records = app.events_of("UserSignedUp", 2);
    assert_eq!(records.len(), 2);
    assert!(
        records
            .iter()
            .any(|r| r.key() == Some(other.user_id.as_bytes()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sign_ups_are_invalid_argument_naming_the_fields() {
    let (app, mut client) = spawn_app_and_client(Db::Sqlite).await;

    let err = client.sign_up(SignUpRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let mut fields = violations(&err);
    fields.sort();
    assert_eq!(fields, ["email", "name", "password", "source"]);

    let cases: Vec<(&str, SignUpRequest)> = vec![
        (
            "email",
            SignUpRequest {
                email: "not-an-email".into(),
                ..signup_request("x@example.com")
            },
        ),
        (
            "email",
            SignUpRequest {
                email: format!("{}@example.com", "a".repeat(300)),
                ..signup_request("x@example.com")
            },
        ),
        (
            "password",
            SignUpRequest {
                password: "short1".into(),
                ..signup_request("x@example.com")
            },
        ),
        (
            "password",
            SignUpRequest {
                password: "abcdefghijklmnop".into(),
                ..signup_request("x@example.com")
            },
        ),
        (
            "name",
            SignUpRequest {
                name: "x".repeat(1024 * 1024),
                ..signup_request("x@example.com")
            },
        ),
        (
            "name",
            SignUpRequest {
                name: "bad\u{0}name".into(),
                ..signup_request("x@example.com")
            },
        ),
        (
            "phone",
            SignUpRequest {
                phone: "555-1234".into(),
                ..signup_request("x@example.com")
            },
        ),
        (
            "source",
            SignUpRequest {
                source: 99,
                ..signup_request("x@example.com")
            },
        ),
        (
            "metadata",
            SignUpRequest {
                metadata: (0..50).map(|i| (format!("k{i}"), "v".into())).collect(),
                ..signup_request("x@example.com")
            },
        ),
    ];
    for (field, req) in cases {
        let err = client.sign_up(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert_eq!(violations(&err), [field], "{err:?}");
        assert!(
            !err.message().contains("SELECT") && !err.message().contains('/'),
            "{}",
            err.message()
        );
    }
    assert_eq!(
        user_count(&app.database_url).await,
        0,
        "no bad sign-up left a user"
    );
    assert_eq!(
        outbox_count(&app.database_url).await,
        0,
        "no bad sign-up left an event"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_fail_and_lock_the_account() {
    let (_app, mut client) = spawn_app_and_client(Db::Sqlite).await;
    sign_up(&mut client, "lock@example.com").await;
    let login = |password: &str| login_request("lock@example.com", password);
    let unknown = client
        .login(login_request("nobody@example.com", "whatever 123"))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::Unauthenticated);
    for _ in 0..3 {
        let err = client.login(login("wrong password 1")).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
        assert_eq!(err.message(), "email or password is wrong");
    }
    let locked = client
        .login(login("analytical engine 1843"))
        .await
        .unwrap_err();
    assert_eq!(locked.code(), Code::ResourceExhausted, "{locked:?}");
    use tonic_types::StatusExt as _;
    assert!(locked.get_error_details().retry_info().is_some());
    let empty = client.login(LoginRequest::default()).await.unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_gate_reads_and_updates() {
    let (app, mut client) = spawn_app_and_client(Db::Sqlite).await;
    let (ada, ada_token) = user_with_token(&mut client, "ada@example.com").await;
    let (bob, _) = user_with_token(&mut client, "bob@example.com").await;
    // Signing up with the address that once made an admin gives a customer.
    let (_, claim_token) = user_with_token(&mut client, "admin@weft.local").await;
    Callers::new()
        .with(Customer, claim_token)
        .expect_codes(
            [(Customer, Rpc::get_user(&bob), Code::NotFound)],
            async |auth, rpc| rpc.send(&mut client, auth).await,
        )
        .await;
    let (_, _) = user_with_token(&mut client, "root@example.com").await;
    app.grant("root@example.com", weft_auth::Role::Admin).await;
    let root_token = login(&mut client, "root@example.com").await;

    // Forged, alg:none, garbage and another issuer's tokens.
    let parts: Vec<&str> = ada_token.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        &parts[2][..parts[2].len() - 4]
    );
    let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts[1]);
    let other_keys = std::sync::Arc::new(weft_auth::SigningKeys::ephemeral().unwrap());
    let foreign = weft_auth::Issuer::new(other_keys, weft_auth::TokenConfig::default())
        .issue(&ada, &["admin".into()])
        .unwrap()
        .0;
    let callers = Callers::new()
        .with(Customer, &ada_token)
        .with(Admin, root_token)
        .with(BadToken("forged"), forged)
        .with(BadToken("alg none"), none)
        .with(BadToken("garbage"), "garbage")
        .with(ForeignKey, foreign);
    let update = |id: &str, paths: Vec<&str>| {
        let user = User {
            user_id: id.into(),
            name: "New".into(),
            ..Default::default()
        };
        update_request(user, &paths)
    };
    let get = Rpc::get_user;
    let [bob_seen] = callers
        .expect_codes(
            [
                // No token.
                (Anonymous, get(&ada), Code::Unauthenticated),
                // Another user's id: not found, not forbidden (no existence leak).
                (Customer, get(&bob), Code::NotFound),
                // An admin may read anyone.
                (Admin, get(&bob), Code::Ok),
                (BadToken("forged"), get(&ada), Code::Unauthenticated),
                (BadToken("alg none"), get(&ada), Code::Unauthenticated),
                (BadToken("garbage"), get(&ada), Code::Unauthenticated),
                (ForeignKey, get(&ada), Code::Unauthenticated),
                // Updating someone else.
                (
                    Customer,
                    Rpc::UpdateUser(update(&bob, vec!["name"])),
                    Code::NotFound,
                ),
            ],
            async |auth, rpc| rpc.send(&mut client, auth).await,
        )
        .await
        .try_into()
        .unwrap();
    assert_eq!(bob_seen.email, "bob@example.com");

    // An unknown mask path, an empty mask, no user.
    let as_ada = callers.auth(Customer);
    let unknown_path = Rpc::UpdateUser(update(&ada, vec!["password_hash"]));
    let err = expect_code(
        unknown_path.send(&mut client, as_ada).await,
        Code::InvalidArgument,
    );
    assert_eq!(violations(&err), ["update_mask.paths[0]"]);
    let no_user = UpdateUserRequest {
        user: None,
        update_mask: None,
    };
    for (request, field) in [(update(&ada, vec![]), "update_mask"), (no_user, "user")] {
        expect_fields(
            Rpc::UpdateUser(request).send(&mut client, as_ada).await,
            &[field],
        );
    }
    // Taking another user's email is ALREADY_EXISTS.
    let mut steal = update(&ada, vec!["email"]);
    if let Some(u) = steal.user.as_mut() {
        u.email = "bob@example.com".into();
    }
    expect_code(
        Rpc::UpdateUser(steal).send(&mut client, as_ada).await,
        Code::AlreadyExists,
    );
}
