//! Consumer groups, run on both brokers and both databases: members of one group
//! split the partitions and hand them over (a member joining while another is in the
//! middle of a batch, a member leaving), each event applied once; a member whose
//! partitions another member claimed commits nothing more; a group begins at its
//! stored offsets, and without any over a history only where it is told; a member of
//! another deployment is refused; partitions added to a topic are taken up by the
//! running members.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use sqlx::{AnyConnection, Row as _};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use weft_events::catalog::USER_EVENTS;
use weft_events::consumer::offsets::watermarks;
use weft_events::consumer::{Handler, HandlerError, Received, StartFrom, claims};
use weft_events::kafka::KafkaArgs;
use weft_events::{Consumer, Database, EventsError};
use weft_proto::user::UserSignedUp;
use weft_testkit::eventually;

use super::*;

const WAIT: Duration = Duration::from_secs(90);
const GROUP: &str = "group-test";

/// Records which member applied which event, taking `pace` per event.
struct Effect {
    member: String,
    pace: Duration,
}

#[async_trait::async_trait]
impl Handler for Effect {
    async fn handle(&self, tx: &mut AnyConnection, event: &Received) -> Result<(), HandlerError> {
        let e = event.decode::<UserSignedUp>()?;
        tokio::time::sleep(self.pace).await;
        sqlx::query("INSERT INTO group_effects (event_id, user_id, member) VALUES ($1, $2, $3)")
            .bind(event.envelope.id.clone())
            .bind(e.user_id)
            .bind(self.member.clone())
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}

fn member(kafka: &KafkaArgs, db: &Database, name: &str, pace: Duration) -> Consumer {
    Consumer::new(GROUP, kafka.clone(), db.clone())
        .on::<UserSignedUp>(Effect {
            member: name.to_owned(),
            pace,
        })
        .replica(name)
        .max_batch(32)
        .start_from(Some(StartFrom::Earliest))
}

struct Running {
    stop: CancellationToken,
    task: JoinHandle<Result<(), EventsError>>,
}

impl Running {
    fn start(consumer: Consumer) -> Self {
        let stop = CancellationToken::new();
        let task = tokio::spawn(consumer.run(stop.clone()));
        Self { stop, task }
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }
}

async fn database(url: &str) -> Database {
    let db = Database::connect(url).await.unwrap();
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS group_effects \
         (event_id TEXT NOT NULL, user_id TEXT NOT NULL, member TEXT NOT NULL)",
    )
    .execute(db.pool())
    .await
    .unwrap();
    db
}

async fn produce(kafka: &KafkaArgs, from: usize, to: usize) {
    let producer = RawProducer::new(kafka);
    for i in from..to {
        let event = signup(&format!("u{i}"));
        producer.send_event(&event.user_id, &event).await;
    }
}

/// Applied effects by member, and how many distinct events they cover (one read).
async fn applied(db: &Database) -> (HashMap<String, i64>, i64) {
    let rows = sqlx::query("SELECT event_id, member FROM group_effects")
        .fetch_all(db.pool())
        .await
        .unwrap();
    let mut by_member: HashMap<String, i64> = HashMap::new();
    let mut events = std::collections::HashSet::new();
    for r in &rows {
        events.insert(r.get::<String, _>(0));
        *by_member.entry(r.get(1)).or_default() += 1;
    }
    (by_member, events.len() as i64)
}

async fn wait_applied(db: &Database, n: i64) -> HashMap<String, i64> {
    eventually(&format!("{n} events applied"), WAIT, || {
        let db = db.clone();
        async move {
            let (by_member, distinct) = applied(&db).await;
            (distinct >= n).then_some(by_member)
        }
    })
    .await
}

/// [`wait_applied`], then checks that the members applied each event once, `when`
/// saying at which point; the effects by member.
async fn wait_applied_once(db: &Database, n: i64, when: &str) -> HashMap<String, i64> {
    let by_member = wait_applied(db, n).await;
    assert_eq!(
        by_member.values().sum::<i64>(),
        n,
        "each event applied once{when}: {by_member:?}"
    );
    by_member
}

/// The partitions each member holds, by the claims in the database.
async fn held(db: &Database) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for (_, (_, holder)) in claims::holders(db, GROUP).await.unwrap() {
        *out.entry(holder).or_default() += 1;
    }
    out
}

/// Waits until members a and b each hold partitions, by the claims.
async fn both_hold_partitions(db: &Database) {
    eventually("a and b to hold partitions each", WAIT, || {
        let db = db.clone();
        async move {
            let held = held(&db).await;
            (held.get("a").is_some_and(|n| *n > 0) && held.get("b").is_some_and(|n| *n > 0))
                .then_some(())
        }
    })
    .await;
}

/// Waits until every partition's stored offset equals its end: the members have
/// applied all there is.
async fn offsets_reach_the_ends(kafka: &KafkaArgs, db: &Database) {
    eventually("the offsets to reach the ends", WAIT, || {
        let (kafka, db) = (kafka.clone(), db.clone());
        async move {
            let marks = watermarks(&kafka, &[USER_EVENTS.to_owned()]).await.unwrap();
            let stored = weft_events::consumer::offsets::stored(&db, GROUP)
                .await
                .unwrap();
            marks
                .iter()
                .all(|m| stored.get(&(m.topic.clone(), m.partition)) == Some(&m.high))
                .then_some(())
        }
    })
    .await;
}

/// Every partition's stored offset equals its end.
async fn assert_offsets_at_the_end(kafka: &KafkaArgs, db: &Database) {
    let marks = watermarks(kafka, &[USER_EVENTS.to_owned()]).await.unwrap();
    let stored = weft_events::consumer::offsets::stored(db, GROUP)
        .await
        .unwrap();
    for m in marks {
        assert_eq!(
            stored.get(&(m.topic.clone(), m.partition)).copied(),
            Some(m.high),
            "stored offset of partition {} at its end",
            m.partition
        );
    }
}

pub async fn members_share_the_partitions_and_hand_them_over(on: &TestBackend) {
    members_share_the_partitions_and_hand_them_over_with(on, &[]).await;
}

/// [`members_share_the_partitions_and_hand_them_over`] with the members' client
/// `settings` (e.g. Kafka's next group protocol).
pub async fn members_share_the_partitions_and_hand_them_over_with(
    on: &TestBackend,
    settings: &[(&str, &str)],
) {
    let url = on.database("shared").await;
    let (_broker, mut kafka) = provisioned(on.broker).await;
    for (key, value) in settings {
        kafka
            .client
            .config
            .push(weft_events::kafka::settings::Setting {
                key: (*key).to_owned(),
                value: (*value).to_owned(),
            });
    }
    let partitions = watermarks(&kafka, &[USER_EVENTS.to_owned()])
        .await
        .unwrap()
        .len();
    assert!(partitions >= 2, "the test needs partitions to share");
    let db = database(&url).await;

    // a is alone and slow; b joins while a is in the middle of its batches: the
    // partitions a gives up are revoked only once its batch has settled.
    let a = Running::start(member(&kafka, &db, "a", Duration::from_millis(5)));
    produce(&kafka, 0, 300).await;
    eventually("a to apply some events", WAIT, || {
        let db = db.clone();
        async move { (applied(&db).await.1 > 0).then_some(()) }
    })
    .await;
    let b = Running::start(member(&kafka, &db, "b", Duration::from_millis(5)));
    both_hold_partitions(&db).await;
    produce(&kafka, 300, 600).await;
    let by_member = wait_applied_once(&db, 600, "").await;
    assert!(
        by_member.get("b").is_some_and(|n| *n > 0),
        "b applied its share: {by_member:?}"
    );

    // b leaves in the middle of a stream: a takes everything over.
    produce(&kafka, 600, 700).await;
    b.stop().await;
    produce(&kafka, 700, 800).await;
    wait_applied_once(&db, 800, " across the handover").await;
    eventually("a to hold every partition", WAIT, || {
        let db = db.clone();
        async move { (held(&db).await.get("a") == Some(&partitions)).then_some(()) }
    })
    .await;
    offsets_reach_the_ends(&kafka, &db).await;
    assert_offsets_at_the_end(&kafka, &db).await;
    a.stop().await;
}

pub async fn a_member_whose_partitions_were_claimed_commits_nothing(on: &TestBackend) {
    let url = on.database("fenced").await;
    let (_broker, kafka) = provisioned(on.broker).await;
    let partitions: Vec<(String, i32)> = watermarks(&kafka, &[USER_EVENTS.to_owned()])
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.topic, m.partition))
        .collect();
    let db = database(&url).await;
    let a = Running::start(member(&kafka, &db, "a", Duration::ZERO));
    produce(&kafka, 0, 50).await;
    wait_applied(&db, 50).await;
    let before = weft_events::consumer::offsets::stored(&db, GROUP)
        .await
        .unwrap();

    // Another member claims every partition, as after a's session expired while it
    // was stopped: a still has them from Kafka, but what it reads now is not its own.
    claims::claim(&db, GROUP, "z", &partitions).await.unwrap();
    produce(&kafka, 50, 100).await;
    // a reads the new records (the fence turns them away) or drops the partitions at
    // its next look at the claims; either way it commits nothing.
    // A window for a to misbehave in: it has the records and looks at its claims
    // every second. Fixed, since a batch turned away leaves nothing to wait for.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (by_member, distinct) = applied(&db).await;
    assert_eq!(
        distinct, 50,
        "a applied nothing past the claim: {by_member:?}"
    );
    assert_eq!(
        weft_events::consumer::offsets::stored(&db, GROUP)
            .await
            .unwrap(),
        before,
        "a moved no offset past the claim"
    );
    a.stop().await;

    // A new member takes the partitions over and applies the rest, once.
    let c = Running::start(member(&kafka, &db, "c", Duration::ZERO));
    let by_member = wait_applied_once(&db, 100, " after the claim").await;
    assert_eq!(by_member.get("c"), Some(&50), "{by_member:?}");
    c.stop().await;
}

pub async fn a_group_begins_at_its_stored_offsets_or_where_told(on: &TestBackend) {
    let url = on.database("start").await;
    let (_broker, kafka) = provisioned(on.broker).await;
    let db = database(&url).await;
    produce(&kafka, 0, 40).await;

    // No offsets, a history, effects that cannot be replayed: refused, saying how.
    let refused = Consumer::new(GROUP, kafka.clone(), db.clone())
        .on::<UserSignedUp>(Effect {
            member: "x".into(),
            pace: Duration::ZERO,
        })
        .run(CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        matches!(refused, EventsError::NoStartingPoint { records: 40, .. }),
        "{refused}"
    );
    assert!(refused.needs_the_operator());
    assert!(refused.to_string().contains("--from latest"), "{refused}");

    // Told to begin at the end: the history is not applied, what comes next is.
    let late = Running::start(
        member(&kafka, &db, "a", Duration::ZERO).start_from(Some(StartFrom::Latest)),
    );
    eventually("the member to hold its partitions", WAIT, || {
        let db = db.clone();
        async move { held(&db).await.contains_key("a").then_some(()) }
    })
    .await;
    produce(&kafka, 40, 50).await;
    wait_applied(&db, 10).await;
    let users = user_ids(&db, "group_effects").await;
    assert_eq!(users.len(), 10, "{users:?}");
    assert!(users.iter().all(|u| u.as_str() >= "u40"), "{users:?}");
    late.stop().await;

    // Stored offsets win over any --from: a member told `earliest` starts where the
    // group stopped.
    let again = Running::start(member(&kafka, &db, "b", Duration::ZERO));
    produce(&kafka, 50, 55).await;
    let by_member = wait_applied(&db, 15).await;
    offsets_reach_the_ends(&kafka, &db).await;
    // b has caught up. A fixed window for it to replay the history in, were it reading
    // from the beginning: a replay shows only as more effects, nothing to wait for.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(applied(&db).await.1, 15, "{by_member:?}");
    again.stop().await;
    assert_offsets_at_the_end(&kafka, &db).await;
}

pub async fn a_member_of_another_deployment_is_refused(on: &TestBackend) {
    let (url, other_url) = (on.database("a").await, on.database("b").await);
    let (_broker, kafka) = provisioned(on.broker).await;
    let db = database(&url).await;
    let other = database(&other_url).await;
    let a = Running::start(member(&kafka, &db, "a", Duration::ZERO));
    eventually("a to hold its partitions", WAIT, || {
        let db = db.clone();
        async move { held(&db).await.contains_key("a").then_some(()) }
    })
    .await;
    let ours = claims::deployment_id(&db).await.unwrap();
    let theirs = claims::deployment_id(&other).await.unwrap();
    assert_ne!(ours, theirs, "each database has its own deployment");
    let refused = member(&kafka, &other, "x", Duration::ZERO)
        .run(CancellationToken::new())
        .await
        .unwrap_err();
    let text = refused.to_string();
    assert!(
        matches!(refused, EventsError::ForeignDeployment { .. }),
        "{text}"
    );
    assert!(text.contains(&ours) && text.contains(&theirs), "{text}");
    produce(&kafka, 0, 20).await;
    wait_applied(&db, 20).await;
    assert_eq!(
        applied(&other).await.1,
        0,
        "the refused member applied nothing"
    );
    a.stop().await;
}

/// The effects the rewind test's members derive: dropped by a rewind.
struct DropEffects;

#[async_trait::async_trait]
impl weft_events::consumer::Reset for DropEffects {
    async fn reset(&self, tx: &mut AnyConnection) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM group_effects")
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}

pub async fn a_rewind_replays_the_whole_group_one_at_a_time(on: &TestBackend) {
    use weft_events::consumer::{RewindError, rebuild_lease};
    use weft_events::lease::Lease;

    let url = on.database("rewind").await;
    let (_broker, kafka) = provisioned(on.broker).await;
    let db = database(&url).await;
    let a = member(&kafka, &db, "a", Duration::ZERO).rewinds_with(DropEffects);
    let b = member(&kafka, &db, "b", Duration::ZERO).rewinds_with(DropEffects);
    let (rewind_a, rewind_b) = (a.rewinder(), b.rewinder());
    let (a, b) = (Running::start(a), Running::start(b));
    produce(&kafka, 0, 200).await;
    wait_applied(&db, 200).await;
    both_hold_partitions(&db).await;

    // A rebuild under way elsewhere: a rewind asked of b is refused, naming it.
    let mut elsewhere = Lease::new(
        db.clone(),
        &rebuild_lease(GROUP),
        "elsewhere",
        Duration::from_secs(30),
    );
    assert!(elsewhere.ensure().await.unwrap().is_some());
    let refused = rewind_b.rewind().await.unwrap_err();
    assert_eq!(
        refused,
        RewindError::Busy {
            group: GROUP.to_owned(),
            holder: "elsewhere".to_owned()
        }
    );
    assert!(
        refused
            .to_string()
            .contains("already under way on elsewhere")
    );
    assert_eq!(
        applied(&db).await.1,
        200,
        "the refused rewind dropped nothing"
    );
    elsewhere.release().await;

    // Asked of a, the rewind replays every partition, b's share too, each event once.
    let replayed = rewind_a.rewind().await.unwrap();
    assert_eq!(replayed, 200, "events applied by the replay");
    let (by_member, distinct) = applied(&db).await;
    assert_eq!(distinct, 200);
    assert_eq!(
        by_member.values().sum::<i64>(),
        200,
        "each event applied once by the replay: {by_member:?}"
    );
    assert!(
        by_member.get("a").is_some_and(|n| *n > 0) && by_member.get("b").is_some_and(|n| *n > 0),
        "both members replayed their shares: {by_member:?}"
    );
    // The lease was given back: a second rewind, asked of b, runs.
    assert_eq!(rewind_b.rewind().await.unwrap(), 200);
    assert_offsets_at_the_end(&kafka, &db).await;
    a.stop().await;
    b.stop().await;
}

/// Grows the test's `user-events` to `partitions` partitions (Kafka's
/// CreatePartitions).
async fn grow(kafka: &KafkaArgs, partitions: usize) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> =
        kafka.client("group-test-grow").create().unwrap();
    let topic = kafka.topic(USER_EVENTS);
    let results = admin
        .create_partitions(
            [&NewPartitions::new(&topic, partitions)],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .unwrap();
    assert_eq!(results, vec![Ok(topic)]);
}

pub async fn partitions_added_to_a_topic_are_read_without_a_restart(on: &TestBackend) {
    let url = on.database("grow").await;
    let (_broker, kafka) = provisioned(on.broker).await;
    let topics = [USER_EVENTS.to_owned()];
    let before = watermarks(&kafka, &topics).await.unwrap().len();
    let db = database(&url).await;
    let a = Running::start(member(&kafka, &db, "a", Duration::ZERO));
    let b = Running::start(member(&kafka, &db, "b", Duration::ZERO));
    produce(&kafka, 0, 100).await;
    wait_applied(&db, 100).await;

    // Two more partitions while both members run; records keyed across all of them.
    let after = before + 2;
    grow(&kafka, after).await;
    eventually("the brokers to list the new partitions", WAIT, || {
        let kafka = kafka.clone();
        let topics = topics.clone();
        async move { (watermarks(&kafka, &topics).await.ok()?.len() == after).then_some(()) }
    })
    .await;
    produce(&kafka, 100, 400).await;
    let marks = watermarks(&kafka, &topics).await.unwrap();
    let in_new: i64 = marks
        .iter()
        .filter(|m| m.partition as usize >= before)
        .map(|m| m.high - m.low)
        .sum();
    assert!(in_new > 0, "no record went to a new partition: {marks:?}");

    // The members take the new partitions up by themselves, from their first record.
    wait_applied_once(&db, 400, "").await;
    eventually("every partition, old and new, claimed", WAIT, || {
        let db = db.clone();
        async move { (held(&db).await.values().sum::<usize>() == after).then_some(()) }
    })
    .await;
    assert_offsets_at_the_end(&kafka, &db).await;
    a.stop().await;
    b.stop().await;
}
