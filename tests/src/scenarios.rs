//! Fleets in the states the fleet-view tests (and the dashboard check) look at.

use std::time::Duration;

use anyhow::Result;

use ferry_coordinator::api::{BehindReason, FragmentationReport};
use ferry_shared::rollout::Phase;

use crate::fleet::{AgentSpec, Fleet, MODEL, model_bytes};
use crate::wait::wait_until;

const T: Duration = Duration::from_secs(60);
const MIB: usize = 1024 * 1024;

/// Three agents (two CPU, one GPU) with `prod` at 2.0.0, the GPU one rolled back by hand to
/// 1.0.0 (so it is behind, "pinned"); returns once the coordinator knows it.
pub fn fragmented_fleet() -> Result<Fleet> {
    let mut fleet = Fleet::start(2, None)?;
    fleet.add_agent(AgentSpec {
        accelerator: "gpu".into(),
        ..AgentSpec::named("agent-gpu")
    })?;
    fleet.publish("1.0.0", &model_bytes(1, MIB, true))?;
    fleet.set_prod("1.0.0", "base")?;
    fleet.wait_all_on("1.0.0", T)?;
    fleet.publish("2.0.0", &model_bytes(2, MIB, true))?;
    fleet.set_prod("2.0.0", "next")?;
    fleet.wait_all_on("2.0.0", T)?;
    fleet.agents[2].rollback()?;
    // Until the coordinator says the device is pinned by hand: `wait_all_on` reads the agents'
    // own state, so the coordinator may still hold the gpu device's report from the middle of
    // its update to 2.0.0 (running 1.0.0, fetching 2.0.0: one device behind, updating).
    wait_until("the hand rollback to be reported", T, || {
        let r: FragmentationReport = fleet.coordinator.ctl_json(&["fleet", "fragmentation"])?;
        Ok(r.models.first().is_some_and(|m| {
            m.overall.behind.len() == 1 && m.overall.behind[0].reason == BehindReason::Pinned
        }))
    })?;
    Ok(fleet)
}

/// Publishes 3.0.0 and starts rollout `canary-3` of it (a 1 % wave, then 100 % after
/// approval), returning once it waits for approval. The cohort leaves out the GPU device (the
/// one [`fragmented_fleet`] rolled back by hand), so the canary never lifts it past its target
/// and the fleet keeps exactly one device behind, pinned: wave membership hashes device ids,
/// which differ per run.
pub fn rollout_awaiting_approval(fleet: &Fleet) -> Result<()> {
    fleet.publish("3.0.0", &model_bytes(3, MIB, true))?;
    let plan = serde_json::json!({
        "id": "canary-3", "model": MODEL, "version": "3.0.0", "reason": "dashboard",
        "cohort": "accelerator!=gpu",
        "waves": [
            {"percent": 1, "bake_secs": 1, "gates": [
                {"kind": "InstallFailures", "threshold": 0.0, "min_samples": 1}]},
            {"percent": 100, "bake_secs": 1, "approval": true},
        ],
    });
    let path = fleet.dir.join("canary.json");
    std::fs::write(&path, serde_json::to_vec(&plan)?)?;
    fleet
        .coordinator
        .ctl(&["rollout", "create", "--plan", &path.to_string_lossy()])?;
    fleet.wait_rollout("canary-3", Phase::AwaitingApproval, T, |_| Ok(()))?;
    Ok(())
}

/// The offline root ceremony against the fleet's coordinator: two root keys (both must
/// sign), the fleet's publisher key, the coordinator's snapshot key; the root is signed,
/// pushed to the coordinator, and its file returned for the agents' `root_file`.
pub fn root_ceremony(fleet: &Fleet) -> Result<std::path::PathBuf> {
    let c = &fleet.coordinator;
    let trust: ferry_coordinator::api::TrustView = c.ctl_json(&["keys", "root", "status"])?;
    let path = |name: &str| fleet.dir.join(name).to_string_lossy().into_owned();
    for holder in ["root-a", "root-b"] {
        c.ctl(&["keys", "generate", "--out", &path(&format!("{holder}.key"))])?;
    }
    let root = path("root-1.tuf");
    c.ctl(&[
        "keys",
        "root",
        "init",
        "--root-key",
        &path("root-a.key.pub"),
        "--root-key",
        &path("root-b.key.pub"),
        "--root-threshold",
        "2",
        "--publisher",
        &format!("{}.pub", fleet.key.display()),
        "--snapshot-key",
        &trust.snapshot_key,
        "--out",
        &root,
    ])?;
    for holder in ["root-a", "root-b"] {
        c.ctl(&[
            "keys",
            "root",
            "sign",
            &root,
            "--key",
            &path(&format!("{holder}.key")),
        ])?;
    }
    c.ctl(&["keys", "root", "push", &root])?;
    Ok(fleet.dir.join("root-1.tuf"))
}
