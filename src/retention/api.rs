//! `POST /.guichet/api/v1/retention/events`: an application reports an event that starts a
//! retention clock (case closed, removal from the electoral roll, end of the school year).
//! Authenticated like the rights callbacks: the bearer secret of the activity's rights route
//! (`rights_callback_secret_file`). The citizen is named by the pseudonym that application
//! receives. Idempotent by `event_id`: the same event again is acknowledged, changes nothing.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;

use super::{ReportedEvent, RetentionError};
use crate::app::AppState;
use crate::error::GatewayError;
use crate::policy::model::RetentionStart;

pub const EVENTS_ROUTE: &str = "/.guichet/api/v1/retention/events";

pub fn routes() -> Router<AppState> {
    Router::new().route(EVENTS_ROUTE, post(report))
}

/// The body an application sends.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventBody {
    /// The application's own id for the event; a repeat with the same id changes nothing.
    event_id: String,
    activity: String,
    /// The event named in the policy (`event = "radiation"`), or `case_closed`.
    event: String,
    /// The pseudonym the application receives in `X-Guichet-Subject`.
    subject: String,
    /// When it happened: RFC 3339 or `YYYY-MM-DD`; default now.
    #[serde(default)]
    occurred_at: Option<String>,
}

fn problem(e: &GatewayError, why: &str) -> Response {
    e.respond(false, None, Some(why.to_owned()))
}

async fn report(State(app): State<AppState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let Ok(b) = serde_json::from_slice::<EventBody>(&body) else {
        return problem(
            &GatewayError::BadRequest("the body must be a retention event in JSON: event_id, activity, event, subject"),
            "bad retention event",
        );
    };
    let set = app.policies.load_full();
    let Some(activity) = set.activity(&b.activity) else {
        return problem(&GatewayError::NotFound, "retention event for an unknown activity");
    };
    let Some(route) = crate::rights::propagation::route_of(&app, &set, activity) else {
        return problem(&GatewayError::ClientUnauthorized, "retention event for an activity without a route");
    };
    if !crate::rights::callbacks::authenticated(&app, &route, &headers).await {
        return problem(&GatewayError::ClientUnauthorized, "retention event without the application's secret");
    }
    if !valid_id(&b.event_id) || b.subject.is_empty() || b.subject.len() > 256 {
        return problem(
            &GatewayError::BadRequest("event_id: 1 to 128 letters, digits, `.`, `-`, `_` or `:`; subject: a pseudonym"),
            "bad retention event id",
        );
    }
    let categories: Vec<String> = activity
        .categories
        .iter()
        .filter(|c| {
            c.retention.as_ref().is_some_and(|r| match r.from {
                RetentionStart::Event => r.event.as_deref() == Some(b.event.as_str()),
                RetentionStart::CaseClosed => b.event == "case_closed",
                _ => false,
            })
        })
        .map(|c| c.id.clone())
        .collect();
    if categories.is_empty() {
        return problem(
            &GatewayError::Unprocessable("no data category of this activity counts its retention from this event"),
            "unknown retention event",
        );
    }
    let Some(occurred_at_us) = occurred_at(&app, b.occurred_at.as_deref()) else {
        return problem(&GatewayError::BadRequest("occurred_at: RFC 3339 or YYYY-MM-DD"), "bad retention event date");
    };
    let event = ReportedEvent {
        route,
        event_id: b.event_id.clone(),
        activity: b.activity.clone(),
        event: b.event.clone(),
        subject: b.subject,
        occurred_at_us,
    };
    match app.retention.report(&event, &categories).await {
        Ok(true) => {
            (StatusCode::CREATED, axum::Json(serde_json::json!({ "event_id": b.event_id, "duplicate": false })))
                .into_response()
        }
        Ok(false) => (StatusCode::OK, axum::Json(serde_json::json!({ "event_id": b.event_id, "duplicate": true })))
            .into_response(),
        Err(RetentionError::UnknownSubject) => {
            problem(&GatewayError::NotFound, "retention event for a subject the gateway never saw")
        }
        Err(e) => {
            tracing::warn!(error = %e, "retention event: store unavailable");
            problem(&GatewayError::StoreUnavailable, "store unavailable")
        }
    }
}

fn valid_id(id: &str) -> bool {
    crate::audit::Ident::new(id.to_owned()).is_ok()
}

fn occurred_at(app: &AppState, given: Option<&str>) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    let at = match given {
        None => app.clock.now(),
        Some(s) => match time::OffsetDateTime::parse(s, &Rfc3339) {
            Ok(t) => t,
            Err(_) => {
                let date = time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).ok()?;
                date.midnight().assume_utc()
            }
        },
    };
    Some(crate::audit::event::to_micros(at))
}
