//! The admin API's request counting: a middleware around every route that times each request
//! and counts it under its route's pattern ([`crate::fleet::http_requests`]).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::app::Coordinator;

/// The middleware: times the request and counts it under its route's pattern (`unmatched`
/// for a path no route has, so a scanner cannot grow the series).
pub(crate) async fn track(
    State(app): State<Arc<Coordinator>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    app.requests.record(
        &route,
        &method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}
