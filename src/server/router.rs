//! The single composition root: the gateway's own endpoints under `/.guichet/`, the proxy for
//! everything else. Layer order is written here and nowhere else.

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};

use crate::app::AppState;
use crate::error::{GatewayError, wants_html};
use crate::health;
use crate::routing;
use crate::server::{ConnMeta, RequestId};

/// The public listener: paths under the reserved prefix go to the gateway's own router,
/// everything else straight to the proxy pipeline (no router or boxed middleware on the hot
/// path). Both are observed the same way: request id, span, log line, metrics.
#[derive(Clone)]
pub struct Public {
    own: Router,
    app: AppState,
}

impl Public {
    pub fn new(state: AppState) -> Self {
        Self { own: own_pages(state.clone()), app: state }
    }
}

impl super::Front for Public {
    async fn call(self, req: Request, conn: ConnMeta) -> Response {
        if routing::is_reserved(req.uri().path()) {
            // Boxed: the router's future is larger than the proxy's, and every request's
            // future is as large as its largest branch (it is moved into hyper's box).
            return Box::pin(super::Front::call(self.own, req, conn)).await;
        }
        let app = &self.app;
        super::middleware::observed(app, req, conn, |req, id| app.proxy.handle(req, conn, id)).await
    }
}

/// The gateway's own pages, under the reserved prefix.
fn own_pages(state: AppState) -> Router {
    let own = Router::new()
        .route("/.guichet/health/live", get(health::live))
        .route("/.guichet/health/ready", get(health::ready))
        .merge(crate::auth::routes::routes())
        // Citizen notices and the DPO register (protected by the DPO role once sign-in lands).
        .merge(crate::policy::pages::routes())
        // Citizens' consent page, receipts, and the agents' assisted-channel form.
        .merge(crate::consent::pages::routes())
        // Clear values for back-office batch jobs (bearer token per job, journaled).
        .merge(crate::crypto::batch::routes())
        // Citizens' data-subject rights requests (JSON API).
        .merge(crate::rights::api::routes())
        .merge(super::openapi::routes())
        .merge(crate::rights::callbacks::routes())
        .merge(crate::rights::rectification::routes())
        // Access and portability exports: built at once, downloaded by the session that asked.
        .merge(crate::rights::export::api::routes())
        // The demo's outbox of notices (404 unless `notify.outbox_dir` is set).
        .merge(crate::notify::outbox::routes())
        // The citizen's hub "Mes données", its rights procedures, the accessibility statement.
        .merge(crate::privacy_centre::routes())
        // The DPO's console and the supervision view (aggregates only), with their JSON API.
        .merge(crate::dpo::routes())
        // The DPO's breach register (Art. 33(5)) and its CNIL form export.
        .merge(crate::incidents::pages::routes())
        .merge(crate::retention::pages::routes())
        .merge(crate::retention::api::routes())
        // Nothing under the reserved prefix is ever proxied, even paths we do not serve.
        .route("/.guichet", any(reserved_not_found))
        .route("/.guichet/{*rest}", any(reserved_not_found))
        // Innermost on our own pages: security headers.
        .layer(axum::middleware::from_fn(super::middleware::own_pages_security_headers));
    own.fallback(reserved_not_found)
        // Outermost: request id, span, log line and metrics, as for proxied requests.
        .layer(axum::middleware::from_fn_with_state(state.clone(), super::middleware::observe))
        .with_state(state)
}

/// The admin listener's router (metrics only; bind it to loopback or a management network).
pub fn admin(state: AppState) -> Router {
    Router::new().route("/metrics", get(metrics)).with_state(state)
}

async fn reserved_not_found(req: Request) -> Response {
    let id = req.extensions().get::<RequestId>().map(|r| r.0.clone());
    GatewayError::NotFound.respond(wants_html(req.headers()), id.as_deref(), None)
}

async fn metrics(State(app): State<AppState>) -> Response {
    let body = app.metrics.encode(app.store.pool_state());
    Response::builder()
        .header("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(body.into())
        .unwrap_or_else(|_| GatewayError::Internal.into_response())
}
