//! Delivery workers of several replicas on one database: each pass claims the
//! notifications it sends, so two workers racing for the same messages never both
//! get one; a claim that runs out (its replica died mid-pass) makes its messages due
//! again, and the late worker can no longer record them as sent. On SQLite and
//! PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};

use weft_events::Database;
use weft_events::db::now_micros;
use weft_notification::store::{Delivered, NotificationRow, claim_due, mark_sent, plan};
use weft_proto::notification::{Channel, DeliveryStatus};
use weft_testkit::{Db, on_each_db};

const MESSAGES: usize = 300;
const MINUTE: i64 = 60_000_000;

async fn database(url: &str) -> Database {
    let db = Database::connect(url).await.unwrap();
    db.migrate(
        sqlx::migrate!("./migrations/sqlite"),
        sqlx::migrate!("./migrations/postgres"),
    )
    .await
    .unwrap();
    db
}

on_each_db!(workers_racing_for_the_same_messages_never_both_get_one);

async fn workers_racing_for_the_same_messages_never_both_get_one(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let url = db.url(dir.path(), "notification").await;
    let db = database(&url).await;
    let now = now_micros();
    let mut tx = db.begin().await.unwrap();
    for i in 0..MESSAGES {
        let row = NotificationRow {
            id: format!("n-{i:04}"),
            user_id: format!("u-{i}"),
            channel: Channel::Email,
            template: "welcome".into(),
            trigger_event_id: format!("e-{i}"),
            context: "{}".into(),
            recipient: String::new(),
            subject: String::new(),
            status: DeliveryStatus::Pending,
            attempts: 0,
            last_error: None,
            created_at: now - 1,
            sent_at: None,
        };
        assert!(plan(&mut tx, &row).await.unwrap());
    }
    tx.commit().await.unwrap();

    // Eight workers over two replicas' pools claim passes of 16 until nothing is due.
    let pools = [database(&url).await, database(&url).await];
    let mut workers = Vec::new();
    for w in 0..8 {
        let db = pools[w % 2].clone();
        workers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for pass in 0.. {
                let claim = format!("replica-{}/worker-{w}/pass-{pass}", w % 2);
                let now = now_micros();
                let rows = claim_due(&db, &claim, now, now + MINUTE, 16).await.unwrap();
                if rows.is_empty() {
                    break;
                }
                got.extend(rows.into_iter().map(|r| (r.id, claim.clone())));
            }
            got
        }));
    }
    let mut claimed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for w in workers {
        for (id, claim) in w.await.unwrap() {
            claimed.entry(id).or_default().push(claim);
        }
    }
    assert_eq!(claimed.len(), MESSAGES, "every message claimed");
    let twice: Vec<_> = claimed.iter().filter(|(_, c)| c.len() > 1).collect();
    assert!(twice.is_empty(), "claimed by two passes: {twice:?}");
    let replicas: std::collections::BTreeSet<_> = claimed
        .values()
        .map(|c| c[0].split('/').next().unwrap().to_owned())
        .collect();
    println!("{MESSAGES} messages claimed once each, by {replicas:?}");

    // A claimed message is due for nobody else while its claim lasts.
    let later = now_micros();
    assert!(
        claim_due(&db, "other", later, later + MINUTE, 1000)
            .await
            .unwrap()
            .is_empty()
    );

    // A pass that died: its claim runs out, the message is due again, the new pass
    // records it, and the old pass's record is refused.
    let (id, old_claims) = claimed.iter().next().unwrap();
    let old = &old_claims[0];
    sqlx::query("UPDATE notifications SET next_attempt_at = $1 WHERE notification_id = $2")
        .bind(now_micros() - 1)
        .bind(id.clone())
        .execute(db.pool())
        .await
        .unwrap();
    let now = now_micros();
    let again = claim_due(&db, "new-pass", now, now + MINUTE, 1000)
        .await
        .unwrap();
    assert_eq!(
        again.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        [id.as_str()]
    );
    let one = |id| {
        [Delivered {
            id,
            recipient: "a@example.com",
            subject: "s",
        }]
    };
    let mut tx = db.begin().await.unwrap();
    assert!(
        mark_sent(&mut tx, old, &one(id), now_micros())
            .await
            .unwrap()
            .is_empty(),
        "a pass whose claim was taken over records nothing"
    );
    assert_eq!(
        mark_sent(&mut tx, "new-pass", &one(id), now_micros())
            .await
            .unwrap(),
        HashSet::from([id.clone()])
    );
    assert!(
        mark_sent(&mut tx, "new-pass", &one(id), now_micros())
            .await
            .unwrap()
            .is_empty(),
        "recorded once"
    );

    // A pass records, in one call, exactly the rows it holds, each with its own
    // recipient and subject; rows other passes hold are left as they are.
    let mut by_claim: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (other, claims) in &claimed {
        if other != id {
            by_claim.entry(&claims[0]).or_default().push(other);
        }
    }
    let (pass, held) = by_claim.iter().max_by_key(|(_, ids)| ids.len()).unwrap();
    let strangers: Vec<&str> = by_claim
        .iter()
        .filter(|(p, _)| p != &pass)
        .flat_map(|(_, ids)| ids.iter().copied())
        .take(5)
        .collect();
    let addresses: Vec<String> = held
        .iter()
        .chain(&strangers)
        .map(|n| format!("{n}@example.com"))
        .collect();
    let batch: Vec<Delivered> = held
        .iter()
        .chain(&strangers)
        .zip(&addresses)
        .map(|(id, address)| Delivered {
            id,
            recipient: address,
            subject: id,
        })
        .collect();
    let recorded = mark_sent(&mut tx, pass, &batch, now_micros())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let expected: HashSet<String> = held.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(recorded, expected);
    for d in &batch {
        let row = sqlx::query_as::<_, (i64, String, String)>(
            "SELECT status, recipient, subject FROM notifications WHERE notification_id = $1",
        )
        .bind(d.id.to_owned())
        .fetch_one(db.pool())
        .await
        .unwrap();
        if expected.contains(d.id) {
            assert_eq!(
                row,
                (
                    DeliveryStatus::Sent as i64,
                    d.recipient.to_owned(),
                    d.id.to_owned()
                )
            );
        } else {
            assert_eq!(
                row,
                (DeliveryStatus::Pending as i64, String::new(), String::new())
            );
        }
    }
    println!(
        "one call recorded the {} rows its pass held and none of {} others",
        held.len(),
        strangers.len()
    );
}
