//! The console: one page and its scripts and styles, embedded in the binary (no CDN, nothing
//! fetched from elsewhere). The page itself is public and holds no data; it acts through the
//! admin API with the token the operator signs in with, offering only what the token's role
//! allows (`GET /api/v1/whoami`) while every route checks again. Live pages refresh every
//! five seconds.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The page.
const INDEX: &str = include_str!("console/index.html");

/// The assets under `/console/`: name, content type, text.
const ASSETS: &[(&str, &str, &str)] = &[
    ("console.css", CSS, include_str!("console/console.css")),
    ("main.js", JS, include_str!("console/main.js")),
    ("core.js", JS, include_str!("console/core.js")),
    ("charts.js", JS, include_str!("console/charts.js")),
    ("markdown.js", JS, include_str!("console/markdown.js")),
    ("pages/fleet.js", JS, include_str!("console/pages/fleet.js")),
    (
        "pages/devices.js",
        JS,
        include_str!("console/pages/devices.js"),
    ),
    (
        "pages/device.js",
        JS,
        include_str!("console/pages/device.js"),
    ),
    (
        "pages/rollouts.js",
        JS,
        include_str!("console/pages/rollouts.js"),
    ),
    (
        "pages/rollout.js",
        JS,
        include_str!("console/pages/rollout.js"),
    ),
    (
        "pages/releases.js",
        JS,
        include_str!("console/pages/releases.js"),
    ),
    (
        "pages/release.js",
        JS,
        include_str!("console/pages/release.js"),
    ),
    ("pages/audit.js", JS, include_str!("console/pages/audit.js")),
];

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Only this origin's scripts, styles and API; inline style attributes (bar widths); never
/// framed.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
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
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        INDEX,
    )
}

/// `GET /console/{*name}`: one of [`ASSETS`], or 404.
pub(crate) async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, ..)| *n == name) {
        Some((_, content_type, text)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *text,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such console file\n").into_response(),
    }
}
