//! Device admission on real processes: counted and expiring enrollment tokens, and revoking
//! an enrolled device, which closes its session at once while it keeps running the verified
//! version it has.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ferry_coordinator::api::{DeviceView, EnrollTokenCreated, EnrollTokenView, FleetStatus};
use ferry_tests::{AgentSpec, Fleet, model_bytes, wait_until};

const T: Duration = Duration::from_secs(60);

fn enroll_token(fleet: &Fleet, args: &[&str]) -> Result<String> {
    let mut all = vec!["devices", "enroll-token"];
    all.extend_from_slice(args);
    let created: EnrollTokenCreated = fleet.coordinator.ctl_json(&all)?;
    Ok(created.token)
}

fn agent_with(fleet: &mut Fleet, name: &str, token: &str) -> Result<usize> {
    fleet.add_agent(AgentSpec {
        token: Some(token.to_owned()),
        ..AgentSpec::named(name)
    })
}

fn enrolled(fleet: &Fleet) -> Result<usize> {
    let devices: Vec<DeviceView> = fleet.coordinator.ctl_json(&["devices", "list"])?;
    Ok(devices.len())
}

#[test]
fn counted_and_expiring_enrollment_tokens_and_revoking_a_device() -> Result<()> {
    let mut fleet = Fleet::start(0, None)?;
    let once = enroll_token(
        &fleet,
        &["--name", "batch-1", "--uses", "1", "--expires-hours", "24"],
    )?;
    let first = agent_with(&mut fleet, "first", &once)?;
    wait_until("the first device to enroll", T, || {
        Ok(enrolled(&fleet)? == 1)
    })?;

    // The token is spent: a second device is refused, and says why.
    let second = agent_with(&mut fleet, "second", &once)?;
    wait_until("the second device to be refused", T, || {
        Ok(fleet.agents[second].log().contains("is used up"))
    })?;
    // An expired token admits nobody.
    let expired = enroll_token(&fleet, &["--name", "old", "--expires-hours", "0"])?;
    let third = agent_with(&mut fleet, "third", &expired)?;
    wait_until("the third device to be refused", T, || {
        Ok(fleet.agents[third].log().contains("has expired"))
    })?;
    ensure!(enrolled(&fleet)? == 1, "only the first device enrolled");
    // Refused sessions are counted by reason, for an alert on their rate.
    let metrics = fleet.coordinator.get("/metrics", "viewer")?.body;
    let refused = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ferry_agent_sessions_refused_total{reason=\"enrollment\"} "))
        .and_then(|n| n.parse::<f64>().ok());
    ensure!(refused.is_some_and(|n| n >= 2.0), "{refused:?}");
    let tokens: Vec<EnrollTokenView> = fleet.coordinator.ctl_json(&["devices", "enroll-tokens"])?;
    let batch = tokens
        .iter()
        .find(|t| t.name == "batch-1")
        .context("listed")?;
    ensure!(batch.used == 1 && batch.uses_left == Some(0), "{batch:?}");

    // Revoking the enrolled device closes its session at once; it keeps its verified version.
    fleet.publish("1.0.0", &model_bytes(1, 256 * 1024, true))?;
    fleet.set_prod("1.0.0", "base")?;
    let agent = &fleet.agents[first];
    wait_until("the first device on 1.0.0", T, || {
        Ok(agent.current().map(|v| v.to_string()).as_deref() == Some("1.0.0"))
    })?;
    let id = agent.status()?.device_id.context("device id")?;
    fleet
        .coordinator
        .ctl(&["devices", "revoke", &id, "--reason", "stolen"])?;
    wait_until("the revoked device to be disconnected", T, || {
        let status: FleetStatus = fleet.coordinator.ctl_json(&["fleet", "status"])?;
        Ok(status.devices_connected == 0)
    })?;
    wait_until("the agent to hear it was revoked", T, || {
        Ok(agent.log().contains("stolen"))
    })?;
    ensure!(agent.is_alive(), "the agent keeps running");
    ensure!(agent.current().map(|v| v.to_string()).as_deref() == Some("1.0.0"));
    let audit = fleet.coordinator.get("/api/v1/audit", "admin")?.body;
    for entry in ["enroll-token.create", "device.enroll", "device.revoke"] {
        ensure!(audit.contains(entry), "no {entry} in the audit trail");
    }
    Ok(())
}
