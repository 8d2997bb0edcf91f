//! The gRPC API: the metrics, a stream of them, the recent events and the rebuild.
//! Reading is open to anyone (the dashboard is public); a rebuild needs an admin's
//! access token.

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use weft_events::Database;
use weft_events::consumer::Rewinder;
use weft_kit::status::{FieldViolation, invalid_argument};
use weft_proto::analytics::analytics_service_server::AnalyticsService;
use weft_proto::analytics::{
    GetMetricsRequest, GetMetricsResponse, ListRecentEventsRequest, ListRecentEventsResponse,
    RebuildProjectionsRequest, RebuildProjectionsResponse, StreamMetricsRequest,
    StreamMetricsResponse,
};

use crate::projection::{self, RECENT};

/// How long a stream waits after a change for more changes to fold into the same
/// update.
pub const COALESCE: Duration = Duration::from_millis(50);

/// The AnalyticsService implementation (also behind the dashboard's HTTP routes).
#[derive(Clone)]
pub struct AnalyticsApi {
    /// The projections.
    pub db: Database,
    /// Bumped after every applied event.
    pub changes: watch::Receiver<u64>,
    /// Replays the topics.
    pub rewinder: Rewinder,
    /// Ends the metric streams when the server stops.
    pub shutdown: CancellationToken,
}

fn internal(e: sqlx::Error) -> Status {
    weft_kit::status::internal(&e)
}

/// The stream of metric updates: a snapshot with the recent events, then one
/// message per (coalesced) change with the events that arrived since.
pub type MetricStream = Pin<Box<dyn Stream<Item = Result<StreamMetricsResponse, Status>> + Send>>;

struct StreamState {
    db: Database,
    changes: watch::Receiver<u64>,
    shutdown: CancellationToken,
    last_seq: Option<i64>,
    failed: bool,
}

impl AnalyticsApi {
    /// The current metrics.
    pub async fn snapshot(&self) -> Result<GetMetricsResponse, Status> {
        Ok(GetMetricsResponse {
            metrics: Some(projection::metrics(&self.db).await.map_err(internal)?),
        })
    }

    /// The most recent events, newest first.
    pub async fn recent(&self, limit: i32) -> Result<ListRecentEventsResponse, Status> {
        if limit < 0 {
            return Err(invalid_argument(&[FieldViolation::new(
                "limit",
                "must not be negative",
            )]));
        }
        let limit = if limit == 0 {
            RECENT
        } else {
            i64::from(limit).min(RECENT)
        };
        let (events, _) = projection::recent(&self.db, 0, limit)
            .await
            .map_err(internal)?;
        Ok(ListRecentEventsResponse { events })
    }

    /// Metric updates until the client goes away or the server stops.
    pub fn updates(&self) -> MetricStream {
        let state = StreamState {
            db: self.db.clone(),
            changes: self.changes.clone(),
            shutdown: self.shutdown.clone(),
            last_seq: None,
            failed: false,
        };
        Box::pin(futures::stream::unfold(state, |mut st| async move {
            if st.failed {
                return None;
            }
            if st.last_seq.is_some() {
                tokio::select! {
                    _ = st.shutdown.cancelled() => return None,
                    changed = st.changes.changed() => changed.ok()?,
                }
                tokio::select! {
                    _ = st.shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(COALESCE) => {}
                }
            }
            st.changes.borrow_and_update();
            let item = next_update(&st.db, &mut st.last_seq).await;
            st.failed = item.is_err();
            Some((item, st))
        }))
    }
}

async fn next_update(
    db: &Database,
    last_seq: &mut Option<i64>,
) -> Result<StreamMetricsResponse, Status> {
    let metrics = projection::metrics(db).await.map_err(internal)?;
    // A rebuild starts the sequence again: start the feed again with it.
    let after = match *last_seq {
        Some(seen) if seen <= metrics.events_processed => seen,
        _ => 0,
    };
    let (new_events, last) = projection::recent(db, after, RECENT)
        .await
        .map_err(internal)?;
    *last_seq = Some(last);
    Ok(StreamMetricsResponse {
        metrics: Some(metrics),
        new_events,
    })
}

#[tonic::async_trait]
impl AnalyticsService for AnalyticsApi {
    async fn get_metrics(
        &self,
        _request: Request<GetMetricsRequest>,
    ) -> Result<Response<GetMetricsResponse>, Status> {
        Ok(Response::new(self.snapshot().await?))
    }

    type StreamMetricsStream = MetricStream;

    async fn stream_metrics(
        &self,
        _request: Request<StreamMetricsRequest>,
    ) -> Result<Response<Self::StreamMetricsStream>, Status> {
        Ok(Response::new(self.updates()))
    }

    async fn list_recent_events(
        &self,
        request: Request<ListRecentEventsRequest>,
    ) -> Result<Response<ListRecentEventsResponse>, Status> {
        Ok(Response::new(self.recent(request.get_ref().limit).await?))
    }

    async fn rebuild_projections(
        &self,
        request: Request<RebuildProjectionsRequest>,
    ) -> Result<Response<RebuildProjectionsResponse>, Status> {
        let caller = weft_auth::caller(&request)?;
        if !caller.is_admin() {
            return Err(Status::permission_denied(
                "rebuilding the projections needs the admin role",
            ));
        }
        tracing::info!(caller = %caller.user_id, "rebuilding the projections");
        let replayed = self
            .rewinder
            .rewind()
            .await
            .map_err(|e| Status::unavailable(format!("rebuild failed: {e}")))?;
        Ok(Response::new(RebuildProjectionsResponse {
            events_replayed: i64::try_from(replayed).unwrap_or(i64::MAX),
        }))
    }
}
