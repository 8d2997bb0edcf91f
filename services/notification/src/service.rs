//! The gRPC API: a user's notifications, newest first, and one notification. A
//! caller sees their own (an admin sees all); anybody else's are NOT_FOUND.

use tonic::{Request, Response, Status};
use weft_events::Database;
use weft_events::db::timestamp;
use weft_kit::paging::{page_token, parse_page_token};
use weft_kit::status::{FieldViolation, invalid_argument};
use weft_proto::notification::notification_service_server::NotificationService;
use weft_proto::notification::{
    GetNotificationRequest, GetNotificationResponse, ListNotificationsRequest,
    ListNotificationsResponse, Notification,
};

use crate::store::{self, NotificationRow};

/// The NotificationService implementation.
#[derive(Clone)]
pub struct NotificationApi {
    /// The service database.
    pub db: Database,
}

fn internal(e: sqlx::Error) -> Status {
    weft_kit::status::internal(&e)
}

/// The API view of a stored notification.
pub fn to_proto(n: &NotificationRow) -> Notification {
    Notification {
        notification_id: n.id.clone(),
        user_id: n.user_id.clone(),
        channel: n.channel as i32,
        template: n.template.clone(),
        recipient: n.recipient.clone(),
        subject: n.subject.clone(),
        status: n.status as i32,
        trigger_event_id: n.trigger_event_id.clone(),
        create_time: Some(timestamp(n.created_at)),
        sent_time: n.sent_at.map(timestamp),
    }
}

#[tonic::async_trait]
impl NotificationService for NotificationApi {
    async fn list_notifications(
        &self,
        request: Request<ListNotificationsRequest>,
    ) -> Result<Response<ListNotificationsResponse>, Status> {
        let caller = weft_auth::caller(&request)?;
        let req = request.into_inner();
        let user_id = if req.user_id.trim().is_empty() {
            caller.user_id.clone()
        } else {
            req.user_id.trim().to_owned()
        };
        let mut violations = Vec::new();
        if let Some(problem) = weft_kit::text::Text::ID.problem(&user_id) {
            violations.push(FieldViolation::new("user_id", problem));
        }
        if req.page_size < 0 {
            violations.push(FieldViolation::new("page_size", "must not be negative"));
        }
        if !violations.is_empty() {
            return Err(invalid_argument(&violations));
        }
        let size = match req.page_size {
            0 => 20,
            n => i64::from(n.min(100)),
        };
        let after = parse_page_token(&req.page_token)?;
        if !caller.may_read(&user_id) {
            return Err(Status::not_found("no notifications for that user"));
        }
        let mut rows = store::page(&self.db, &user_id, after, size + 1)
            .await
            .map_err(internal)?;
        let next_page_token = if rows.len() as i64 > size {
            rows.truncate(size as usize);
            rows.last()
                .map(|n| page_token(n.created_at, &n.id))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(ListNotificationsResponse {
            notifications: rows.iter().map(to_proto).collect(),
            next_page_token,
        }))
    }

    async fn get_notification(
        &self,
        request: Request<GetNotificationRequest>,
    ) -> Result<Response<GetNotificationResponse>, Status> {
        let caller = weft_auth::caller(&request)?;
        let id = request.get_ref().notification_id.trim().to_owned();
        if let Some(problem) = weft_kit::text::Text::ID.problem(&id) {
            return Err(invalid_argument(&[FieldViolation::new(
                "notification_id",
                problem,
            )]));
        }
        match store::get(&self.db, &id).await.map_err(internal)? {
            Some(n) if caller.may_read(&n.user_id) => Ok(Response::new(GetNotificationResponse {
                notification: Some(to_proto(&n)),
            })),
            _ => Err(Status::not_found("notification not found")),
        }
    }
}
