//! What a member checks before it joins its group: the topics exist and the stored
//! offsets can be right ([`offsets::assignment`]); a group that has never stored an
//! offset knows where to begin (a consumer whose effects cannot be replayed refuses a
//! history it was not told about); and no member of another deployment is in the
//! group.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use tokio_util::sync::CancellationToken;

use crate::consumer::offsets::{self, Marks, StartFrom};
use crate::consumer::{Consumer, claims, retry};
use crate::error::EventsError;

impl Consumer {
    /// Runs the checks (see the module docs), waiting while the database or the
    /// brokers are away; the deployment's identity once they pass, `None` when
    /// `shutdown` came first.
    pub(super) async fn ready_to_join(
        &self,
        topics: &[String],
        shutdown: &CancellationToken,
    ) -> Result<Option<String>, EventsError> {
        let Some(marks) = self.checked_marks(topics, shutdown).await? else {
            return Ok(None);
        };
        self.begin_if_new(&marks).await?;
        let deployment = claims::deployment_id(&self.db).await?;
        if !self.refuse_other_deployments(&deployment, shutdown).await? {
            return Ok(None);
        }
        Ok(Some(deployment))
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
