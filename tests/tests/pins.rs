//! Pinning a device, on real processes: an operator holds one device at a version whatever
//! its alias says; the fleet views name why it is behind; the pin outlives a coordinator
//! restart; unpinned, the device follows its alias again. Only roles that manage devices may
//! pin, only to a published release of a model the device follows, and each pin and unpin is
//! audited.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ferry_coordinator::api::{AuditEntryView, BehindReason, PinView, TokenRole};
use ferry_tests::{Fleet, MODEL, model_bytes, wait_until};

const MIB: usize = 1024 * 1024;
const T: Duration = Duration::from_secs(60);

#[test]
fn a_pinned_device_runs_its_version_until_unpinned_whatever_its_alias_says() -> Result<()> {
    let mut fleet = Fleet::start(3, None)?;
    for (i, v) in ["1.0.0", "2.0.0", "3.0.0"].iter().enumerate() {
        fleet.publish(v, &model_bytes(i as u64 + 1, MIB, true))?;
    }
    fleet.set_prod("1.0.0", "base")?;
    fleet.wait_all_on("1.0.0", T)?;
    let c = &fleet.coordinator;
    let pinned = c
        .devices()?
        .into_iter()
        .find(|d| d.labels.get("name") == Some(&fleet.agents[0].name))
        .context("agent 0 listed")?
        .id;

    // Pinned ahead of its alias: it moves; the others stay.
    c.ctl(&[
        "devices",
        "pin",
        &pinned,
        MODEL,
        "2.0.0",
        "--reason",
        "try the fix here",
    ])?;
    wait_until("the pinned device on 2.0.0", T, || {
        Ok(fleet.agents[0].runs(MODEL, "2.0.0"))
    })?;
    ensure!(fleet.agents[1].runs(MODEL, "1.0.0") && fleet.agents[2].runs(MODEL, "1.0.0"));

    // The alias moves past it: the others follow, it stays, and the views say why.
    fleet.set_prod("3.0.0", "next")?;
    wait_until("the others on 3.0.0", T, || {
        Ok(fleet.agents[1].runs(MODEL, "3.0.0") && fleet.agents[2].runs(MODEL, "3.0.0"))
    })?;
    ensure!(fleet.agents[0].runs(MODEL, "2.0.0"), "the pin did not hold");
    let (reason, detail) = fleet
        .coordinator
        .behind(&fleet.agents[0].name, Some(MODEL))?
        .context("the pinned device is not listed behind")?;
    ensure!(
        reason == BehindReason::Pinned
            && detail.as_deref() == Some("pinned to 2.0.0 by an operator"),
        "{reason:?} {detail:?}"
    );

    // The pin is stored: a restarted coordinator keeps it.
    fleet.coordinator.restart()?;
    let pins: Vec<PinView> = fleet.coordinator.ctl_json(&["devices", "pins"])?;
    ensure!(
        pins.len() == 1 && pins[0].device == pinned && pins[0].version.to_string() == "2.0.0",
        "{pins:?}"
    );
    ensure!(pins[0].reason == "try the fix here");

    // Who may pin, and what.
    let c = &fleet.coordinator;
    for role in [TokenRole::Viewer, TokenRole::Approver, TokenRole::Publisher] {
        let token = c.create_token(&format!("t-{role}"), role)?;
        let out = c.ctl_output_as(&token, &["devices", "pin", &pinned, MODEL, "1.0.0"])?;
        ensure!(!out.status.success(), "a {role} token pinned a device");
    }
    let (err, _) = c.ctl_failing(&["devices", "pin", &pinned, MODEL, "9.9.9"])?;
    ensure!(err.contains("not published"), "{err}");
    let (err, _) = c.ctl_failing(&["devices", "pin", &pinned, "tokenizer", "1.0.0"])?;
    ensure!(err.contains("does not follow"), "{err}");

    // Unpinned, it follows its alias again.
    c.ctl(&[
        "devices",
        "unpin",
        &pinned,
        MODEL,
        "--reason",
        "fix confirmed",
    ])?;
    wait_until("the unpinned device on 3.0.0", T, || {
        Ok(fleet.agents[0].runs(MODEL, "3.0.0"))
    })?;
    let (err, _) = c.ctl_failing(&["devices", "unpin", &pinned, MODEL])?;
    ensure!(err.contains("not pinned"), "{err}");
    let entries: Vec<AuditEntryView> = c.ctl_json(&["audit", "--subject", &pinned])?;
    let trail: String = entries
        .iter()
        .map(|e| format!("{} {}\n", e.action, e.detail))
        .collect();
    for expected in [
        "device.pin",
        "try the fix here",
        "device.unpin",
        "fix confirmed",
    ] {
        ensure!(
            trail.contains(expected),
            "the trail lacks {expected}:\n{trail}"
        );
    }
    Ok(())
}

/// Regression: unpinning asked that the device still follow the model, so a device whose
/// configuration dropped the model kept its pin for good (every unpin refused with "does not
/// follow").
#[test]
fn a_pin_comes_off_a_device_that_no_longer_follows_the_model() -> Result<()> {
    let mut fleet = Fleet::start(1, None)?;
    fleet.publish("1.0.0", &model_bytes(1, MIB, true))?;
    fleet.set_prod("1.0.0", "base")?;
    fleet.wait_all_on("1.0.0", T)?;
    let id = fleet.coordinator.devices()?[0].id.clone();
    fleet
        .coordinator
        .ctl(&["devices", "pin", &id, MODEL, "1.0.0", "--reason", "hold"])?;
    // The device now follows another model only.
    let agent = &mut fleet.agents[0];
    agent.kill();
    let config = std::fs::read_to_string(&agent.config)?;
    let other = config.replace(&format!("model = \"{MODEL}\""), "model = \"other\"");
    ensure!(
        other != config,
        "the agent's configuration names no model line"
    );
    std::fs::write(&agent.config, other)?;
    agent.start()?;
    wait_until("the device to follow only the other model", T, || {
        let device = fleet
            .coordinator
            .devices()?
            .into_iter()
            .find(|d| d.id == id);
        Ok(device.is_some_and(|d| d.follows.iter().all(|f| f.model.as_str() != MODEL)))
    })?;
    fleet
        .coordinator
        .ctl(&["devices", "unpin", &id, MODEL, "--reason", "model dropped"])?;
    let pins: Vec<PinView> = fleet.coordinator.ctl_json(&["devices", "pins"])?;
    ensure!(pins.is_empty(), "{pins:?}");
    Ok(())
}
