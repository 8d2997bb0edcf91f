//! The run loop of a consumer group member.
//!
//! Before joining, a member checks what it is about to read: the topics exist, the
//! stored offsets can be right ([`offsets::assignment`]), a group that has never
//! stored an offset knows where to begin (a consumer whose effects cannot be replayed
//! refuses a history it was not told about), and no member of another deployment is
//! in the group. Then it subscribes, and takes, in this order, whichever comes first:
//! shutdown; a change of its assignment ([`Change`]); a rewind; a periodic look at
//! its claims (a rewind elsewhere released them, or another member took one over);
//! the next records, settled as one batch. Changes are taken only between batches, so
//! a revoked partition's records have settled before it is released.

use std::collections::HashMap;
use std::time::Duration;

use futures::FutureExt as _;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer as _, StreamConsumer};
use rdkafka::util::Timeout;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::claims::{self, Partition};
use super::dispatch::Record;
use super::group::{self, Change, GroupContext, Positions};
use super::offsets::{self, Marks, StartFrom};
use super::replay::{Progress, Replay, RewindError, rebuild_lease};
use super::settle::Running;
use super::{Consumer, Outcome, retry};
use crate::dlq::DeadLetters;
use crate::error::EventsError;
use crate::lease::Lease;

/// How often a member looks at its claims in the database.
const CLAIMS_LOOK: Duration = Duration::from_secs(1);
/// The pause after an error the consumer reports (see the run loop).
const ERROR_PAUSE: Duration = Duration::from_millis(20);

/// How long a rebuild lease outlives the last renewal of a replica that died during
/// the replay (renewed at every look while the replay runs).
const REBUILD_LEASE_TTL: Duration = Duration::from_secs(30);

/// What this member holds.
#[derive(Default)]
struct Held {
    /// The claimed epoch of each partition.
    epochs: HashMap<Partition, i64>,
    /// Partitions replayed by a rewind, up to the end they had when it began.
    replay_until: HashMap<Partition, i64>,
    /// The next offset of each partition (shared with the lag reporter).
    positions: Positions,
}

impl Held {
    fn drop_partition(&mut self, p: &Partition) {
        self.epochs.remove(p);
        self.replay_until.remove(p);
        self.positions().remove(p);
    }

    fn positions(&self) -> std::sync::MutexGuard<'_, HashMap<Partition, i64>> {
        self.positions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn replaying(&self, r: &Record) -> bool {
        self.replay_until
            .get(&(r.topic.clone(), r.partition))
            .is_some_and(|end| r.offset < *end)
    }
}

/// Marks the group context closing when dropped (declared after the consumer, so it
/// drops first).
struct Closing<'a>(&'a GroupContext);

impl Drop for Closing<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl Consumer {
    /// Consumes until `shutdown`, then leaves the group.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), EventsError> {
        let topics: Vec<String> = self.topics.iter().cloned().collect();
        let Some(marks) = self.checked_marks(&topics, &shutdown).await? else {
            return Ok(());
        };
        self.begin_if_new(&marks).await?;
        let deployment = claims::deployment_id(&self.db).await?;
        if !self
            .refuse_other_deployments(&deployment, &shutdown)
            .await?
        {
            return Ok(());
        }

        let (changes_tx, mut changes) = mpsc::unbounded_channel();
        let mut held = Held::default();
        let context = GroupContext::new(
            &self.group,
            &self.kafka.client.prefix,
            changes_tx,
            held.positions.clone(),
        );
        let client_id = format!("weft:{deployment}:{}", self.replica);
        let consumer: StreamConsumer<GroupContext> = self
            .kafka
            .consumer(
                &client_id,
                &self.group,
                &format!("{deployment}-{}", self.replica),
            )
            .create_with_context(context)?;
        // However the loop ends (even by its future being dropped), the consumer's
        // close must release its partitions itself: nothing will take changes then.
        let _closing = Closing(consumer.context());
        let cluster: Vec<String> = topics.iter().map(|t| self.kafka.topic(t)).collect();
        let names: Vec<&str> = cluster.iter().map(String::as_str).collect();
        consumer.subscribe(&names)?;
        let dlq = DeadLetters::new(&self.kafka, &self.group)?;
        tracing::info!(group = %self.group, replica = %self.replica, %deployment, ?topics, max_batch = self.max_batch, "consumer joining its group");
        let running = Running {
            dlq: &dlq,
            shutdown: &shutdown,
        };
        let mut rewinds = std::mem::replace(&mut self.rewinds, mpsc::channel(1).1);
        let mut replay: Option<Replay> = None;
        let mut rebuild = Lease::new(
            self.db.clone(),
            &rebuild_lease(&self.group),
            &self.replica,
            REBUILD_LEASE_TTL,
        );
        let mut look = tokio::time::interval(CLAIMS_LOOK);
        look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failures = 0u32;
        let result = loop {
            let first = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break Ok(()),
                Some(change) = changes.recv() => {
                    match self.change(&consumer, &mut held, change, &topics, &shutdown).await {
                        Ok(()) => continue,
                        Err(e) => break Err(e),
                    }
                }
                Some(reply) = rewinds.recv() => {
                    if replay.is_some() {
                        let _ = reply.send(Err(RewindError::Busy { group: self.group.clone(), holder: self.replica.clone() }));
                        continue;
                    }
                    match rebuild.ensure().await {
                        Ok(Some(_)) => {}
                        Ok(None) => {
                            let holder = rebuild.current().await.ok().flatten().map_or_else(|| "another replica".to_owned(), |h| h.holder);
                            let _ = reply.send(Err(RewindError::Busy { group: self.group.clone(), holder }));
                            continue;
                        }
                        Err(e) => {
                            let _ = reply.send(Err(RewindError::Failed(format!("taking the rebuild lease: {e}"))));
                            continue;
                        }
                    }
                    match Replay::start(&self.db, &self.kafka, &self.group, &topics, self.reset.as_ref(), reply).await {
                        Ok(r) => replay = Some(r),
                        Err(failed) => {
                            rebuild.release().await;
                            failed.send();
                        }
                    }
                    self.look_at_claims(&consumer, &mut held, &topics).await;
                    continue;
                }
                _ = look.tick() => {
                    self.look_at_claims(&consumer, &mut held, &topics).await;
                    if let Some(r) = replay.take() {
                        match r.progress(&self.db, &self.group).await {
                            Progress::Running(r) => {
                                replay = Some(r);
                                // Renewed while the replay runs; a failed renewal is
                                // retried at the next look.
                                let _ = rebuild.ensure().await;
                            }
                            Progress::Finished(answer) => {
                                // The lease first: a rewind asked the moment this one
                                // is answered finds it free.
                                rebuild.release().await;
                                answer.send();
                            }
                        }
                    }
                    continue;
                }
                msg = consumer.recv() => msg,
            };
            let prefix = self.kafka.client.prefix.as_str();
            let first = match first {
                Ok(m) => {
                    if failures > 0 {
                        tracing::info!(group = %self.group, errors = failures, "consumer reading again");
                        failures = 0;
                    }
                    Record::of(&m, prefix)
                }
                Err(e) => {
                    // librdkafka reports the brokers' troubles here and mends them by
                    // itself (it reconnects, with its own back-off). They queue up
                    // while the brokers are away, so sleeping longer at each one, as
                    // this loop once did, kept a consumer idle for up to a minute after
                    // a broker was back: only a short pause, against a busy loop.
                    failures = failures.saturating_add(1);
                    metrics::counter!("consumer_errors_total", "group" => self.group.clone())
                        .increment(1);
                    if failures == 1 {
                        tracing::warn!(group = %self.group, error = %e, "consumer error; librdkafka retries by itself");
                    } else {
                        tracing::debug!(group = %self.group, error = %e, errors = failures, "consumer error");
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => break Ok(()),
                        _ = tokio::time::sleep(ERROR_PAUSE) => {}
                    }
                    continue;
                }
            };
            // Whatever else is fetched already joins the batch; nothing waits for more.
            let mut records = vec![first];
            while records.len() < self.max_batch {
                match consumer.recv().now_or_never() {
                    Some(Ok(m)) => records.push(Record::of(&m, prefix)),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "consumer fetch failed");
                        break;
                    }
                    None => break,
                }
            }
            if !self.obey_faults(records.len(), &shutdown).await {
                break Ok(());
            }
            let Some(settled) = self
                .settle(records, |r| held.replaying(r), &held.epochs, &running)
                .await
            else {
                break Ok(()); // shutdown during a retry: the records are read again later
            };
            metrics::histogram!("consumer_batch_size", "group" => self.group.clone())
                .record(settled.records.len() as f64);
            for (record, received, outcome) in &settled.records {
                metrics::counter!("consumer_records_total", "group" => self.group.clone(), "outcome" => outcome.as_str())
                    .increment(1);
                if *outcome == Outcome::Fenced {
                    continue;
                }
                let tp = (record.topic.clone(), record.partition);
                held.positions().insert(tp.clone(), record.offset + 1);
                if held
                    .replay_until
                    .get(&tp)
                    .is_some_and(|end| record.offset + 1 >= *end)
                {
                    held.replay_until.remove(&tp);
                }
                if let (Some(after), Some(received)) = (&self.after, received) {
                    after(received, *outcome);
                }
            }
            if !settled.fenced.is_empty() {
                for p in &settled.fenced {
                    held.drop_partition(p);
                }
                self.look_at_claims(&consumer, &mut held, &topics).await;
            }
        };
        if replay.is_some() {
            // The group goes on replaying; a rewind may be asked of another member.
            rebuild.release().await;
        }
        consumer.context().close();
        consumer.unsubscribe();
        tracing::info!(group = %self.group, "consumer stopped");
        result
    }

    /// Operators' fault flags: this consumer holds what it fetched while it is paused,
    /// and waits before each record while it is slow. `false` on shutdown.
    async fn obey_faults(&self, records: usize, shutdown: &CancellationToken) -> bool {
        while weft_kit::faults::get("consumer-pause").as_deref() == Some(self.group.as_str()) {
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
        if let Some(delay) = weft_kit::faults::millis("slow-consumer") {
            let all = delay.saturating_mul(u32::try_from(records).unwrap_or(u32::MAX));
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(all) => {}
            }
        }
        true
    }

    /// Takes a change of this member's assignment (see [`Change`]).
    async fn change(
        &self,
        consumer: &StreamConsumer<GroupContext>,
        held: &mut Held,
        change: Change,
        topics: &[String],
        shutdown: &CancellationToken,
    ) -> Result<(), EventsError> {
        match change {
            Change::Assign(partitions) => {
                let Some(starts) = self.claim(&partitions, topics, held, shutdown).await? else {
                    return Ok(());
                };
                tracing::info!(group = %self.group, replica = %self.replica, assigned = ?starts, "partitions assigned");
                metrics::counter!("consumer_rebalances_total", "group" => self.group.clone(), "change" => "assigned")
                    .increment(1);
                group::assign(consumer, &self.cluster_list(&starts)?)?;
                self.membership.set(true);
            }
            Change::Revoke(partitions) => {
                for p in &partitions {
                    held.drop_partition(p);
                }
                tracing::info!(group = %self.group, replica = %self.replica, revoked = ?partitions, "partitions revoked after the batch settled");
                metrics::counter!("consumer_rebalances_total", "group" => self.group.clone(), "change" => "revoked")
                    .increment(1);
                let list = partitions
                    .iter()
                    .map(|p| (p.clone(), None))
                    .collect::<Vec<_>>();
                group::release(consumer, &self.cluster_list(&list)?)?;
            }
            Change::Lost(partitions) => {
                for p in &partitions {
                    held.drop_partition(p);
                }
                metrics::counter!("consumer_rebalances_total", "group" => self.group.clone(), "change" => "lost")
                    .increment(1);
                if held.epochs.is_empty() {
                    self.membership.set(false);
                }
            }
        }
        Ok(())
    }

    /// Claims `partitions` and works out where each starts (retrying while the
    /// database or the brokers are away); `None` on shutdown. Records them as held.
    async fn claim(
        &self,
        partitions: &[Partition],
        topics: &[String],
        held: &mut Held,
        shutdown: &CancellationToken,
    ) -> Result<Option<Vec<(Partition, Option<i64>)>>, EventsError> {
        let mut attempt = 0u32;
        loop {
            if partitions.is_empty() {
                return Ok(Some(Vec::new()));
            }
            let tried = async {
                let claimed =
                    claims::claim(&self.db, &self.group, &self.replica, partitions).await?;
                let marks: Vec<Marks> = offsets::watermarks(&self.kafka, topics)
                    .await?
                    .into_iter()
                    .filter(|m| partitions.contains(&(m.topic.clone(), m.partition)))
                    .collect();
                if marks.len() < partitions.len() {
                    return Err(EventsError::Delivery(
                        "the brokers do not list every assigned partition yet".into(),
                    ));
                }
                let stored = claimed
                    .stored
                    .iter()
                    .filter(|(p, _)| partitions.contains(p))
                    .map(|(p, o)| (p.clone(), *o))
                    .collect();
                let starts = offsets::assignment(&self.group, &marks, &stored, self.stale_offsets)?;
                if !starts.resets.is_empty() {
                    let mut tx = self.db.begin().await?;
                    offsets::overwrite(&mut tx, &self.group, &starts.resets).await?;
                    tx.commit().await?;
                }
                Ok((claimed.epochs, starts.next))
            }
            .await;
            match tried {
                Ok((epochs, next)) => {
                    held.epochs.extend(epochs);
                    held.positions().extend(next.clone());
                    let mut out: Vec<(Partition, Option<i64>)> =
                        next.into_iter().map(|(p, o)| (p, Some(o))).collect();
                    out.sort();
                    return Ok(Some(out));
                }
                Err(e) if e.needs_the_operator() => {
                    tracing::error!(error = %e, "stored offsets cannot be right; stopping");
                    return Err(e);
                }
                Err(e) => {
                    attempt = attempt.saturating_add(1);
                    tracing::warn!(group = %self.group, error = %e, attempt, "cannot take up the assigned partitions yet; retrying");
                    if !retry::pause(attempt, shutdown).await {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Compares this member's claims with the database: a partition released by a
    /// rewind is claimed again and read from its first record; one another member
    /// claimed is dropped (its records are left to that member).
    async fn look_at_claims(
        &self,
        consumer: &StreamConsumer<GroupContext>,
        held: &mut Held,
        topics: &[String],
    ) {
        if held.epochs.is_empty() {
            return;
        }
        let holders = match claims::holders(&self.db, &self.group).await {
            Ok(h) => h,
            Err(e) => {
                tracing::debug!(error = %e, "looking at the claims failed");
                return;
            }
        };
        let mut released = Vec::new();
        for (p, epoch) in held.epochs.clone() {
            match holders.get(&p) {
                Some((e, _)) if *e == epoch => {}
                Some((_, holder)) if !holder.is_empty() => {
                    tracing::warn!(group = %self.group, partition = ?p, %holder, "another member claimed this partition; leaving it");
                    held.drop_partition(&p);
                }
                _ => released.push(p),
            }
        }
        if released.is_empty() {
            return;
        }
        for p in &released {
            held.drop_partition(p);
        }
        let unbounded = CancellationToken::new();
        let claimed = async {
            let marks = offsets::watermarks(&self.kafka, topics).await?;
            let starts = self.claim(&released, topics, held, &unbounded);
            let starts = tokio::time::timeout(Duration::from_secs(30), starts)
                .await
                .map_err(|_| EventsError::Delivery("claiming again timed out".into()))??;
            Ok::<_, EventsError>((marks, starts))
        }
        .await;
        match claimed {
            Ok((marks, Some(starts))) => {
                for m in marks {
                    let p = (m.topic, m.partition);
                    if released.contains(&p) {
                        held.replay_until.insert(p, m.high);
                    }
                }
                tracing::info!(group = %self.group, partitions = ?starts, "partitions released by a rewind; reading them again");
                match self.cluster_list(&starts) {
                    Ok(tpl) => {
                        if let Err(e) =
                            consumer.seek_partitions(tpl, Timeout::After(Duration::ZERO))
                        {
                            tracing::warn!(error = %e, "seeking the rewound partitions failed");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "seeking the rewound partitions failed"),
                }
            }
            Ok((_, None)) => {}
            Err(e) => {
                tracing::warn!(group = %self.group, error = %e, "claiming the released partitions failed; trying again");
            }
        }
    }

    /// `partitions` on the cluster, each at its offset when it has one.
    fn cluster_list(
        &self,
        partitions: &[(Partition, Option<i64>)],
    ) -> Result<TopicPartitionList, EventsError> {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in partitions {
            let cluster = self.kafka.topic(topic);
            match offset {
                Some(o) => {
                    tpl.add_partition_offset(&cluster, *partition, rdkafka::Offset::Offset(*o))?;
                }
                None => {
                    tpl.add_partition(&cluster, *partition);
                }
            }
        }
        Ok(tpl)
    }

    /// Every partition of `topics` with its watermarks, once the topics exist and the
    /// stored offsets can be right; `None` on shutdown.
    async fn checked_marks(
        &self,
        topics: &[String],
        shutdown: &CancellationToken,
    ) -> Result<Option<Vec<Marks>>, EventsError> {
        let mut attempt = 0u32;
        loop {
            let tried = async {
                // Stored offsets first: other members of the group advance them
                // while this one starts, and an offset read after the end would seem
                // to lie past it.
                let stored = offsets::stored(&self.db, &self.group).await?;
                let marks = offsets::watermarks(&self.kafka, topics).await?;
                offsets::assignment(&self.group, &marks, &stored, self.stale_offsets)?;
                Ok::<_, EventsError>(marks)
            }
            .await;
            match tried {
                Ok(marks) => return Ok(Some(marks)),
                Err(e) if e.needs_the_operator() => {
                    tracing::error!(error = %e, "stored offsets cannot be right; stopping");
                    return Err(e);
                }
                Err(e) => {
                    attempt = attempt.saturating_add(1);
                    tracing::warn!(error = %e, attempt, "cannot read the topics yet; retrying");
                    if !retry::pause(attempt, shutdown).await {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Stores where a group that has never stored an offset begins: anywhere when the
    /// topics are empty, the first records for a projection, as told (`--from`)
    /// otherwise; with history and not told, a consumer whose effects cannot be
    /// replayed refuses to start ([`EventsError::NoStartingPoint`]).
    async fn begin_if_new(&self, marks: &[Marks]) -> Result<(), EventsError> {
        if !offsets::stored(&self.db, &self.group).await?.is_empty() {
            return Ok(());
        }
        let history: i64 = marks.iter().map(|m| (m.high - m.low).max(0)).sum();
        let from = match self.start_from {
            Some(from) => from,
            None if history == 0 || self.reset.replayable() => StartFrom::Earliest,
            None => {
                return Err(EventsError::NoStartingPoint {
                    group: self.group.clone(),
                    records: history,
                    topics: self.topics.iter().cloned().collect::<Vec<_>>().join(", "),
                });
            }
        };
        if history > 0 {
            tracing::warn!(group = %self.group, records = history, from = from.as_str(), "no stored offsets and the topics have history: beginning as told");
            metrics::counter!("consumer_start_from_total", "group" => self.group.clone(), "from" => from.as_str())
                .increment(1);
        }
        offsets::begin_at(&self.db, &self.group, marks, from).await?;
        Ok(())
    }

    /// Refuses to join a group whose members belong to another deployment (their
    /// client ids carry its identity): two meshes with their own databases would split
    /// the partitions and each apply what the other never sees.
    /// `Ok(false)` when `shutdown` came while it waited.
    async fn refuse_other_deployments(
        &self,
        ours: &str,
        shutdown: &CancellationToken,
    ) -> Result<bool, EventsError> {
        // A mesh stopped a moment ago leaves its static members in the group until
        // their sessions time out (static members do not leave), and one killed with
        // -9 leaves any member so: a member of another deployment refuses this one
        // only if it outlasts a session.
        let patience = crate::kafka::SESSION_TIMEOUT + Duration::from_secs(3);
        let started = std::time::Instant::now();
        let mut said = false;
        loop {
            let Err(refusal) = self.foreign_members(ours).await else {
                return Ok(true);
            };
            if shutdown.is_cancelled() {
                return Ok(false);
            }
            if started.elapsed() >= patience {
                return Err(refusal);
            }
            if !said {
                said = true;
                tracing::info!(group = %self.group, %refusal, wait = ?patience, "waiting for the other deployment's members to leave (a mesh that stopped just now keeps them until their sessions time out)");
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = shutdown.cancelled() => {}
            }
        }
    }

    /// An error naming a member of the group from another deployment than `ours`, if
    /// it has one.
    async fn foreign_members(&self, ours: &str) -> Result<(), EventsError> {
        let config = self
            .kafka
            .client(&format!("weft-group-check-{}", std::process::id()));
        let group = self.kafka.group(&self.group);
        let members = tokio::task::spawn_blocking(move || {
            let client: BaseConsumer = config.create()?;
            let list = client.fetch_group_list(Some(&group), Duration::from_secs(5))?;
            Ok::<_, EventsError>(
                list.groups()
                    .iter()
                    .filter(|g| g.name() == group)
                    .flat_map(|g| g.members().iter().map(|m| m.client_id().to_owned()))
                    .collect::<Vec<_>>(),
            )
        })
        .await
        .map_err(|e| EventsError::Delivery(format!("group check failed: {e}")))?;
        let members = match members {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(group = %self.group, error = %e, "cannot list the group's members; joining without checking their deployment");
                return Ok(());
            }
        };
        for client_id in members {
            let Some((theirs, replica)) = client_id
                .strip_prefix("weft:")
                .and_then(|rest| rest.split_once(':'))
            else {
                continue;
            };
            if theirs != ours {
                return Err(EventsError::ForeignDeployment {
                    group: self.kafka.group(&self.group),
                    ours: ours.to_owned(),
                    theirs: theirs.to_owned(),
                    replica: replica.to_owned(),
                });
            }
        }
        Ok(())
    }
}
