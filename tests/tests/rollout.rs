//! Staged rollouts end to end on real processes: a bad version's health reports, or its error
//! rate as the application reports it through the agents' metrics sockets, roll the whole
//! rollout back and every agent returns to the old version; a coordinator restarted in the
//! middle of a rollout resumes exactly where it was.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ferry_shared::rollout::Phase;
use ferry_tests::{Fleet, MODEL, model_bytes, wait_until};

const T: Duration = Duration::from_secs(60);
const MIB: usize = 1024 * 1024;

/// A plan file: two waves, gated on install and health reports.
fn plan_file(fleet: &Fleet, id: &str, version: &str, approval: bool) -> Result<std::path::PathBuf> {
    plan_with(fleet, id, version, approval, None)
}

/// A gate on the error rate (the test then plays the model server).
fn error_gate() -> Option<serde_json::Value> {
    Some(serde_json::json!(
        {"kind": "ErrorRateIncrease", "threshold": 0.05, "min_samples": 200}
    ))
}

/// Two waves gated on install and health reports, and on `extra` when given.
fn plan_with(
    fleet: &Fleet,
    id: &str,
    version: &str,
    approval: bool,
    extra: Option<serde_json::Value>,
) -> Result<std::path::PathBuf> {
    let mut gates = serde_json::json!([
        {"kind": "InstallFailures", "threshold": 0.0, "min_samples": 1},
        {"kind": "HealthFailures", "threshold": 0.0, "min_samples": 1},
    ]);
    if let (Some(gate), Some(list)) = (extra, gates.as_array_mut()) {
        list.push(gate);
    }
    let plan = serde_json::json!({
        "id": id,
        "model": MODEL,
        "version": version,
        "reason": "e2e",
        "waves": [
            {"percent": 50.0, "bake_secs": 1, "gates": gates},
            {"percent": 100.0, "bake_secs": 1, "gates": gates, "approval": approval},
        ],
    });
    let path = fleet.dir.join(format!("{id}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&plan)?)?;
    Ok(path)
}

/// A fleet of `agents` on 1.0.0 with `prod` there, 2.0.0 published (`healthy` or failing
/// every health check), and a two-wave rollout of it created; returns the fleet, the
/// rollout's id and the agents in its first wave.
fn rollout_started(
    agents: usize,
    healthy: bool,
    stem: &str,
    approval: bool,
    extra_gate: Option<serde_json::Value>,
) -> Result<(Fleet, String, Vec<usize>)> {
    let fleet = Fleet::start(agents, None)?;
    fleet.publish("1.0.0", &model_bytes(1, MIB, true))?;
    fleet.set_prod("1.0.0", "base")?;
    fleet.wait_all_on("1.0.0", T)?;
    fleet.publish("2.0.0", &model_bytes(2, MIB, healthy))?;
    let (id, canary) = fleet.id_splitting(stem, 50)?;
    let plan = plan_with(&fleet, &id, "2.0.0", approval, extra_gate)?;
    fleet
        .coordinator
        .ctl(&["rollout", "create", "--plan", &plan.to_string_lossy()])?;
    Ok((fleet, id, canary))
}

#[test]
fn a_bad_versions_health_reports_roll_the_fleet_back() -> Result<()> {
    // 2.0.0 fails every device's health check.
    let (fleet, id, canary) = rollout_started(4, false, "bad", false, None)?;

    fleet.wait_rollout(&id, Phase::RolledBack, T, |_| Ok(()))?;
    let view = fleet.rollout(&id)?;
    ensure!(
        view.waves_in_force == 1,
        "never left the first wave: {view:?}"
    );
    let reason = view.reason.clone().unwrap_or_default();
    ensure!(reason.contains("HealthFailures"), "{reason}");
    ensure!(view.devices.health_failed >= 1, "{view:?}");
    // Listed among the rollouts changed last, no longer among the unfinished ones.
    let listed = |query: &str| -> Result<Vec<String>> {
        let reply = fleet
            .coordinator
            .get(&format!("/api/v1/rollouts{query}"), "viewer")?;
        ensure!(reply.status == 200, "{query}: {}", reply.body);
        let views: Vec<serde_json::Value> = serde_json::from_str(&reply.body)?;
        Ok(views.iter().map(|v| v["id"].to_string()).collect())
    };
    ensure!(listed("?active=true")?.is_empty());
    ensure!(listed("?newest=1")? == [format!("{id:?}")]);
    ensure!(listed("?newest=0")?.is_empty());
    ensure!(
        fleet
            .coordinator
            .get("/api/v1/rollouts?newest=-1", "viewer")?
            .status
            == 400
    );
    // Every agent ends on the old version; only canaries ever tried the new one.
    fleet.wait_all_on("1.0.0", T)?;
    for (i, agent) in fleet.agents.iter().enumerate() {
        let tried = agent.log().contains("2.0.0");
        ensure!(
            canary.contains(&i) || !tried,
            "agent {i} outside the canary wave touched 2.0.0"
        );
    }
    ensure!(
        fleet.prod()?.to_string() == "1.0.0",
        "the alias never moved"
    );
    Ok(())
}

#[test]
fn a_version_whose_error_rate_rises_is_rolled_back_from_its_canaries() -> Result<()> {
    // 2.0.0 loads and passes its health check, but fails 30 % of requests (1.0.0: 1 %).
    let (fleet, id, canary) = rollout_started(4, true, "errors", false, error_gate())?;
    fleet.wait_rollout(&id, Phase::RolledBack, T, |f| {
        f.serve_requests(100, |v| if v == "2.0.0" { 30 } else { 1 })
    })?;
    let view = fleet.rollout(&id)?;
    ensure!(view.waves_in_force == 1, "{view:?}");
    let reason = view.reason.clone().unwrap_or_default();
    ensure!(reason.contains("ErrorRateIncrease"), "{reason}");
    let gate = view
        .gates
        .iter()
        .find(|g| format!("{:?}", g.gate.kind) == "ErrorRateIncrease")
        .context("error-rate gate reported")?;
    ensure!(gate.value.is_some_and(|v| v > 0.1), "{gate:?}");
    fleet.wait_all_on("1.0.0", T)?;
    ensure!(!canary.is_empty());
    Ok(())
}

#[test]
fn a_version_whose_scores_drift_is_rolled_back_from_its_canaries() -> Result<()> {
    // 2.0.0 loads, passes its health check and fails no more requests than 1.0.0, but the
    // scores it gives have moved: spread over 0.5–0.7 on 1.0.0, 0.65–0.85 on 2.0.0.
    let drift = serde_json::json!({
        "kind": {"Drift": {"metric": "score", "statistic": "psi"}},
        "threshold": 0.3,
        "min_samples": 200,
    });
    let (fleet, id, canary) = rollout_started(4, true, "drift", false, Some(drift))?;
    fleet.wait_rollout(&id, Phase::RolledBack, T, |f| {
        f.serve(100, |version, i| {
            let low = if version == "2.0.0" { 0.65 } else { 0.5 };
            format!("ok 9 score={:.4}", low + 0.2 * (i as f64 + 0.5) / 100.0)
        })
    })?;
    let view = fleet.rollout(&id)?;
    ensure!(view.waves_in_force == 1, "{view:?}");
    let reason = view.reason.clone().unwrap_or_default();
    ensure!(reason.contains("Drift"), "{reason}");
    let gate = view
        .gates
        .iter()
        .find(|g| format!("{:?}", g.gate.kind).starts_with("Drift"))
        .context("drift gate reported")?;
    ensure!(gate.value.is_some_and(|v| v > 0.3), "{gate:?}");
    ensure!(gate.samples >= 200, "{gate:?}");
    fleet.wait_all_on("1.0.0", T)?;
    ensure!(!canary.is_empty());
    Ok(())
}

#[test]
fn a_coordinator_restarted_mid_rollout_resumes_where_it_was() -> Result<()> {
    let (mut fleet, id, canary) = rollout_started(3, true, "good", true, None)?;

    fleet.wait_rollout(&id, Phase::AwaitingApproval, T, |_| Ok(()))?;
    for (i, agent) in fleet.agents.iter().enumerate() {
        let want = if canary.contains(&i) {
            "2.0.0"
        } else {
            "1.0.0"
        };
        wait_until(&format!("agent {i} on {want}"), T, || {
            Ok(agent.current().map(|v| v.to_string()).as_deref() == Some(want))
        })?;
    }

    let before = fleet.rollout(&id)?.gate_history;
    ensure!(!before.is_empty(), "the engine measured the gates");
    fleet.coordinator.restart()?;
    let view = fleet.rollout(&id)?;
    ensure!(
        view.phase == Phase::AwaitingApproval && view.waves_in_force == 1,
        "resumed as it was: {view:?}"
    );
    // The gates' values over time came through the restart: the chart keeps its start.
    ensure!(
        view.gate_history.first() == before.first(),
        "{:?} then {:?}",
        before.first(),
        view.gate_history.first()
    );
    // A conflicting rollout for the same model and cohort is refused while this one runs.
    let other = plan_file(&fleet, "conflicting", "2.0.0", false)?;
    let (err, _) = fleet.coordinator.ctl_failing(&[
        "rollout",
        "create",
        "--plan",
        &other.to_string_lossy(),
    ])?;
    ensure!(err.contains("still active"), "{err}");

    fleet
        .coordinator
        .ctl(&["rollout", "approve", &id, "--reason", "canary looks fine"])?;
    fleet.wait_rollout(&id, Phase::Completed, T, |_| Ok(()))?;
    fleet.wait_all_on("2.0.0", T)?;
    ensure!(
        fleet.prod()?.to_string() == "2.0.0",
        "completion moved prod"
    );
    Ok(())
}

/// A plan whose first wave shadows the whole fleet (stage 2.0.0, serve nothing of it, gate on
/// the shadow error rate) and whose second serves it.
fn shadow_plan(fleet: &Fleet, id: &str) -> Result<std::path::PathBuf> {
    let installs = serde_json::json!([
        {"kind": "InstallFailures", "threshold": 0.0, "min_samples": 1},
        {"kind": "HealthFailures", "threshold": 0.0, "min_samples": 1},
    ]);
    let plan = serde_json::json!({
        "id": id,
        "model": MODEL,
        "version": "2.0.0",
        "reason": "e2e shadow",
        "waves": [
            {"percent": 100.0, "bake_secs": 1, "shadow": true, "gates": [
                {"kind": "InstallFailures", "threshold": 0.0, "min_samples": 1},
                {"kind": "ErrorRateIncrease", "threshold": 0.05, "min_samples": 200},
            ]},
            {"percent": 100.0, "bake_secs": 1, "gates": installs},
        ],
    });
    let path = fleet.dir.join(format!("{id}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&plan)?)?;
    Ok(path)
}

#[test]
fn a_shadow_wave_stages_the_candidate_and_judges_it_before_any_device_serves_it() -> Result<()> {
    let fleet = Fleet::start(3, None)?;
    fleet.publish("1.0.0", &model_bytes(1, MIB, true))?;
    fleet.set_prod("1.0.0", "base")?;
    fleet.wait_all_on("1.0.0", T)?;
    fleet.publish("2.0.0", &model_bytes(2, MIB, true))?;

    // A candidate whose shadow runs fail 30 % of requests: staged beside 1.0.0 everywhere,
    // judged, rolled back, and removed; no device ever serves it.
    let bad = shadow_plan(&fleet, "shadow-bad")?;
    fleet
        .coordinator
        .ctl(&["rollout", "create", "--plan", &bad.to_string_lossy()])?;
    for (i, agent) in fleet.agents.iter().enumerate() {
        wait_until(&format!("agent {i} to stage the candidate"), T, || {
            Ok(agent.candidate().map(|v| v.to_string()).as_deref() == Some("2.0.0"))
        })?;
        ensure!(agent.current().map(|v| v.to_string()).as_deref() == Some("1.0.0"));
    }
    // The agents' own status shows the candidate before their reports reach the coordinator.
    wait_until("the rollout to count three shadowing devices", T, || {
        Ok(fleet.rollout("shadow-bad")?.devices.shadowing == 3)
    })?;
    fleet.wait_rollout("shadow-bad", Phase::RolledBack, T, |f| {
        f.serve_requests(100, |v| if v == "2.0.0" { 30 } else { 1 })
    })?;
    let reason = fleet.rollout("shadow-bad")?.reason.unwrap_or_default();
    ensure!(reason.contains("ErrorRateIncrease"), "{reason}");
    for (i, agent) in fleet.agents.iter().enumerate() {
        wait_until(&format!("agent {i} to drop the candidate"), T, || {
            Ok(agent.candidate().is_none() && agent.installed()? == ["1.0.0"])
        })?;
        ensure!(agent.current().map(|v| v.to_string()).as_deref() == Some("1.0.0"));
        let last = agent.status()?.models[0].last_update.clone();
        ensure!(
            last.is_some_and(|u| u.to.to_string() == "1.0.0"),
            "agent {i} switched to the shadow candidate"
        );
    }

    // A good candidate: shadowed, then served without downloading it again, then `prod`.
    let good = shadow_plan(&fleet, "shadow-good")?;
    fleet
        .coordinator
        .ctl(&["rollout", "create", "--plan", &good.to_string_lossy()])?;
    fleet
        .wait_rollout("shadow-good", Phase::Completed, T, |f| {
            f.serve_requests(100, |_| 1)
        })
        .with_context(|| format!("{:?}", fleet.rollout("shadow-good")))?;
    // Its gate chart is of the gates it shows (the serving wave's): the shadow wave gated on
    // other kinds, whose values would be drawn against the wrong gates.
    let done = fleet.rollout("shadow-good")?;
    ensure!(
        !done.gate_history.is_empty()
            && done
                .gate_history
                .iter()
                .all(|s| s.wave == done.waves_in_force && s.values.len() == done.gates.len()),
        "{:?} charted against {:?}",
        done.gate_history,
        done.gates
    );
    fleet.wait_all_on("2.0.0", T)?;
    for (i, agent) in fleet.agents.iter().enumerate() {
        wait_until(
            &format!("agent {i} to drop the served candidate's link"),
            T,
            || Ok(agent.candidate().is_none()),
        )?;
        let log = agent.log();
        ensure!(
            log.contains("already_installed=true"),
            "agent {i} downloaded the candidate again to serve it"
        );
    }
    ensure!(
        fleet.prod()?.to_string() == "2.0.0",
        "completion moved prod"
    );
    Ok(())
}

#[test]
fn a_download_limit_lets_one_device_download_at_a_time_and_the_rollout_completes() -> Result<()> {
    let fleet = Fleet::start(3, None)?;
    fleet.publish("1.0.0", &model_bytes(1, MIB, true))?;
    fleet.set_prod("1.0.0", "base")?;
    fleet.wait_all_on("1.0.0", T)?;
    fleet.publish("2.0.0", &model_bytes(2, MIB, true))?;
    let c = &fleet.coordinator;
    let plan = serde_json::json!({
        "id": "one-at-a-time",
        "model": MODEL,
        "version": "2.0.0",
        "max_downloading": 1,
        "waves": [{"percent": 100.0, "bake_secs": 0, "gates": [
            {"kind": "InstallFailures", "threshold": 0.0, "min_samples": 3},
        ]}],
    });
    let path = fleet.dir.join("one-at-a-time.json");
    std::fs::write(&path, serde_json::to_vec(&plan)?)?;
    c.ctl(&["rollout", "create", "--plan", &path.to_string_lossy()])?;
    let done = wait_until("the rollout to complete one device at a time", T, || {
        Ok(fleet.rollout("one-at-a-time")?.phase == Phase::Completed)
    });
    if done.is_err() {
        eprintln!("{}", c.ctl(&["rollout", "status", "one-at-a-time"])?);
        eprintln!("{}", c.ctl(&["audit", "--action", "rollout"])?);
    }
    done?;
    fleet.wait_all_on("2.0.0", T)?;
    // The engine's slot hand-offs are in the audit trail: never more than one at once, and
    // every device had its turn.
    let trail = c.ctl(&["audit", "--action", "rollout.download-slots", "--json"])?;
    let entries: Vec<serde_json::Value> = serde_json::from_str(&trail)?;
    let held: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["detail"].as_str())
        .collect();
    ensure!(!held.is_empty(), "no slot was ever handed out: {trail}");
    ensure!(
        held.iter()
            .all(|d| d.starts_with("1 device(s)") || d.starts_with("0 device(s)")),
        "{held:?}"
    );
    ensure!(
        held.iter().filter(|d| d.starts_with("1 device(s)")).count() >= 3,
        "each of the three had a slot: {held:?}"
    );
    let view = fleet.rollout("one-at-a-time")?;
    ensure!(view.max_downloading == Some(1), "{view:?}");
    Ok(())
}

#[test]
fn a_rollouts_devices_are_listed_by_where_they_stand_a_page_at_a_time() -> Result<()> {
    use ferry_coordinator::api::{RolloutDevicePage, Standing};
    // Four devices; the first wave's devices take 2.0.0, the second waits for approval.
    let (fleet, id, canary) = rollout_started(4, true, "listed", true, None)?;
    fleet.wait_rollout(&id, Phase::AwaitingApproval, T, |_| Ok(()))?;
    let view = fleet.rollout(&id)?;
    let listed = |standing: &str, extra: &[&str]| -> Result<RolloutDevicePage> {
        let mut args = vec!["rollout", "devices", &id, "--standing", standing];
        args.extend_from_slice(extra);
        fleet.coordinator.ctl_json(&args)
    };
    let ids_of = |agents: &[usize]| -> Result<Vec<String>> {
        let mut ids = agents
            .iter()
            .map(|i| fleet.agents[*i].status()?.device_id.context("no id"))
            .collect::<Result<Vec<_>>>()?;
        ids.sort();
        Ok(ids)
    };

    // Each count is the length of its list, and the list names the right devices.
    let on_target = listed("on_target", &[])?;
    ensure!(on_target.standing == Standing::OnTarget);
    ensure!(
        on_target.total == view.devices.on_target,
        "{on_target:?} {view:?}"
    );
    let names: Vec<String> = on_target.devices.iter().map(|d| d.id.clone()).collect();
    ensure!(names == ids_of(&canary)?, "{names:?}");
    ensure!(on_target.devices.iter().all(|d| d.wave == 1
        && d.current.as_ref().map(ToString::to_string).as_deref() == Some("2.0.0")
        && d.standings.contains(&Standing::Targeted)));
    ensure!(listed("targeted", &[])?.total == view.devices.targeted);
    ensure!(listed("health_failed", &[])?.total == 0);

    // The whole cohort a device a page, in id order, each once.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut extra = vec!["--limit", "1"];
        if let Some(a) = &after {
            extra.extend(["--after", a.as_str()]);
        }
        let page = listed("cohort", &extra)?;
        ensure!(page.total == 4 && page.devices.len() <= 1, "{page:?}");
        seen.extend(page.devices.iter().map(|d| d.id.clone()));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    ensure!(seen == ids_of(&[0, 1, 2, 3])?, "{seen:?}");

    // What the API refuses, in words; a viewer may read the lists.
    let path = format!("/api/v1/rollouts/{id}/devices");
    for (query, status, words) in [
        ("?standing=asleep", 400, "no standing"),
        ("?limit=0", 400, "limit must be"),
        ("?limit=100000", 400, "limit must be"),
        ("?colour=red", 400, "unknown field"),
    ] {
        let reply = fleet.coordinator.get(&format!("{path}{query}"), "viewer")?;
        ensure!(
            reply.status == status && reply.body.contains(words),
            "{query}: {} {}",
            reply.status,
            reply.body
        );
    }
    let reply = fleet
        .coordinator
        .get("/api/v1/rollouts/nope/devices", "viewer")?;
    ensure!(reply.status == 404, "{}", reply.body);
    ensure!(
        fleet
            .coordinator
            .ctl(&["rollout", "devices", &id, "--standing", "asleep"])
            .is_err(),
        "ferryctl took an unknown standing"
    );
    Ok(())
}
