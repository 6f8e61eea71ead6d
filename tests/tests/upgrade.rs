//! Upgrades keep the data: this build opens the stores earlier builds left behind
//! (`tests/fixtures/NAME`, written by `scripts/make-fixtures.sh`) and carries on from them, as
//! redb tests its file format against its previous release. Every fixture ever committed is
//! opened; none is ever regenerated.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ferry_coordinator::api::{AliasView, ReleaseView};
use ferry_shared::rollout::Phase;
use ferry_tests::{AgentSpec, Fleet, MODEL, model_bytes, wait_until};
use serde::Deserialize;

const T: Duration = Duration::from_secs(60);

/// What `ferry-fixture` wrote down about the stores it left.
#[derive(Deserialize)]
struct Expected {
    prod: String,
    releases: Vec<String>,
    rollout: String,
    device: String,
    agent_current: String,
    agent_previous: String,
    audit: Audit,
}

#[derive(Deserialize)]
struct Audit {
    entries: u64,
    head: Anchor,
}

#[derive(Deserialize)]
struct Anchor {
    seq: u64,
    hash: String,
}

fn fixtures() -> Result<Vec<PathBuf>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&root)
        .with_context(|| format!("reading {}", root.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("expected.json").exists())
        .collect();
    out.sort();
    ensure!(!out.is_empty(), "no fixtures under {}", root.display());
    Ok(out)
}

#[test]
fn stores_written_by_earlier_builds_open_and_carry_on() -> Result<()> {
    for fixture in fixtures()? {
        carries_on(&fixture).with_context(|| format!("fixture {}", fixture.display()))?;
    }
    Ok(())
}

fn carries_on(fixture: &Path) -> Result<()> {
    let expected: Expected =
        serde_json::from_slice(&std::fs::read(fixture.join("expected.json"))?)?;
    let mut fleet = Fleet::from_fixture(fixture)?;
    let c = &fleet.coordinator;

    // The registry: releases, aliases, the finished rollout, the audit chain up to its head.
    let releases: Vec<ReleaseView> = c.ctl_json(&["releases", "list", MODEL])?;
    let mut versions: Vec<String> = releases
        .iter()
        .map(|r| r.release.version.to_string())
        .collect();
    versions.sort();
    ensure!(versions == expected.releases, "releases {versions:?}");
    let aliases: Vec<AliasView> = c.ctl_json(&["alias", "list", MODEL])?;
    let prod = aliases
        .iter()
        .find(|a| a.alias == "prod")
        .context("no prod")?;
    ensure!(
        prod.version.to_string() == expected.prod,
        "prod {}",
        prod.version
    );
    ensure!(
        fleet.rollout(&expected.rollout)?.phase == Phase::Completed,
        "the rollout is no longer completed"
    );
    let anchor = format!("{}:{}", expected.audit.head.seq, expected.audit.head.hash);
    let verified: serde_json::Value = c.ctl_json(&["audit", "--verify", "--anchor", &anchor])?;
    ensure!(
        verified["broken"].is_null()
            && verified["entries"].as_u64().unwrap_or(0) >= expected.audit.entries,
        "{verified}"
    );
    ensure!(
        c.devices()?.iter().any(|d| d.id == expected.device),
        "the device record is gone"
    );

    // The agent starts on its old state directory, identity and trust, and reconnects.
    fleet.add_agent(AgentSpec {
        root_file: Some(fleet.dir.join("root-1.tuf")),
        ..AgentSpec::named("agent-1")
    })?;
    let agent = &fleet.agents[0];
    wait_until("the old agent reports to the new coordinator", T, || {
        Ok(fleet
            .coordinator
            .devices()?
            .iter()
            .any(|d| d.id == expected.device && d.connected))
    })?;
    ensure!(
        agent.current().map(|v| v.to_string()) == Some(expected.agent_current.clone())
            && agent.previous().map(|v| v.to_string()) == Some(expected.agent_previous.clone()),
        "{}",
        fleet.describe()
    );
    let status = agent.status()?;
    ensure!(status.device_id.as_deref() == Some(expected.device.as_str()));

    // And it updates: a new release through the old trust, the old version kept as previous.
    fleet.publish("9.0.0", &model_bytes(90, 256 * 1024, true))?;
    fleet.set_prod("9.0.0", "after the upgrade")?;
    fleet.wait_all_on("9.0.0", T)?;
    ensure!(
        fleet.agents[0].previous().map(|v| v.to_string()) == Some(expected.agent_current),
        "{}",
        fleet.describe()
    );
    let verified: serde_json::Value = fleet
        .coordinator
        .ctl_json(&["audit", "--verify", "--anchor", &anchor])?;
    ensure!(verified["broken"].is_null(), "{verified}");
    Ok(())
}

/// The other way round: an agent state file from a newer build is refused by name at start,
/// and the file is left as it was (an older build would otherwise overwrite what it cannot
/// read).
#[test]
fn an_agent_state_from_a_newer_build_is_refused_by_name_and_left_alone() -> Result<()> {
    let mut fleet = Fleet::start(1, None)?;
    fleet.ship("1.0.0", &model_bytes(1, 64 * 1024, true), T)?;
    let agent = &mut fleet.agents[0];
    agent.terminate()?;
    let path = agent.state_dir.join("state.json");
    let mut state: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    state["format"] = (ferry_agent::stored::STATE_FORMAT + 1).into();
    let newer = serde_json::to_vec_pretty(&state)?;
    std::fs::write(&path, &newer)?;

    agent.start()?;
    wait_until("the agent to refuse the newer state", T, || {
        Ok(!agent.is_alive() && agent.log().contains("written by a newer ferry-agent"))
    })?;
    ensure!(
        std::fs::read(&path)? == newer,
        "the newer state was rewritten"
    );
    Ok(())
}
