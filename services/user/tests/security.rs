//! The user service's security rules through a real socket: no address makes an
//! admin, roles come from the operator's path (audited, evented, effective at the next
//! token), contacts are proven with one-time secrets, a flood of sign-ups never runs
//! more hashes than the pool, and the login limit survives restarts and parallel
//! guesses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use prost::Message as _;
use rdkafka::Message as _;
use support::*;
use tonic::Code;
use weft_auth::Role;
use weft_proto::user::*;

fn roles_in(token: &str) -> Vec<String> {
    // The claims are the token's middle part; the tests read them, the services verify.
    use base64::Engine as _;
    let claims = token.split('.').nth(1).unwrap();
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims)
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    v["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_come_only_from_the_operator_audited_and_at_the_next_token() {
    let (app, mut client) = spawn_app_and_client(Db::Sqlite).await;
    let (bob, _) = user_with_token(&mut client, "bob@example.com").await;

    // The old default admin address, and any other, signs up as a customer.
    for email in ["admin@weft.local", "root@example.com"] {
        let (_, token) = user_with_token(&mut client, email).await;
        assert_eq!(roles_in(&token), ["customer"], "{email}");
        let err = Rpc::get_user(&bob)
            .send(&mut client, Auth::bearer(&token))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{email}: {err:?}");
    }

    // The operator grants staff: one audit row, one UserRolesChanged.
    let ops = sign_up(&mut client, "ops@example.com").await.user_id;
    let old_token = login(&mut client, "ops@example.com").await;
    assert_eq!(
        app.grant("ops@example.com", Role::Staff).await,
        ["customer", "staff"]
    );
    // Granting again changes nothing and writes nothing.
    app.grant("OPS@example.com", Role::Staff).await;
    let audit = weft_user::admin::audit(&app.db().await, 10).await.unwrap();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(
        (
            audit[0].user_id.as_str(),
            audit[0].role.as_str(),
            audit[0].action.as_str(),
            audit[0].actor.as_str()
        ),
        (ops.as_str(), "staff", "grant", "operator@test")
    );
    let events = app.events_of("UserRolesChanged", 1);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].key(), Some(ops.as_bytes()));
    let event = UserRolesChanged::decode(events[0].payload().unwrap()).unwrap();
    assert_eq!(event.roles, ["customer", "staff"]);
    assert_eq!(event.granted, ["staff"]);
    assert_eq!(event.actor, "operator@test");

    // The token from before the grant still carries the old roles; the next one the new.
    let before_grant = Rpc::get_user(&bob).send(&mut client, Auth::bearer(&old_token));
    expect_code(before_grant.await, Code::NotFound);
    let staff_token = login(&mut client, "ops@example.com").await;
    assert_eq!(roles_in(&staff_token), ["customer", "staff"]);
    let seen = Rpc::get_user(&bob)
        .send(&mut client, Auth::bearer(&staff_token))
        .await
        .unwrap();
    assert_eq!(seen.email, "bob@example.com");
    // Staff read but do not change other users.
    let robert = User {
        user_id: bob.clone(),
        name: "Robert".into(),
        ..Default::default()
    };
    let err = client
        .update_user(with_token(update_request(robert, &["name"]), &staff_token))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    // Roles belong to the user: moving to another address frees nothing.
    let moved = User {
        user_id: ops.clone(),
        email: "ops-new@example.com".into(),
        ..Default::default()
    };
    let move_email = update_request(moved, &["email"]);
    client
        .update_user(with_token(move_email, &staff_token))
        .await
        .unwrap();
    let (_, squatter) = user_with_token(&mut client, "ops@example.com").await;
    assert_eq!(roles_in(&squatter), ["customer"]);
    assert_eq!(
        roles_in(&login(&mut client, "ops-new@example.com").await),
        ["customer", "staff"]
    );

    // Revoking is audited too; customer cannot be revoked; strangers are refused.
    let db = app.db().await;
    let left = weft_user::admin::change(
        &db,
        "ops-new@example.com",
        Role::Staff,
        weft_user::admin::Change::Revoke,
        "operator@test",
    )
    .await
    .unwrap();
    assert_eq!(left, ["customer"]);
    let audit = weft_user::admin::audit(&db, 10).await.unwrap();
    assert_eq!(audit[0].action, "revoke");
    assert_eq!(audit.len(), 2);
    for (email, role) in [
        ("ops-new@example.com", Role::Customer),
        ("nobody@example.com", Role::Staff),
    ] {
        assert!(
            weft_user::admin::change(
                &db,
                email,
                role,
                weft_user::admin::Change::Revoke,
                "operator@test"
            )
            .await
            .is_err(),
            "{email} {role}"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_are_verified_with_one_time_secrets() {
    let (app, mut client) = spawn_app_and_client(Db::Sqlite).await;
    let (ada, ada_token) = user_with_token(&mut client, "ada@example.com").await;
    let (bob_id, bob_token) = user_with_token(&mut client, "bob@example.com").await;
    let me = || async {
        let mut client = app.client().await;
        let read = Rpc::get_user(&ada).send(&mut client, Auth::bearer(&ada_token));
        read.await.unwrap()
    };
    let fresh = me().await;
    assert!(!fresh.email_verified && !fresh.phone_verified);

    // Bad tokens: empty, garbage, oversize, control characters.
    for token in ["", "not-a-token", &"x".repeat(10_000), "abc\u{0}def"] {
        let err = client
            .verify_email(VerifyEmailRequest {
                token: token.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{token:?}: {err:?}");
        assert_eq!(violations(&err), ["token"]);
    }
    // The emailed token verifies, once, without a login.
    let token = app.secrets_for(&ada, "ada@example.com", 1).pop().unwrap();
    assert!(token.len() >= 40, "long random token");
    let verified = client
        .verify_email(VerifyEmailRequest {
            token: token.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert!(verified.email_verified);
    let again = client
        .verify_email(VerifyEmailRequest {
            token: token.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::InvalidArgument);
    let events = app.events_of("ContactVerified", 1);
    let event = ContactVerified::decode(events[0].payload().unwrap()).unwrap();
    assert_eq!(
        (event.kind, event.address.as_str()),
        (ContactKind::Email as i32, "ada@example.com")
    );

    // The phone: the code by text message, entered by the logged-in owner. The
    // database holds hashes only, never a token or code.
    let ada_code = app.secrets_for(&ada, "+14155550123", 1).pop().unwrap();
    {
        use sqlx::Row as _;
        let db = app.db().await;
        let rows = sqlx::query("SELECT secret_hash FROM contact_verifications")
            .fetch_all(db.pool())
            .await
            .unwrap();
        assert!(!rows.is_empty());
        for r in rows {
            let hash: String = r.get(0);
            assert_eq!(hash.len(), 64, "a SHA-256 in hex");
            assert!(hash != ada_code && hash != token);
        }
    }
    let verify = |user: &str, code: &str| VerifyPhoneRequest {
        user_id: user.into(),
        code: code.into(),
    };
    // Another user cannot try Ada's code.
    let err = client
        .verify_phone(with_token(verify(&ada, &ada_code), &bob_token))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    for bad in ["", "12345", "abcdef", "1234567", "12\u{0}456"] {
        let err = client
            .verify_phone(with_token(verify(&ada, bad), &ada_token))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad:?}");
    }
    let wrong = if ada_code == "000000" {
        "000001"
    } else {
        "000000"
    };
    let err = client
        .verify_phone(with_token(verify(&ada, wrong), &ada_token))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("tries left") || !violations(&err).is_empty());
    let user = client
        .verify_phone(with_token(verify(&ada, &ada_code), &ada_token))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert!(user.phone_verified && user.email_verified);

    // Asking again: refused once verified, and at most once a minute.
    let resend = |kind: ContactKind| ResendVerificationRequest {
        user_id: ada.clone(),
        kind: kind as i32,
    };
    let err = client
        .resend_verification(with_token(resend(ContactKind::Email), &ada_token))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let err = client
        .resend_verification(with_token(resend(ContactKind::Unspecified), &ada_token))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = client
        .resend_verification(with_token(
            ResendVerificationRequest {
                user_id: bob_id,
                kind: ContactKind::Email as i32,
            },
            &bob_token,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::ResourceExhausted,
        "within a minute of sign-up"
    );

    // A changed email is unverified again, with a new token to the new address.
    let new_email = User {
        user_id: ada.clone(),
        email: "ada@newmail.example".into(),
        ..Default::default()
    };
    client
        .update_user(with_token(
            update_request(new_email, &["email"]),
            &ada_token,
        ))
        .await
        .unwrap();
    assert!(!me().await.email_verified);
    assert_eq!(app.secrets_for(&ada, "ada@newmail.example", 1).len(), 1);
    app.stop().await;
}

/// The value of the unlabelled metric `name` in Prometheus text; 0 when it is absent.
fn metric(text: &str, name: &str) -> f64 {
    weft_testkit::metric(text, name).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_up_flood_never_runs_more_hashes_than_the_pool() {
    let app = spawn_app_with(Db::Sqlite, &["--hash-workers", "2", "--hash-queue", "4"]).await;
    let client = app.client().await;
    let calls: Vec<_> = (0..64)
        .map(|i| {
            let mut c = client.clone();
            tokio::spawn(async move {
                let mut req = tonic::Request::new(signup_request(&format!("flood{i}@example.com")));
                req.set_timeout(std::time::Duration::from_millis(if i % 2 == 0 {
                    50
                } else {
                    30_000
                }));
                c.sign_up(req).await.map(|_| ()).map_err(|e| e.code())
            })
        })
        .collect();
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for c in calls {
        let code = match c.await.unwrap() {
            Ok(()) => "ok".to_owned(),
            Err(code) => format!("{code:?}"),
        };
        *outcomes.entry(code).or_default() += 1;
    }
    // Each call was served, refused at once, or ran out of its own deadline.
    for code in outcomes.keys() {
        assert!(
            ["ok", "ResourceExhausted", "DeadlineExceeded", "Cancelled"].contains(&code.as_str()),
            "{outcomes:?}"
        );
    }
    assert!(
        outcomes.get("ok").copied().unwrap_or(0) >= 1,
        "{outcomes:?}"
    );
    assert!(
        outcomes.get("ResourceExhausted").copied().unwrap_or(0) >= 1,
        "a full queue refuses: {outcomes:?}"
    );
    // Once the last hashes (of callers that gave up) have finished, read the pool's
    // own high-water mark.
    let text = weft_testkit::eventually(
        "no hash running",
        std::time::Duration::from_secs(30),
        || async {
            let text = app.metrics().await;
            (metric(&text, "password_hashes_running") == 0.0).then_some(text)
        },
    )
    .await;
    let peak = metric(&text, "password_hashes_running_max");
    assert!((1.0..=2.0).contains(&peak), "peak {peak}\n{text}");
    assert!(metric(&text, "password_hashes_refused_total") >= 1.0);
    // Users stored are exactly the sign-ups answered OK or finished after their
    // deadline: never more than were hashed.
    let stored = user_count(&app.database_url).await;
    assert!(
        stored >= outcomes.get("ok").copied().unwrap_or(0) as i64 && stored <= 64,
        "{stored} {outcomes:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_limit_holds_against_parallel_guesses_and_restarts() {
    let (app, mut client) = spawn_app_and_client(Db::Sqlite).await;
    sign_up(&mut client, "target@example.com").await;
    // Twelve guesses at once against a limit of three: at most three are checked.
    let guesses: Vec<_> = (0..12)
        .map(|i| {
            let mut c = client.clone();
            tokio::spawn(async move {
                c.login(login_request(
                    "target@example.com",
                    &format!("guess number {i}"),
                ))
                .await
                .unwrap_err()
                .code()
            })
        })
        .collect();
    let mut checked = 0;
    for g in guesses {
        match g.await.unwrap() {
            Code::Unauthenticated => checked += 1,
            Code::ResourceExhausted => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(checked <= 3, "{checked} guesses were checked");

    // The lock survives a restart, even for the right password.
    let app = app.restart().await;
    let mut client = app.client().await;
    let err = client
        .login(login_request(
            "target@example.com",
            "analytical engine 1843",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    app.stop().await;
}

/// The edges of verification: an expired email token and phone code are refused like
/// unknown ones; the sixth try at a code is refused even when it is right;
/// `ResendVerification` refuses an unknown kind and, a minute after the last code,
/// sends a new one that works while the old one no longer does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_secrets_expire_run_out_of_tries_and_are_sent_again() {
    let (app, mut client) = spawn_app_and_client(Db::Sqlite).await;
    let (ada, token) = user_with_token(&mut client, "ada@example.com").await;
    let db = app.db().await;
    // The clock moved on: the stored expiry and sending time, an hour back.
    let age = |kind: ContactKind| {
        let db = db.clone();
        let ada = ada.clone();
        async move {
            sqlx::query(
                "UPDATE contact_verifications SET expires_at = expires_at - 86400000000, \
                 created_at = created_at - 3600000000 WHERE user_id = $1 AND kind = $2",
            )
            .bind(ada)
            .bind(kind as i32)
            .execute(db.pool())
            .await
            .unwrap();
        }
    };

    // An expired email token.
    let email_token = app.secrets_for(&ada, "ada@example.com", 1).pop().unwrap();
    age(ContactKind::Email).await;
    let err = client
        .verify_email(VerifyEmailRequest { token: email_token })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    // An expired phone code, though right.
    let verify = |code: &str| {
        with_token(
            VerifyPhoneRequest {
                user_id: ada.clone(),
                code: code.into(),
            },
            &token,
        )
    };
    let first = app.secrets_for(&ada, "+14155550123", 1).pop().unwrap();
    age(ContactKind::Phone).await;
    let err = client.verify_phone(verify(&first)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("ask for a new one"),
        "{}",
        err.message()
    );

    // Asking again: an unknown kind is refused; a minute on, a new code comes.
    for kind in [99, -1] {
        let err = client
            .resend_verification(with_token(
                ResendVerificationRequest {
                    user_id: ada.clone(),
                    kind,
                },
                &token,
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "kind {kind}: {err:?}");
    }
    client
        .resend_verification(with_token(
            ResendVerificationRequest {
                user_id: ada.clone(),
                kind: ContactKind::Phone as i32,
            },
            &token,
        ))
        .await
        .unwrap();
    let codes = app.secrets_for(&ada, "+14155550123", 2);
    let second = codes.last().unwrap().clone();

    // Five wrong tries; the sixth is refused even with the right code.
    let wrong = if second == "000000" {
        "000001"
    } else {
        "000000"
    };
    for left in (0..5).rev() {
        let err = client.verify_phone(verify(wrong)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        let said: Vec<String> = {
            use tonic_types::StatusExt as _;
            err.get_error_details()
                .bad_request()
                .map(|b| {
                    b.field_violations
                        .iter()
                        .map(|v| format!("{}: {}", v.field, v.description))
                        .collect()
                })
                .unwrap_or_default()
        };
        assert_eq!(said, [format!("code: is wrong; {left} tries left")]);
    }
    let err = client.verify_phone(verify(&second)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let me = Rpc::get_user(&ada)
        .send(&mut client, Auth::bearer(&token))
        .await
        .unwrap();
    assert!(!me.phone_verified && !me.email_verified);
}
