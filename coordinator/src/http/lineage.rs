//! The lineage routes: a release's ancestry, what a dataset reaches (releases and the devices
//! running them), two releases side by side, and a release's Markdown model card. Thin: the
//! graph is [`crate::rules::lineage`]'s.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use ferry_shared::{ModelName, Release, Version};
use serde::Deserialize;

use crate::api::{DiffView, ImpactRelease, ImpactView, LineageView};
use crate::app::Coordinator;
use crate::http::releases::{published_release, release_view};
use crate::http::replies::{ApiResult, Failure, parse};
use crate::http::route::Route;
use crate::rules::access::Action;
use crate::rules::lineage::{self, CardContext};
use crate::store::StoreError;

/// The routes, declared with what each requires.
pub(crate) fn routes() -> Vec<Route> {
    vec![
        Route::get("/releases/{name}/{version}/lineage", Action::Read, ancestry),
        Route::get("/releases/{name}/{version}/card", Action::Read, card),
        Route::get("/releases/{name}/{a}/diff/{b}", Action::Read, diff),
        Route::get("/datasets/{id}/impact", Action::Read, impact).reads_query(),
    ]
}

/// Every release of `model`, by version.
fn releases_of(
    app: &Coordinator,
    model: &ModelName,
) -> Result<BTreeMap<Version, Release>, StoreError> {
    Ok(app
        .store
        .releases(Some(model))?
        .into_iter()
        .map(|(r, _)| (r.version.clone(), r))
        .collect())
}

fn one(
    all: &BTreeMap<Version, Release>,
    model: &ModelName,
    version: &Version,
) -> Result<Release, Failure> {
    all.get(version).cloned().ok_or_else(|| {
        Failure(
            StatusCode::NOT_FOUND,
            format!("{model} {version} is not published"),
        )
    })
}

/// Device ids running (`current`) each `(model, version)`.
fn running(app: &Coordinator) -> Result<BTreeMap<(ModelName, Version), Vec<String>>, StoreError> {
    let mut out: BTreeMap<(ModelName, Version), Vec<String>> = BTreeMap::new();
    for (id, record) in app.store.devices()? {
        for m in &record.models {
            if let Some(active) = &m.active {
                out.entry((m.model.clone(), active.clone()))
                    .or_default()
                    .push(id.to_string());
            }
        }
    }
    Ok(out)
}

async fn ancestry(
    State(app): State<Arc<Coordinator>>,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<LineageView> {
    let (model, version): (ModelName, Version) = (parse(&name)?, parse(&version)?);
    let all = releases_of(&app, &model)?;
    one(&all, &model, &version)?;
    Ok(Json(LineageView {
        model: model.to_string(),
        ancestors: lineage::ancestry(&all, &version),
        version,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImpactQuery {
    version: Option<String>,
}

async fn impact(
    State(app): State<Arc<Coordinator>>,
    Path(id): Path<String>,
    Query(query): Query<ImpactQuery>,
) -> ApiResult<ImpactView> {
    let mut all: BTreeMap<ModelName, BTreeMap<Version, Release>> = BTreeMap::new();
    for (release, _) in app.store.releases(None)? {
        all.entry(release.name.clone())
            .or_default()
            .insert(release.version.clone(), release);
    }
    let running = running(&app)?;
    let mut releases = Vec::new();
    for d in lineage::derived_from(&all, &id, query.version.as_deref()) {
        releases.push(ImpactRelease {
            devices: running
                .get(&(d.model.clone(), d.version.clone()))
                .cloned()
                .unwrap_or_default(),
            stage: app.store.stage_of(&d.model, &d.version)?,
            model: d.model.to_string(),
            version: d.version,
            how: d.how,
        });
    }
    let devices = releases.iter().map(|r| r.devices.len()).sum();
    Ok(Json(ImpactView {
        dataset: id,
        version: query.version,
        releases,
        devices,
    }))
}

async fn diff(
    State(app): State<Arc<Coordinator>>,
    Path((name, a, b)): Path<(String, String, String)>,
) -> ApiResult<DiffView> {
    let model: ModelName = parse(&name)?;
    let (a, b): (Version, Version) = (parse(&a)?, parse(&b)?);
    let all = releases_of(&app, &model)?;
    let rows = lineage::diff(&one(&all, &model, &a)?, &one(&all, &model, &b)?);
    Ok(Json(DiffView {
        model: model.to_string(),
        a,
        b,
        rows,
    }))
}

async fn card(
    State(app): State<Arc<Coordinator>>,
    Path((name, version)): Path<(String, String)>,
) -> Result<impl IntoResponse, Failure> {
    let (release, stored) = published_release(&app, &name, &version)?;
    let view = release_view(&app, release, stored)?;
    let devices = running(&app)?
        .get(&(view.release.name.clone(), view.release.version.clone()))
        .map_or(0, Vec::len);
    let text = lineage::model_card(
        &view.release,
        &CardContext {
            stage: view.stage.to_string(),
            aliases: view.aliases,
            signer: view.signer,
            devices,
        },
    );
    Ok((
        [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
        text,
    ))
}
