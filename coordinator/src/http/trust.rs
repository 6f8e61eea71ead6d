//! The trust routes: the coordinator's snapshot key and root chain (anyone may read), and
//! pushing the next root (admin), accepted only as a device would accept it.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use ferry_shared::ModelName;
use ferry_shared::trust::{Root, inspect_root};

use crate::api::{KeyView, RootView, TrustKey, TrustView};
use crate::app::Coordinator;
use crate::http::auth::actor;
use crate::http::replies::{ApiResult, Failure, bad_request, parse};
use crate::http::route::Route;
use crate::rules::access::{Action, Caller};
use crate::unix_now;

/// The routes, declared with what each requires.
pub(crate) fn routes() -> Vec<Route> {
    vec![
        Route::get("/trust", Action::Read, show),
        Route::post("/trust/roots", Action::Administer, push),
        Route::get("/trust/snapshot", Action::Read, snapshot).reads_query(),
        Route::get("/keys", Action::Read, list_keys),
        Route::post("/keys", Action::Administer, trust_key),
    ]
}

fn view(root: &Root) -> RootView {
    let ids = |keys: &std::collections::BTreeSet<ferry_shared::sign::KeyId>| {
        keys.iter().map(ToString::to_string).collect()
    };
    RootView {
        version: root.version,
        expires: root.expires,
        root_keys: ids(&root.root.keys),
        root_threshold: root.root.threshold,
        publishers: ids(&root.targets.keys),
        publisher_threshold: root.targets.threshold,
    }
}

async fn show(State(app): State<Arc<Coordinator>>) -> ApiResult<TrustView> {
    let roots = app
        .store
        .roots()?
        .iter()
        .filter_map(|bytes| inspect_root(bytes).ok().map(|(root, _)| view(&root)))
        .collect();
    Ok(Json(TrustView {
        snapshot_key: app.snapshot_key.public().to_string(),
        roots,
    }))
}

async fn push(
    State(app): State<Arc<Coordinator>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<RootView>), Failure> {
    let who = actor(&caller, &headers);
    match app
        .store
        .push_root(&body, &app.snapshot_key.public(), &who, unix_now())?
    {
        Ok(version) => {
            tracing::info!(version, by = %who, "root metadata accepted");
            let (root, _) =
                inspect_root(&body).map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e))?;
            Ok((StatusCode::CREATED, Json(view(&root))))
        }
        Err(why) => Err(Failure(
            StatusCode::CONFLICT,
            format!("root refused: {why}"),
        )),
    }
}

/// Query of `GET /api/v1/trust/snapshot`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotQuery {
    /// Whose snapshot (snapshots are per model).
    model: String,
}

/// The current signed snapshot of a model (bytes), or 404 before a root was pushed.
async fn snapshot(
    State(app): State<Arc<Coordinator>>,
    Query(query): Query<SnapshotQuery>,
) -> Result<Vec<u8>, Failure> {
    let model: ModelName = query
        .model
        .parse()
        .map_err(|e: ferry_shared::name::NameError| {
            Failure(StatusCode::BAD_REQUEST, e.to_string())
        })?;
    let app2 = app.clone();
    let signed = tokio::task::spawn_blocking(move || app2.snapshot(&model, unix_now()))
        .await
        .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    match signed {
        Some(bytes) => Ok(bytes.as_ref().clone()),
        None => Err(Failure(
            StatusCode::NOT_FOUND,
            "no root metadata yet: `ferryctl keys root push`".into(),
        )),
    }
}

async fn list_keys(State(app): State<Arc<Coordinator>>) -> ApiResult<Vec<KeyView>> {
    let views = app
        .store
        .publisher_keys()?
        .into_iter()
        .map(|k| KeyView {
            key_id: k.key.key_id().to_string(),
            public_key: k.key.to_string(),
            name: k.name,
            added_at: k.added_at,
            added_by: k.added_by,
        })
        .collect();
    Ok(Json(views))
}

async fn trust_key(
    State(app): State<Arc<Coordinator>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Json(request): Json<TrustKey>,
) -> Result<StatusCode, Failure> {
    let key: ferry_shared::PublicKey = parse(&request.public_key)?;
    let name = request.name.trim();
    if name.is_empty() || name.len() > 64 {
        return Err(bad_request("a key name must be 1 to 64 characters"));
    }
    let added = app
        .store
        .trust_publisher(key, name, &actor(&caller, &headers), unix_now())?;
    Ok(if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    })
}
