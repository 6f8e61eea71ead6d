//! The fleet routes: every device with its reported state, the fleet's status, and version
//! fragmentation with its history.

use std::sync::Arc;

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use ferry_shared::ModelName;
use ferry_shared::wire::DeviceId;
use serde::Deserialize;

use crate::api::{DeviceTransferView, DeviceView, FleetStatus, FragmentationReport, ServedFigures};
use crate::app::Coordinator;
use crate::fleet::device_transfers::merged;
use crate::fleet::views::{self, Gathered, GatheredDevice};
use crate::http::replies::{ApiResult, Failure, parse};
use crate::http::route::Route;
use crate::rules::access::Action;
use crate::store::enrollment::RevokedDevice;
use crate::unix_now;

/// The routes, declared with what each requires.
pub(crate) fn routes() -> Vec<Route> {
    vec![
        Route::get("/devices", Action::Read, list_devices).reads_query(),
        Route::get("/devices/{id}", Action::Read, show_device),
        Route::get("/fleet/status", Action::Read, fleet_status).reads_query(),
        Route::get("/fleet/fragmentation", Action::Read, fleet_fragmentation).reads_query(),
    ]
}

/// A page of the device list: devices in id order after `after`, at most `limit` (all of
/// them without either), only those `q` matches when given.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DevicePage {
    after: Option<String>,
    limit: Option<usize>,
    q: Option<String>,
}

/// What a device search matches: `key=value` a label exactly; other text a part of the id
/// or a whole label value.
enum DeviceQuery<'a> {
    Label(&'a str, &'a str),
    Text(&'a str),
}

impl<'a> DeviceQuery<'a> {
    fn parse(q: &'a str) -> Self {
        match q.split_once('=') {
            Some((key, value)) => DeviceQuery::Label(key.trim(), value.trim()),
            None => DeviceQuery::Text(q.trim()),
        }
    }

    fn matches(&self, id: &str, labels: &BTreeMap<String, String>) -> bool {
        match *self {
            DeviceQuery::Label(key, value) => labels.get(key).is_some_and(|v| v == value),
            DeviceQuery::Text(text) => id.contains(text) || labels.values().any(|v| v == text),
        }
    }
}

async fn list_devices(
    State(app): State<Arc<Coordinator>>,
    Query(page): Query<DevicePage>,
) -> ApiResult<Vec<DeviceView>> {
    let revoked = app.store.revoked_devices()?;
    let mut devices = Gathered::read(&app)?.devices;
    devices.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    let after = page.after.unwrap_or_default();
    let query = page.q.as_deref().map(DeviceQuery::parse);
    let views = devices
        .into_iter()
        .filter(|(id, ..)| id.as_str() > after.as_str())
        .filter(|(id, r, ..)| {
            query
                .as_ref()
                .is_none_or(|q| q.matches(id.as_str(), &r.labels))
        })
        .take(page.limit.unwrap_or(usize::MAX))
        .map(|device| device_view(device, &revoked))
        .collect();
    Ok(Json(views))
}

/// `GET /devices/{id}`: one device as the list shows it.
async fn show_device(
    State(app): State<Arc<Coordinator>>,
    Path(id): Path<String>,
) -> ApiResult<DeviceView> {
    let revoked = app.store.revoked_devices()?;
    let not_found = || Failure(StatusCode::NOT_FOUND, format!("no device {id}"));
    let parsed = DeviceId::parse(&id).ok_or_else(not_found)?;
    // Where coordinators share a database, what the device serves is in its live row,
    // written by whichever node holds its session.
    let live = app.live_view_of(&parsed)?;
    let device = Gathered::device(&app, &parsed, &live)?.ok_or_else(not_found)?;
    let models: std::collections::BTreeSet<&ModelName> =
        device.1.follows.iter().map(|f| &f.model).collect();
    let served = models
        .iter()
        .copied()
        .flat_map(|model| {
            live.live()
                .metrics
                .of(&device.0, model)
                .into_iter()
                .map(|(version, m)| ServedFigures {
                    model: model.to_string(),
                    version,
                    requests: m.requests,
                    errors: m.errors,
                    p95_ms: m.latency.quantile_ms(0.95),
                    custom: m
                        .custom
                        .iter()
                        .filter(|(_, t)| t.count > 0)
                        .map(|(name, t)| (name.clone(), t.sum / t.count as f64))
                        .collect(),
                })
        })
        .collect();
    let transfers = transfers_of(&app, &device.0, &models)?;
    Ok(Json(DeviceView {
        served,
        transfers,
        ..device_view(device, &revoked)
    }))
}

/// What the coordinators sent `device`, each artifact named by its release among `models`.
fn transfers_of(
    app: &Coordinator,
    device: &ferry_shared::wire::DeviceId,
    models: &std::collections::BTreeSet<&ModelName>,
) -> Result<Vec<DeviceTransferView>, Failure> {
    // This node's counts are its own row and newer; other nodes' rows are as last written.
    let others = app
        .store
        .device_transfers(device)?
        .into_iter()
        .filter(|(node, _)| *node != app.node)
        .map(|(_, files)| files);
    let sent = merged(std::iter::once(app.transfers_by_device.of(device)).chain(others));
    if sent.is_empty() {
        return Ok(Vec::new());
    }
    let mut named = BTreeMap::new();
    for model in models {
        for (release, _) in app.store.releases(Some(model))? {
            for v in &release.variants {
                named.insert(
                    v.hash,
                    (
                        (release.name.to_string(), release.version.clone()),
                        v.file_name.to_string(),
                        v.size,
                    ),
                );
            }
        }
    }
    Ok(sent
        .into_iter()
        .map(|(file, t)| {
            let known = named.get(&file);
            DeviceTransferView {
                file,
                release: known.map(|k| k.0.clone()),
                file_name: known.map(|k| k.1.clone()),
                size: known.map(|k| k.2),
                wire_bytes: t.wire_bytes,
                chunks: t.chunks,
                encodings: t.encodings,
                first_at: t.first_at,
                last_at: t.last_at,
            }
        })
        .collect())
}

fn device_view(
    (id, r, connected, last_seen): GatheredDevice,
    revoked: &BTreeMap<String, RevokedDevice>,
) -> DeviceView {
    DeviceView {
        revoked_at: revoked.get(id.as_str()).map(|r| r.at),
        id: id.to_string(),
        labels: r.labels,
        agent_version: r.agent_version,
        enrolled_at: r.enrolled_at,
        last_seen,
        connected,
        follows: r.follows,
        models: r.models,
        recent_events: r.recent_events,
        conditions: r.conditions,
        served: Vec::new(),
        transfers: Vec::new(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusQuery {
    stale_after: Option<u64>,
}

async fn fleet_status(
    State(app): State<Arc<Coordinator>>,
    Query(query): Query<StatusQuery>,
) -> ApiResult<FleetStatus> {
    let gathered = Gathered::read(&app)?;
    let stale_after = query.stale_after.unwrap_or(app.config.stale_after_secs);
    Ok(Json(views::fleet_status(
        &app,
        &gathered,
        unix_now(),
        stale_after,
    )))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FragmentationQuery {
    model: Option<String>,
    by: Option<String>,
    /// Days of history (default 7).
    days: Option<u64>,
    /// At most this many devices listed behind per cohort, the most behind first (all
    /// without it); `behind_by_reason` still counts them all.
    behind: Option<usize>,
}

async fn fleet_fragmentation(
    State(app): State<Arc<Coordinator>>,
    Query(query): Query<FragmentationQuery>,
) -> ApiResult<FragmentationReport> {
    let model: Option<ModelName> = query.model.as_deref().map(parse).transpose()?;
    let by = query.by.as_deref().filter(|b| !b.is_empty());
    let now = unix_now();
    let since = now.saturating_sub(query.days.unwrap_or(7).saturating_mul(86_400));
    let gathered = Gathered::read(&app)?;
    let mut report = views::fragmentation(&app, &gathered, model.as_ref(), by, now, Some(since))?;
    if let Some(limit) = query.behind {
        for m in &mut report.models {
            for cohort in std::iter::once(&mut m.overall).chain(&mut m.cohorts) {
                cohort.behind.truncate(limit);
            }
        }
    }
    Ok(Json(report))
}
