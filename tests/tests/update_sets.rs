//! Update sets (`[[update_sets]]`) on real processes: one agent follows the detector and the
//! tokenizer as a set. `together`: both switch at once, and a tokenizer release that fails its
//! health check rolls the detector back with it; the detector then waits for the tokenizer
//! (fragmentation says so) and both go together once a fixed tokenizer is out. `ordered`:
//! the tokenizer switches and passes first, the detector after it, and neither is confirmed
//! before both passed. Killed while one member passed and the other's check runs, the agent
//! comes back with both on their previous versions, and the set switches again together.

use std::time::Duration;

use anyhow::{Result, ensure};
use ferry_coordinator::api::BehindReason;
use ferry_shared::wire::EventKind;
use ferry_tests::{Agent, Fleet, MODEL, TOKENIZER, wait_until};

const WAIT: Duration = Duration::from_secs(60);

/// Waits until the tokenizer and the detector run these versions, their switches confirmed.
fn wait_confirmed(agent: &Agent, tokenizer: &str, detector: &str) -> Result<()> {
    wait_until(
        &format!("tokenizer {tokenizer} and detector {detector}, confirmed"),
        WAIT,
        || {
            let status = agent.status()?;
            let confirmed = |model: &str, version: &str| {
                status.models.iter().any(|m| {
                    m.model == model
                        && m.last_update.as_ref().is_some_and(|u| {
                            u.outcome == "installed" && u.to.to_string() == version
                        })
                })
            };
            Ok(confirmed(TOKENIZER, tokenizer)
                && confirmed(MODEL, detector)
                && agent.runs(TOKENIZER, tokenizer)
                && agent.runs(MODEL, detector))
        },
    )?;
    Ok(())
}

/// Lets both models' next releases arrive while the application holds its lock, so the set
/// has both targets downloaded before either may switch; then lets go.
fn ship_both_under_lock(fleet: &Fleet, tokenizer: &str, tokenizer_healthy: bool) -> Result<()> {
    let agent = &fleet.agents[0];
    agent.tell("lock 600 ship both")?;
    // The agent looks at its gate every second.
    std::thread::sleep(Duration::from_millis(2500));
    fleet.publish_model(TOKENIZER, tokenizer, tokenizer_healthy)?;
    fleet.publish_model(MODEL, "2.0.0", true)?;
    let c = &fleet.coordinator;
    c.ctl(&["alias", "set", TOKENIZER, "prod", tokenizer])?;
    c.ctl(&["alias", "set", MODEL, "prod", "2.0.0"])?;
    wait_until("both releases downloaded and deferred", WAIT, || {
        let devices = c.devices()?;
        Ok(devices
            .first()
            .and_then(|d| d.conditions.as_ref())
            .is_some_and(|(c, _)| c.deferred.len() == 2))
    })?;
    agent.tell("unlock")?;
    Ok(())
}

#[test]
fn a_set_switches_together_and_rolls_back_together() -> Result<()> {
    let fleet = Fleet::two_models_at_one(&format!(
        "[[update_sets]]\nmodels = [\"{TOKENIZER}\", \"{MODEL}\"]\nmode = \"together\"\n"
    ))?;
    let agent = &fleet.agents[0];
    wait_confirmed(agent, "1.0.0", "1.0.0")?;

    // The tokenizer's 2.0.0 fails its check: the detector's good 2.0.0 goes back with it.
    ship_both_under_lock(&fleet, "2.0.0", false)?;
    wait_until("the tokenizer's 2.0.0 held", WAIT, || {
        Ok(agent.status()?.models.iter().any(|m| {
            m.model == TOKENIZER && m.holds.iter().any(|h| h.version.to_string() == "2.0.0")
        }))
    })?;
    wait_until("the detector rolled back with its set", WAIT, || {
        let status = agent.status()?;
        let detector = status.models.iter().find(|m| m.model == MODEL);
        Ok(detector
            .and_then(|m| m.last_update.as_ref())
            .is_some_and(|u| {
                u.to.to_string() == "2.0.0"
                    && u.outcome
                        .starts_with("rolled back with its update set: tokenizer 2.0.0")
            })
            && agent.runs(MODEL, "1.0.0"))
    })?;
    let status = agent.status()?;
    let detector = status.models.iter().find(|m| m.model == MODEL);
    ensure!(
        detector.is_some_and(|m| m.holds.is_empty()),
        "the detector's own release is not at fault: {detector:?}"
    );
    ensure!(agent.runs(TOKENIZER, "1.0.0"));
    // The detector waits for the tokenizer, and the fleet's views say so.
    wait_until(
        "fragmentation to say the detector waits for its set",
        WAIT,
        || {
            Ok(matches!(
                fleet.coordinator.behind("edge", Some(MODEL))?,
                Some((BehindReason::WaitingForUpdateSet, Some(d))) if d == "waiting for tokenizer"
            ))
        },
    )?;
    // So does the device's own status.
    let status = agent.status()?;
    let waiting = status
        .models
        .iter()
        .find(|m| m.model == MODEL)
        .and_then(|m| m.deferred.as_ref());
    ensure!(
        waiting.is_some_and(|d| d.version.to_string() == "2.0.0"
            && matches!(&d.reason, ferry_shared::wire::DeferReason::UpdateSet { waiting_for } if waiting_for.as_str() == TOKENIZER)),
        "{waiting:?}"
    );
    let metrics = fleet.coordinator.get("/metrics", "viewer")?.body;
    ensure!(
        metrics.contains("ferry_devices_deferring{model=\"detector\",reason=\"update-set\"} 1"),
        "{metrics}"
    );
    std::thread::sleep(Duration::from_secs(2));
    ensure!(
        agent.runs(MODEL, "1.0.0"),
        "the detector switched without its set"
    );

    // A fixed tokenizer: both switch and stay.
    fleet.publish_model(TOKENIZER, "2.0.1", true)?;
    fleet
        .coordinator
        .ctl(&["alias", "set", TOKENIZER, "prod", "2.0.1"])?;
    wait_confirmed(agent, "2.0.1", "2.0.0")?;
    Ok(())
}

#[test]
fn an_ordered_set_switches_its_members_in_turn_and_confirms_them_at_the_end() -> Result<()> {
    let fleet = Fleet::two_models_at_one(&format!(
        "[[update_sets]]\nmodels = [\"{TOKENIZER}\", \"{MODEL}\"]\nmode = \"ordered\"\n"
    ))?;
    let agent = &fleet.agents[0];
    wait_confirmed(agent, "1.0.0", "1.0.0")?;
    let log_before = agent.log().len();
    ship_both_under_lock(&fleet, "3.0.0", true)?;
    wait_confirmed(agent, "3.0.0", "2.0.0")?;
    // The order the log tells: the tokenizer switched and passed, then the detector switched;
    // the tokenizer was confirmed only after that.
    let log = agent.log();
    let log = &log[log_before..];
    let at = |model: &str, version: &str, what: &str| {
        log.lines().position(|l| {
            l.contains(what)
                && l.contains(&format!("model={model}"))
                && l.contains(&format!("version={version}"))
        })
    };
    let tokenizer_switched = at(TOKENIZER, "3.0.0", "switched; health check pending");
    let detector_switched = at(MODEL, "2.0.0", "switched; health check pending");
    let tokenizer_confirmed = at(TOKENIZER, "3.0.0", "update confirmed");
    ensure!(
        tokenizer_switched.is_some()
            && tokenizer_switched < detector_switched
            && detector_switched < tokenizer_confirmed,
        "{tokenizer_switched:?} {detector_switched:?} {tokenizer_confirmed:?}\n{log}"
    );
    Ok(())
}

#[test]
fn a_set_killed_before_its_confirmation_comes_back_and_switches_again_together() -> Result<()> {
    // The detector's check waits while a flag exists: the tokenizer passes and waits for it.
    let fleet_dir = tempfile::tempdir()?;
    let block = fleet_dir.path().join("block-detector");
    let reached = fleet_dir.path().join("detector-checked");
    let check = format!(
        "if [ -e {b} ]; then touch {r}; sleep 600; fi",
        b = block.display(),
        r = reached.display()
    );
    let mut fleet = Fleet::two_models_at_one_with(
        &[
            format!("{MODEL}\n[models.health_check]\ncommand = [\"sh\", \"-c\", {check:?}]"),
            TOKENIZER.to_owned(),
        ],
        &format!("[[update_sets]]\nmodels = [\"{TOKENIZER}\", \"{MODEL}\"]\n"),
    )?;
    wait_confirmed(&fleet.agents[0], "1.0.0", "1.0.0")?;
    std::fs::write(&block, b"")?;
    ship_both_under_lock(&fleet, "2.0.0", true)?;
    wait_until("the detector's check under way", WAIT, || {
        Ok(reached.exists())
    })?;
    let agent = &fleet.agents[0];
    wait_until("the tokenizer passed, unconfirmed", WAIT, || {
        let status = agent.status()?;
        Ok(status.models.iter().any(|m| {
            m.model == TOKENIZER
                && m.in_probation.as_ref().map(ToString::to_string).as_deref() == Some("2.0.0")
        }))
    })?;
    std::thread::sleep(Duration::from_secs(1));
    let status = agent.status()?;
    ensure!(
        status.models.iter().all(|m| m.in_probation.is_some()),
        "nothing is confirmed while a member's check runs: {status:?}"
    );
    // Killed there; the next start rolls both back, and the set goes again, together.
    fleet.agents[0].kill();
    std::fs::remove_file(&block)?;
    fleet.agents[0].start()?;
    let agent = &fleet.agents[0];
    wait_confirmed(agent, "2.0.0", "2.0.0")?;
    // Both came back on 1.0.0 at the restart, and said so.
    wait_until("both rollbacks at start reported", WAIT, || {
        let devices = fleet.coordinator.devices()?;
        let events = devices
            .first()
            .map(|d| d.recent_events.clone())
            .unwrap_or_default();
        Ok([TOKENIZER, MODEL].iter().all(|model| {
            events.iter().any(|e| {
                e.model.as_str() == *model
                    && matches!(&e.kind, EventKind::InstallFailed(err)
                        if err.version.to_string() == "2.0.0"
                            && err.message.contains("stopped before the health check confirmed"))
            })
        }))
    })?;
    Ok(())
}
