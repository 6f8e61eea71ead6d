//! The fleet dashboard: one page and its script, embedded in the binary (no CDN, nothing
//! fetched from elsewhere). The page itself is public and holds no data; it reads the admin
//! API with the token the operator gives it (the read-only viewer token suffices) and
//! refreshes itself every five seconds.

use axum::http::header;
use axum::response::IntoResponse;

/// The page.
const INDEX: &str = include_str!("dashboard/index.html");
/// Its script.
const SCRIPT: &str = include_str!("dashboard/dashboard.js");

/// Only this origin's script and API; styles inline; never framed.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// `GET /`.
pub(crate) async fn index() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INDEX,
    )
}

/// `GET /dashboard.js`.
pub(crate) async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        SCRIPT,
    )
}
