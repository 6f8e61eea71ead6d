//! Device admission routes (operator or admin): enrollment tokens (created with a number of
//! uses and an expiry, shown once, stored hashed) and revoking a device, which closes its open
//! session at once and refuses it from then on.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};

use crate::api::{CreateEnrollToken, EnrollTokenCreated, EnrollTokenView, RevokeDevice};
use crate::app::Coordinator;
use crate::http::auth::actor;
use crate::http::replies::{ApiResult, Failure, device_id, expiry, random_hex, token_name};
use crate::http::route::Route;
use crate::rules::access::{Action, Caller};
use crate::store::enrollment::{ENROLL_PREFIX, EnrollToken, RevokedDevice, enroll_hash};
use crate::unix_now;

/// The routes, declared with what each requires.
pub(crate) fn routes() -> Vec<Route> {
    vec![
        Route::get("/devices/enroll-tokens", Action::Devices, list),
        Route::post("/devices/enroll-tokens", Action::Devices, create),
        Route::post("/devices/{id}/revoke", Action::Devices, revoke),
    ]
}

fn view(id: String, t: EnrollToken) -> EnrollTokenView {
    EnrollTokenView {
        id,
        name: t.name,
        uses_left: t.uses_left,
        used: t.used,
        expires_at: t.expires_at,
        created_at: t.created_at,
        created_by: t.created_by,
    }
}

async fn create(
    State(app): State<Arc<Coordinator>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Json(request): Json<CreateEnrollToken>,
) -> Result<(StatusCode, Json<EnrollTokenCreated>), Failure> {
    let name = token_name(&request.name)?;
    let now = unix_now();
    let (id, secret) = (random_hex(8)?, random_hex(32)?);
    if request.uses == Some(0) {
        return Err(Failure(
            StatusCode::BAD_REQUEST,
            "uses must be at least 1 (leave it out for a token any number of devices may use)"
                .into(),
        ));
    }
    let expires_at = expiry(now, "expires_hours", request.expires_hours, 3600, "hours")?;
    let token = EnrollToken {
        name: name.to_owned(),
        hash: enroll_hash(&secret),
        uses_left: request.uses,
        used: 0,
        expires_at,
        created_at: now,
        created_by: actor(&caller, &headers),
        revoked_at: None,
    };
    app.store.create_enroll_token(&id, &token)?;
    Ok((
        StatusCode::CREATED,
        Json(EnrollTokenCreated {
            token: format!("{ENROLL_PREFIX}{id}_{secret}"),
            view: view(id, token),
        }),
    ))
}

async fn list(State(app): State<Arc<Coordinator>>) -> ApiResult<Vec<EnrollTokenView>> {
    Ok(Json(
        app.store
            .enroll_tokens()?
            .into_iter()
            .map(|(id, t)| view(id, t))
            .collect(),
    ))
}

async fn revoke(
    State(app): State<Arc<Coordinator>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Option<Json<RevokeDevice>>,
) -> Result<StatusCode, Failure> {
    let id = device_id(&id)?;
    let revoked = RevokedDevice {
        at: unix_now(),
        by: actor(&caller, &headers),
        reason: body
            .and_then(|Json(b)| b.reason)
            .unwrap_or_else(|| "revoked by an operator".into()),
    };
    if !app.store.revoke_device(&id, &revoked)? {
        return Err(Failure(StatusCode::NOT_FOUND, format!("no device {id}")));
    }
    // Open sessions of the device close now.
    app.sessions.revoke(&id);
    tracing::warn!(device = %id, by = %revoked.by, "device revoked: {}", revoked.reason);
    Ok(StatusCode::NO_CONTENT)
}
