//! One agent following several models (`[[models]]`), on real processes: each model has its
//! own slots, holds and health checks in one session; a release of one that fails its health
//! check rolls that model back and leaves the other alone; a local rollback names its model.

use std::time::Duration;

use anyhow::{Result, ensure};
use ferry_tests::{AgentSpec, Fleet, MODEL, model_bytes, wait_until};

const WAIT: Duration = Duration::from_secs(60);
const TOKENIZER: &str = "tokenizer";

/// Publishes `model` `version` (a model the test agents' health check passes, or not).
fn publish(fleet: &Fleet, model: &str, version: &str, healthy: bool) -> Result<()> {
    let file = fleet.dir.join(format!("{model}-{version}.bin"));
    let seed = version.bytes().map(u64::from).sum::<u64>() + model.len() as u64;
    std::fs::write(&file, model_bytes(seed, 256 * 1024, healthy))?;
    fleet.coordinator.ctl(&[
        "publish",
        model,
        version,
        &file.to_string_lossy(),
        "--key",
        &fleet.key.to_string_lossy(),
        "--file-name",
        "model.bin",
    ])?;
    Ok(())
}

#[test]
fn one_agent_keeps_two_models_each_with_its_own_slots_and_rollbacks() -> Result<()> {
    let mut fleet = Fleet::start(0, None)?;
    fleet.add_agent(AgentSpec {
        models: vec![MODEL.into(), TOKENIZER.into()],
        ..AgentSpec::named("edge")
    })?;
    let c = &fleet.coordinator;
    for model in [MODEL, TOKENIZER] {
        publish(&fleet, model, "1.0.0", true)?;
        c.ctl(&["alias", "set", model, "prod", "1.0.0"])?;
    }
    let agent = &fleet.agents[0];
    wait_until("both models on 1.0.0", WAIT, || {
        Ok(
            agent.current_of(MODEL).map(|v| v.to_string()).as_deref() == Some("1.0.0")
                && agent
                    .current_of(TOKENIZER)
                    .map(|v| v.to_string())
                    .as_deref()
                    == Some("1.0.0"),
        )
    })?;
    // The coordinator sees one device following both.
    let devices = c.devices()?;
    ensure!(
        devices.len() == 1 && devices[0].follows.len() == 2,
        "{devices:?}"
    );

    // The tokenizer's 2.0.0 fails its health check: the tokenizer goes back, the detector
    // moves on to its own 2.0.0.
    publish(&fleet, TOKENIZER, "2.0.0", false)?;
    publish(&fleet, MODEL, "2.0.0", true)?;
    c.ctl(&["alias", "set", TOKENIZER, "prod", "2.0.0"])?;
    c.ctl(&["alias", "set", MODEL, "prod", "2.0.0"])?;
    wait_until("the detector on 2.0.0", WAIT, || {
        Ok(agent.current_of(MODEL).map(|v| v.to_string()).as_deref() == Some("2.0.0"))
    })?;
    wait_until(
        "the tokenizer's 2.0.0 held after its failed check",
        WAIT,
        || {
            Ok(agent.status()?.models.iter().any(|m| {
                m.model == TOKENIZER && m.holds.iter().any(|h| h.version.to_string() == "2.0.0")
            }))
        },
    )?;
    ensure!(
        agent
            .current_of(TOKENIZER)
            .map(|v| v.to_string())
            .as_deref()
            == Some("1.0.0")
    );

    // A local rollback names its model; the other stays.
    let out = agent.rollback_model(MODEL)?;
    ensure!(
        out.contains("rolled back detector: 2.0.0 -> 1.0.0"),
        "{out}"
    );
    ensure!(agent.current_of(MODEL).map(|v| v.to_string()).as_deref() == Some("1.0.0"));
    ensure!(
        agent
            .current_of(TOKENIZER)
            .map(|v| v.to_string())
            .as_deref()
            == Some("1.0.0")
    );
    let refused = agent.rollback_model("nothing-here");
    ensure!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("does not follow nothing-here")),
        "{refused:?}"
    );
    Ok(())
}
