//! The admin HTTP API that `ferryctl` and the dashboard use: every route under `/api/v1` as
//! its group declares it ([`routes`]), each behind [`crate::http::auth::guard`] with its
//! declared rule; `/healthz` and the dashboard's page need no token, `/metrics` takes either
//! bootstrap token or an API token.
//!
//! To add an admin route: write the handler in its group's file and declare it in that file's
//! `routes()` with the action it requires; nothing else names its path.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::app::Coordinator;
use crate::http::auth::{Guarded, guard};
use crate::http::route::Route;

/// Largest request body outside artifact uploads (signed manifests, JSON documents).
pub const MAX_REQUEST_BODY: usize = 4 * 1024 * 1024;

/// Every route under `/api/v1`, as the groups declare them.
pub fn routes() -> Vec<Route> {
    [
        crate::http::releases::routes(),
        crate::http::bundles::routes(),
        crate::http::uploads::routes(),
        crate::http::fleet::routes(),
        crate::http::rollouts::routes(),
        crate::http::experiments::routes(),
        crate::http::stages::routes(),
        crate::http::lineage::routes(),
        crate::http::devices::routes(),
        crate::http::pins::routes(),
        crate::http::tokens::routes(),
        crate::http::trust::routes(),
        crate::http::audit::routes(),
        crate::http::upkeep::routes(),
        crate::http::whoami::routes(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The admin API.
pub fn router(app: Arc<Coordinator>) -> Router {
    let mut api = Router::new();
    for route in routes() {
        let guarded = Guarded {
            app: app.clone(),
            rule: route.rule,
        };
        api = api.route(
            route.path,
            route
                .handler
                .route_layer(middleware::from_fn_with_state(guarded, guard)),
        );
    }
    let api = api.layer(DefaultBodyLimit::max(MAX_REQUEST_BODY));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(crate::http::metrics::metrics))
        .route("/", get(crate::http::console::index))
        .route("/console/{*name}", get(crate::http::console::asset))
        .nest("/api/v1", api)
        .layer(middleware::from_fn_with_state(
            app.clone(),
            crate::http::track_requests::track,
        ))
        .with_state(app)
}

/// `/healthz`: `ok`, or 503 with the reason while the database cannot commit (a full disk,
/// say), so that a supervisor sees what a read-only check would not.
async fn healthz(State(app): State<Arc<Coordinator>>) -> Response {
    match app.store.write_failure() {
        None => "ok".into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the database cannot commit: {why}\n"),
        )
            .into_response(),
    }
}

/// Serves the API on a bound listener until the future is dropped, over TLS when `tls` is
/// given.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Arc<Coordinator>,
) {
    crate::http::listen::serve(listener, tls, router(app)).await
}

/// Binds the admin API's listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}
