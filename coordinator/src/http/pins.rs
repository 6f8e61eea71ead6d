//! Pinning a device (operator or admin): `PUT /devices/{id}/pins/{model}` holds the device at
//! a version of a model whatever its alias or a rollout says; `DELETE` lets it follow its
//! alias again. A pin goes through the same admission as an alias move (the release can be
//! served; while production is gated, `prod`'s followers are pinned only to a release that
//! may serve), is audited, and the device is told at once.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use ferry_shared::wire::{DeviceId, Follow};
use ferry_shared::{ModelName, Version};

use crate::api::{PinDevice, PinView, UnpinDevice};
use crate::app::Coordinator;
use crate::http::auth::actor;
use crate::http::replies::{ApiResult, Failure, device_id, parse};
use crate::http::route::Route;
use crate::registry::admission::{By, Pointing};
use crate::rules::access::{Action, Caller};
use crate::store::pins::PinRecord;
use crate::unix_now;

/// The routes, declared with what each requires.
pub(crate) fn routes() -> Vec<Route> {
    vec![
        Route::get("/pins", Action::Read, list),
        Route::put("/devices/{id}/pins/{model}", Action::Devices, pin).model_in("model"),
        Route::delete("/devices/{id}/pins/{model}", Action::Devices, unpin).model_in("model"),
    ]
}

/// The device and how it follows `model`.
fn following(
    app: &Coordinator,
    id: &str,
    model: &ModelName,
) -> Result<(DeviceId, Follow), Failure> {
    let device = device_id(id)?;
    let record = app
        .store
        .device(&device)?
        .ok_or_else(|| Failure(StatusCode::NOT_FOUND, format!("no device {device}")))?;
    let follow = record
        .follows
        .into_iter()
        .find(|f| &f.model == model)
        .ok_or_else(|| {
            Failure(
                StatusCode::CONFLICT,
                format!("device {device} does not follow {model}"),
            )
        })?;
    Ok((device, follow))
}

async fn pin(
    State(app): State<Arc<Coordinator>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path((id, model)): Path<(String, String)>,
    Json(request): Json<PinDevice>,
) -> ApiResult<PinView> {
    let model: ModelName = parse(&model)?;
    let (device, follow) = following(&app, &id, &model)?;
    let version: Version = request.version;
    if app.store.release(&model, &version)?.is_none() {
        return Err(Failure(
            StatusCode::NOT_FOUND,
            format!("{model} {version} is not published"),
        ));
    }
    let now = unix_now();
    // The device's own agent refuses a release that does not fit it (and reports why): the
    // fleet-wide schema check is not asked here.
    app.admit(&Pointing {
        model: &model,
        alias: &follow.alias,
        version: &version,
        cohort: None,
        by: By::AliasOrRollout,
        force: true,
        now,
    })?;
    let record = PinRecord {
        version,
        by: actor(&caller, &headers),
        at: now,
        reason: request
            .reason
            .unwrap_or_else(|| "pinned by an operator".into()),
    };
    if !app.store.pin_device(&device, &model, &record)? {
        return Err(Failure(
            StatusCode::NOT_FOUND,
            format!("no device {device}"),
        ));
    }
    app.tell_followers(&model, &follow.alias);
    tracing::info!(device = %device, model = %model, version = %record.version, by = %record.by, "device pinned");
    Ok(Json(view(device.to_string(), model.to_string(), record)))
}

async fn unpin(
    State(app): State<Arc<Coordinator>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path((id, model)): Path<(String, String)>,
    body: Option<Json<UnpinDevice>>,
) -> Result<StatusCode, Failure> {
    let model: ModelName = parse(&model)?;
    // A pin must come off even when the device no longer follows the model (or is gone):
    // only telling it needs the follow.
    let device = device_id(&id)?;
    let reason = body
        .and_then(|Json(b)| b.reason)
        .unwrap_or_else(|| "unpinned by an operator".into());
    let removed = app.store.unpin_device(
        &device,
        &model,
        &actor(&caller, &headers),
        &reason,
        unix_now(),
    )?;
    if removed.is_none() {
        return Err(Failure(
            StatusCode::NOT_FOUND,
            format!("device {device} is not pinned to a version of {model}"),
        ));
    }
    if let Ok((_, follow)) = following(&app, &id, &model) {
        app.tell_followers(&model, &follow.alias);
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn list(State(app): State<Arc<Coordinator>>) -> ApiResult<Vec<PinView>> {
    Ok(Json(
        app.store
            .pins()?
            .into_iter()
            .map(|((device, model), record)| view(device, model, record))
            .collect(),
    ))
}

fn view(device: String, model: String, r: PinRecord) -> PinView {
    PinView {
        device,
        model,
        version: r.version,
        by: r.by,
        at: r.at,
        reason: r.reason,
    }
}
