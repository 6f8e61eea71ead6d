//! The offline bundle route: `GET /releases/{name}/{version}/bundle` streams a bundle
//! ([`crate::registry::bundle`]) as it is written, one chunk in memory. It carries the model's
//! bytes, so it needs the right to act on devices (operators, admins), not merely to read.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, Query, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use ferry_shared::rollout::selector::Selector;
use ferry_shared::wire::DeviceId;
use serde::Deserialize;
use tracing::{info, warn};

use crate::app::Coordinator;
use crate::http::auth::actor;
use crate::http::replies::{Failure, parse};
use crate::http::route::Route;
use crate::registry::bundle::{BundleRequest, BundleWriteError, plan_bundle, write_bundle};
use crate::rules::access::{Action, Caller};
use crate::unix_now;

/// How long a bundle's snapshot stays valid unless asked otherwise, in days.
pub(crate) const DEFAULT_VALID_DAYS: u64 = 30;

/// The routes, declared with what each requires.
pub(crate) fn routes() -> Vec<Route> {
    vec![
        // A bundle carries the model's bytes out of the coordinator for devices: an
        // operator's act on devices, not a read.
        Route::get(
            "/releases/{name}/{version}/bundle",
            Action::Devices,
            release_bundle,
        )
        .model_in("name")
        .reads_query(),
    ]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BundleQuery {
    for_version: Option<String>,
    accelerator: Option<String>,
    valid_days: Option<u64>,
    /// Device ids, comma-separated.
    seal_for: Option<String>,
    /// A cohort selector.
    seal_for_cohort: Option<String>,
}

async fn release_bundle(
    State(app): State<Arc<Coordinator>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path((name, version)): Path<(String, String)>,
    Query(query): Query<BundleQuery>,
) -> Result<Response, Failure> {
    let request = BundleRequest {
        model: parse(&name)?,
        version: parse(&version)?,
        for_version: query.for_version.as_deref().map(parse).transpose()?,
        accelerator: query.accelerator.as_deref().map(parse).transpose()?,
        valid_days: query.valid_days.unwrap_or(DEFAULT_VALID_DAYS),
        seal_for: query
            .seal_for
            .as_deref()
            .map(|ids| {
                ids.split(',')
                    .map(|id| {
                        DeviceId::parse(id.trim()).ok_or_else(|| {
                            Failure(
                                StatusCode::BAD_REQUEST,
                                format!("`{id}` is not a device id"),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default(),
        seal_for_cohort: query
            .seal_for_cohort
            .as_deref()
            .map(|s| {
                Selector::parse(s).map_err(|e| Failure(StatusCode::BAD_REQUEST, e.to_string()))
            })
            .transpose()?,
    };
    let now = unix_now();
    let plan = plan_bundle(&app, &request, now)?;
    let chunks = plan.chunks();
    // The model's bytes leave the coordinator: who took them, for which devices.
    app.store.record(crate::store::audit::Change {
        at: now,
        actor: &actor(&caller, &headers),
        action: "bundle.create",
        subject: format!("{} {}", request.model, request.version),
        detail: format!(
            "for {}; {} chunk(s); snapshot valid {} day(s); {}",
            request.for_version.as_ref().map_or_else(
                || "any device (every chunk)".to_owned(),
                |v| format!("devices on {v}")
            ),
            chunks,
            request.valid_days,
            match plan.sealed_for() {
                0 => "not sealed".to_owned(),
                n => format!("sealed for {n} device(s)"),
            }
        ),
    })?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let writer = app.clone();
    tokio::spawn(async move {
        match write_bundle(&writer, plan, &tx).await {
            Ok(size) => info!(model = %request.model, version = %request.version,
                for_version = ?request.for_version, chunks, size, "bundle written"),
            Err(BundleWriteError::Gone) => {}
            Err(e) => warn!(model = %request.model, version = %request.version, "bundle: {e}"),
        }
    });
    // A failure mid-way ends the body with an error, so the reader sees a broken transfer
    // rather than a short file.
    let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        let piece = rx.recv().await?;
        Some((piece.map(Bytes::from).map_err(std::io::Error::other), rx))
    }));
    Ok((
        [
            (CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}-{version}.fbundle\""),
            ),
        ],
        body,
    )
        .into_response())
}
