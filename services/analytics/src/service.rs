//! The gRPC API: the metrics, a stream of them, the recent events and the rebuild.
//! The counts are open to anyone (the dashboard is public); the event feed (recent
//! events, a stream's new events) and a rebuild need the staff role. One client holds
//! at most `--max-streams-per-client` metric streams.

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use weft_events::Database;
use weft_events::consumer::{RewindError, Rewinder};
use weft_kit::status::{FieldViolation, invalid_argument};
use weft_proto::analytics::analytics_service_server::AnalyticsService;
use weft_proto::analytics::{
    GetMetricsRequest, GetMetricsResponse, ListRecentEventsRequest, ListRecentEventsResponse,
    ListWindowsRequest, ListWindowsResponse, RebuildProjectionsRequest, RebuildProjectionsResponse,
    StreamMetricsRequest, StreamMetricsResponse,
};

use crate::projection::{self, RECENT};
use crate::windows::{self, Lateness, Range, Width};

/// The least time between two updates of one stream: a change after a quiet spell
/// goes out at once, and changes that come faster are folded into one update per this
/// much time.
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
    /// Open metric streams per client.
    pub streams: weft_kit::slots::PerClient,
    /// The metadata key a trusted proxy names the client's address in.
    pub client_ip_header: Option<String>,
    /// How late an event may be and still count in its window.
    pub lateness: Lateness,
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
    /// The highest window version sent.
    windows_seen: Option<i64>,
    lateness: Lateness,
    failed: bool,
    with_events: bool,
    /// When the last update went out.
    sent_at: Option<tokio::time::Instant>,
}

/// Who holds a stream: the signed-in user, else the client's address (from the
/// trusted proxy's metadata when configured, else the peer).
fn stream_holder<T>(req: &Request<T>, trusted_header: Option<&str>) -> String {
    if let Some(caller) = req.extensions().get::<weft_auth::Caller>() {
        return format!("user {}", caller.user_id);
    }
    let forwarded = trusted_header
        .and_then(|h| req.metadata().get(h))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<std::net::IpAddr>().ok());
    match forwarded.or_else(|| req.remote_addr().map(|a| a.ip())) {
        Some(ip) => format!("address {ip}"),
        None => "address unknown".to_owned(),
    }
}

/// Whether the caller of `req` may see the event feed (staff only: anonymous callers
/// and customers see aggregate counts).
fn sees_events<T>(req: &Request<T>) -> bool {
    req.extensions()
        .get::<weft_auth::Caller>()
        .is_some_and(weft_auth::Caller::is_staff)
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

    /// The windows `request` asks for, open to anyone (they hold counts only).
    pub async fn windows(
        &self,
        request: &ListWindowsRequest,
    ) -> Result<ListWindowsResponse, Status> {
        let start = windows::micros_of("start_time", request.start_time.as_ref());
        let end = windows::micros_of("end_time", request.end_time.as_ref());
        let range = match (start, end) {
            (Ok(start), Ok(end)) => {
                Range::new(request.width, start, end, weft_events::db::now_micros())
            }
            (start, end) => Err(start.err().into_iter().chain(end.err()).collect()),
        }
        .map_err(|violations| invalid_argument(&violations))?;
        let watermark = windows::watermark(&self.db).await.map_err(internal)?;
        let windows = windows::list(&self.db, range, self.lateness, watermark)
            .await
            .map_err(internal)?;
        Ok(ListWindowsResponse {
            windows,
            allowed_lateness: prost_types::Duration::try_from(self.lateness.0).ok(),
            watermark: (watermark > 0).then(|| weft_events::db::timestamp(watermark)),
        })
    }

    /// Metric updates until the client goes away or the server stops; with the
    /// events that arrived when `with_events`.
    pub fn updates(&self, with_events: bool) -> MetricStream {
        let state = StreamState {
            db: self.db.clone(),
            changes: self.changes.clone(),
            shutdown: self.shutdown.clone(),
            last_seq: None,
            windows_seen: None,
            lateness: self.lateness,
            failed: false,
            with_events,
            sent_at: None,
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
                // Sooner than COALESCE after the last update, wait for the rest of
                // it: what changes meanwhile joins this update.
                if let Some(at) = st.sent_at {
                    tokio::select! {
                        _ = st.shutdown.cancelled() => return None,
                        _ = tokio::time::sleep_until(at + COALESCE) => {}
                    }
                }
            }
            st.changes.borrow_and_update();
            st.sent_at = Some(tokio::time::Instant::now());
            let item = next_update(&mut st).await.map(|mut update| {
                update.sent_at = Some(std::time::SystemTime::now().into());
                update
            });
            st.failed = item.is_err();
            Some((item, st))
        }))
    }
}

async fn next_update(st: &mut StreamState) -> Result<StreamMetricsResponse, Status> {
    let db = &st.db;
    let metrics = projection::metrics(db).await.map_err(internal)?;
    // A rebuild starts the sequences again: start the feed and the windows again.
    let since = |seen: Option<i64>| match seen {
        Some(seen) if seen <= metrics.events_processed => seen,
        _ => 0,
    };
    let watermark = windows::watermark(db).await.map_err(internal)?;
    let range = Range::latest(Width::Minute, weft_events::db::now_micros());
    let (minute_windows, highest) =
        windows::changed(db, range, since(st.windows_seen), st.lateness, watermark)
            .await
            .map_err(internal)?;
    st.windows_seen = Some(highest);
    let new_events = if st.with_events {
        let (events, last) = projection::recent(db, since(st.last_seq), RECENT)
            .await
            .map_err(internal)?;
        st.last_seq = Some(last);
        events
    } else {
        st.last_seq = Some(metrics.events_processed);
        Vec::new()
    };
    Ok(StreamMetricsResponse {
        metrics: Some(metrics),
        new_events,
        sent_at: None,
        minute_windows,
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
        request: Request<StreamMetricsRequest>,
    ) -> Result<Response<Self::StreamMetricsStream>, Status> {
        let holder = stream_holder(&request, self.client_ip_header.as_deref());
        let Some(slot) = self.streams.try_open(&holder) else {
            return Err(Status::resource_exhausted(format!(
                "{holder} has {} metric streams open already; close one first",
                self.streams.max()
            )));
        };
        let stream = self.updates(sees_events(&request));
        // The slot is held for as long as the stream lives.
        Ok(Response::new(Box::pin(futures::StreamExt::map(
            stream,
            move |item| {
                let _held = &slot;
                item
            },
        ))))
    }

    async fn list_recent_events(
        &self,
        request: Request<ListRecentEventsRequest>,
    ) -> Result<Response<ListRecentEventsResponse>, Status> {
        let caller = weft_auth::caller(&request)?;
        if !caller.is_staff() {
            return Err(Status::permission_denied(
                "the event feed is for staff; GetMetrics has the counts",
            ));
        }
        Ok(Response::new(self.recent(request.get_ref().limit).await?))
    }

    async fn list_windows(
        &self,
        request: Request<ListWindowsRequest>,
    ) -> Result<Response<ListWindowsResponse>, Status> {
        Ok(Response::new(self.windows(request.get_ref()).await?))
    }

    async fn rebuild_projections(
        &self,
        request: Request<RebuildProjectionsRequest>,
    ) -> Result<Response<RebuildProjectionsResponse>, Status> {
        let caller = weft_auth::caller(&request)?;
        if !caller.is_staff() {
            return Err(Status::permission_denied(
                "rebuilding the projections needs the staff role",
            ));
        }
        tracing::info!(caller = %caller.user_id, "rebuilding the projections");
        let replayed = self.rewinder.rewind().await.map_err(|e| match e {
            RewindError::Busy { .. } => Status::aborted(e.to_string()),
            RewindError::NotRunning | RewindError::Failed(_) => {
                Status::unavailable(format!("rebuild failed: {e}"))
            }
        })?;
        Ok(Response::new(RebuildProjectionsResponse {
            events_replayed: i64::try_from(replayed).unwrap_or(i64::MAX),
        }))
    }
}
