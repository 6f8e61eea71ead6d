//! `/metrics` for Prometheus: gathers the fleet, its fragmentation, the active rollouts' gates
//! and the aliases' expiry from every subsystem, and renders them with
//! [`crate::fleet::prometheus`].

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferry_shared::wire::DeferReason;

use crate::app::Coordinator;
use crate::fleet::prometheus::{self, RolloutFigures, state_of};
use crate::fleet::views::{self, Gathered};
use crate::http::auth::authenticate;
use crate::http::replies::Failure;
use crate::store::StoreError;
use crate::unix_now;

/// `/metrics` for Prometheus (either token; `authorization` in the scrape config).
pub(crate) async fn metrics(State(app): State<Arc<Coordinator>>, headers: HeaderMap) -> Response {
    if let Err(refusal) = authenticate(&app, &headers, "/metrics") {
        return refusal.into_response();
    }
    let app2 = app.clone();
    match tokio::task::spawn_blocking(move || metrics_text(&app2, unix_now())).await {
        Ok(Ok(text)) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Ok(Err(e)) => Failure::from(e).into_response(),
        Err(e) => Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// The `/metrics` text.
pub(crate) fn metrics_text(app: &Coordinator, now: u64) -> Result<String, StoreError> {
    let gathered = Gathered::read(app)?;
    let status = views::fleet_status(app, &gathered, now, app.config.stale_after_secs);
    let fragmentation = views::fragmentation(app, &gathered, None, None, now, None)?;
    let mut devices: BTreeMap<(String, String, &'static str), u64> = BTreeMap::new();
    let mut failures: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut disk_free = Vec::new();
    let mut deferring: BTreeMap<(String, &'static str), u64> = BTreeMap::new();
    for (_, record, _, _) in &gathered.devices {
        if let Some((conditions, _)) = &record.conditions {
            disk_free.extend(conditions.disk.map(|d| d.free));
            for d in &conditions.deferred {
                let reason = match d.reason {
                    DeferReason::Window { .. } => "window",
                    DeferReason::Locked { .. } => "locked",
                    DeferReason::UpdateSet { .. } => "update-set",
                };
                *deferring.entry((d.model.to_string(), reason)).or_default() += 1;
            }
        }
        for m in &record.models {
            let version = m
                .active
                .as_ref()
                .map_or_else(|| "none".to_owned(), ToString::to_string);
            *devices
                .entry((m.model.to_string(), version, state_of(&m.phase)))
                .or_default() += 1;
            if let Some(e) = &m.last_error {
                *failures
                    .entry((m.model.to_string(), e.kind.to_string()))
                    .or_default() += 1;
            }
        }
    }
    let live = app.live_view()?;
    let pins = app.store.pinned_versions()?;
    let rollouts: Vec<RolloutFigures> = app
        .store
        .rollouts()?
        .into_iter()
        .filter(crate::store::rollouts::RolloutRecord::is_active)
        .map(|r| {
            let facts = crate::rollout::facts::facts_from(
                live.live(),
                &pins,
                gathered.devices.iter().map(|(id, rec, _, _)| (id, rec)),
                &r,
            );
            RolloutFigures {
                id: r.plan.id.clone(),
                model: r.plan.model.to_string(),
                phase: r.state.phase,
                waves_in_force: r.state.in_force,
                waves: r.plan.waves.len(),
                gates: ferry_shared::rollout::gates(&r.plan, &r.state, &facts, now),
            }
        })
        .collect();
    let served: BTreeMap<(String, String), (u64, u64)> = live
        .live()
        .metrics
        .totals()
        .into_iter()
        .map(|((model, version), n)| ((model.to_string(), version.to_string()), n))
        .collect();
    let mut alias_expiry = Vec::new();
    for (model, alias, record) in app.store.aliases(None)? {
        if let Some((release, _)) = app.store.release(&model, &record.version)? {
            let left = i64::try_from(release.expires).unwrap_or(i64::MAX)
                - i64::try_from(now).unwrap_or(i64::MAX);
            alias_expiry.push((model.to_string(), alias.to_string(), left));
        }
    }
    Ok(prometheus::render(&prometheus::Inputs {
        status: &status,
        fragmentation: &fragmentation,
        devices: &devices,
        failures: &failures,
        rollouts: &rollouts,
        sessions: app.presence.sessions(),
        alias_expiry: &alias_expiry,
        disk_free: &disk_free,
        deferring: &deferring,
        served: &served,
        process: &crate::fleet::process_figures::read(),
        requests: &app.requests.snapshot(),
        happened: &app.happened.snapshot(),
    }))
}
